import Foundation
import GGUF
import Kernels
import Llama
import Sampling
import Vision

/// A tiny random LLaMA target built in memory, for the model-free test tier: 2 layers, width 64
/// (4 heads of 16, 2 KV heads), FFN 128, a 256-token vocabulary; Q4_0 and Q4_1 matrices (the int8
/// kernels' formats, repacked at load like the real model's), a Q8_0 embedding and head. Its
/// weights are random, so its text is noise, but its forward pass is the real one: what greedy
/// identity needs.
enum TinyTarget {
    static let vocab = 256, width = 64, layers = 2, heads = 4, kvHeads = 2, ffn = 128

    static func gguf(seed: UInt64 = 0x7171) throws -> GGUFFile {
        var g = GGUFWriter()
        g.set("general.architecture", .string("llama"))
        g.set("general.name", .string("specdec tiny test target"))
        g.set("llama.block_count", .uint32(UInt32(layers)))
        g.set("llama.embedding_length", .uint32(UInt32(width)))
        g.set("llama.feed_forward_length", .uint32(UInt32(ffn)))
        g.set("llama.attention.head_count", .uint32(UInt32(heads)))
        g.set("llama.attention.head_count_kv", .uint32(UInt32(kvHeads)))
        g.set("llama.context_length", .uint32(512))
        g.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        g.set("llama.rope.freq_base", .float32(10_000))
        var rng = SplitMix64(seed: seed)
        // Rows of U(±scale), scaled so activations neither vanish nor explode over two layers;
        // GGUF shapes are ggml's [cols, rows].
        func add(_ name: String, rows: Int, cols: Int, _ type: QuantType, scale: Float) throws {
            let values = (0..<(rows * cols)).map { _ in (rng.nextUnit() * 2 - 1) * scale }
            let rowBytes = cols / type.blockSize * type.blockBytes
            var bytes = [UInt8](repeating: 0, count: rows * rowBytes)
            if type != .q4_1 {
                try values.withUnsafeBufferPointer { v in
                    try bytes.withUnsafeMutableBytes { b in
                        for r in 0..<rows { try quantizeRow(type, v.baseAddress! + r * cols, count: cols, into: b.baseAddress! + r * rowBytes) }
                    }
                }
            } else {
                // quantizeRow packs F32, F16, BF16, Q8_0 and Q4_0: write Q4_1 from Q4_0 blocks
                // (d, 16 nibble bytes) with min = −8·d, which decodes to the same values.
                var q1 = [UInt8](); q1.reserveCapacity(rows * cols / 32 * 20)
                var q0 = [UInt8](repeating: 0, count: rows * cols / 32 * 18)
                try values.withUnsafeBufferPointer { v in
                    try q0.withUnsafeMutableBytes { b in
                        for r in 0..<rows { try quantizeRow(.q4_0, v.baseAddress! + r * cols, count: cols, into: b.baseAddress! + r * (cols / 32 * 18)) }
                    }
                }
                for blk in 0..<(rows * cols / 32) {
                    let o = blk * 18
                    let d = Float(Float16(bitPattern: UInt16(q0[o]) | UInt16(q0[o + 1]) << 8))
                    let m = Float16(-8 * d).bitPattern
                    q1 += [q0[o], q0[o + 1], UInt8(m & 0xFF), UInt8(m >> 8)] + q0[(o + 2)..<(o + 18)]
                }
                bytes = q1
            }
            g.addTensor(name, shape: [cols, rows], typeID: type.rawValue, bytes: bytes)
        }
        func norm(_ name: String) {
            g.addTensor(name, shape: [width], floats: (0..<width).map { _ in 0.8 + 0.4 * rng.nextUnit() })
        }
        let d = width, kv = kvHeads * (width / heads)
        try add("token_embd.weight", rows: vocab, cols: d, .q8_0, scale: 1)
        for l in 0..<layers {
            let p = "blk.\(l)."
            norm(p + "attn_norm.weight")
            try add(p + "attn_q.weight", rows: d, cols: d, .q4_0, scale: 0.5)
            try add(p + "attn_k.weight", rows: kv, cols: d, .q4_0, scale: 0.5)
            try add(p + "attn_v.weight", rows: kv, cols: d, .q4_1, scale: 0.3)
            try add(p + "attn_output.weight", rows: d, cols: d, .q4_1, scale: 0.3)
            norm(p + "ffn_norm.weight")
            try add(p + "ffn_gate.weight", rows: ffn, cols: d, .q4_1, scale: 0.3)
            try add(p + "ffn_up.weight", rows: ffn, cols: d, .q4_0, scale: 0.3)
            try add(p + "ffn_down.weight", rows: d, cols: ffn, .q4_1, scale: 0.2)
        }
        norm("output_norm.weight")
        try add("output.weight", rows: vocab, cols: d, .q8_0, scale: 0.6)
        return try GGUFFile(bytes: g.serialize(), name: "tiny-target.gguf")
    }

    static let model: LlamaModel = try! LlamaModel(file: gguf(), threads: 2)
    static let f32Model: LlamaModel = {
        let m = try! LlamaModel(file: gguf(), threads: 2)
        m.activationQuant = .none
        return m
    }()

    /// Prompts of random tokens, some with a repeated phrase (so context matching finds matches),
    /// and some with random "image" rows in place of tokens (as a tower's output would be).
    static func prompts(count: Int = 24, seed: UInt64 = 11) -> [(name: String, input: LMInputParts)] {
        var rng = SplitMix64(seed: seed)
        var out: [(String, LMInputParts)] = []
        for i in 0..<count {
            let n = 6 + Int(rng.next() % 20)
            var tokens = (0..<n).map { _ in Int32(rng.next() % UInt64(vocab)) }
            if i % 3 == 1 { tokens += tokens.prefix(4) + tokens.prefix(4) }
            var image: (start: Int, rows: Int, data: [Float])? = nil
            if i % 4 == 2 {
                let rows = 3 + Int(rng.next() % 5), start = 1 + Int(rng.next() % 3)
                image = (start, rows, (0..<(rows * width)).map { _ in (rng.nextUnit() * 2 - 1) * 0.5 })
            }
            out.append(("tiny-\(i)\(image == nil ? "" : "-image")", LMInputParts(tokens: tokens, image: image)))
        }
        return out
    }
}

/// A prompt before it becomes an `LMInput` for a given model (image rows go into the model's
/// token embeddings at `start`).
struct LMInputParts {
    var tokens: [Int32]
    var image: (start: Int, rows: Int, data: [Float])?

    func sequence(for model: LlamaModel) -> MultimodalSequence? {
        guard let im = image else { return nil }
        let d = model.config.width
        var toks: [Int32] = [], emb: [Float] = [], mask: [Bool] = []
        var row = [Float](repeating: 0, count: d)
        for (i, t) in tokens.enumerated() {
            if i == im.start {
                toks += [Int32](repeating: MultimodalSequence.imagePlaceholder, count: im.rows)
                emb += im.data
                mask += [Bool](repeating: true, count: im.rows)
            }
            row.withUnsafeMutableBufferPointer { model.weights.tokenEmbedding.dequantize(row: Int(t), into: $0.baseAddress!) }
            toks.append(t); emb += row; mask.append(false)
        }
        return MultimodalSequence(width: d, tokens: toks, embeddings: emb, imageMask: mask,
                                  imageRanges: [im.start..<(im.start + im.rows)])
    }
}
