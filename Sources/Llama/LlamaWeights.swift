import GGUF
import Kernels

/// Every weight of the model, looked up by its GGUF (llama.cpp) name in this one place.
/// Matrices stay packed in the file mapping (the f32 path and embedding lookups read them there);
/// Q4_0/Q4_1/Q8_0/Q4_K/Q5_K/Q6_K matrices also get an 8-row interleaved copy of (about) the same
/// size at load, for the int8-activation kernels of the default path. Only the small norm vectors are dequantized.
public struct LlamaWeights: @unchecked Sendable {
    public struct Layer {
        public var attnNorm: [Float]
        public var wq, wk, wv, wo: PackedMatrix
        public var ffnNorm: [Float]
        public var gate, up, down: PackedMatrix
    }

    public var tokenEmbedding: PackedMatrix
    public var layers: [Layer]
    public var outputNorm: [Float]
    /// The LM head; the token embedding itself when the model ties them.
    public var output: PackedMatrix
    public var outputIsTied: Bool

    public init(gguf f: GGUFFile, config c: LlamaConfig) throws {
        func matrix(_ name: String, rows: Int, cols: Int) throws -> PackedMatrix {
            guard let t = f.tensorInfo(name) else { throw GGUFError(file: f.path, field: name, reason: "tensor missing") }
            guard t.shape == [cols, rows] else {
                throw GGUFError(file: f.path, field: name, reason: "shape \(t.shape), expected [\(cols), \(rows)]")
            }
            guard let q = t.type.quantType else {
                throw GGUFError(file: f.path, field: name, reason: "tensor type \(t.type.name) is not supported (F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K are)")
            }
            // The interleaved copy is what the default (q8) path multiplies with.
            return PackedMatrix(type: q, rows: rows, cols: cols, data: f.data(of: t)).withInterleavedCopy()
        }
        func vector(_ name: String, _ n: Int) throws -> [Float] {
            guard let t = f.tensorInfo(name) else { throw GGUFError(file: f.path, field: name, reason: "tensor missing") }
            guard t.elementCount == n, let q = t.type.quantType else {
                throw GGUFError(file: f.path, field: name, reason: "expected \(n) floats, found \(t.shape) of \(t.type.name)")
            }
            var v = [Float](repeating: 0, count: n)
            v.withUnsafeMutableBufferPointer { dequantizeRow(q, f.data(of: t), count: n, into: $0.baseAddress!) }
            return v
        }
        let d = c.width, kv = c.kvWidth, ff = c.ffnWidth
        tokenEmbedding = try matrix("token_embd.weight", rows: c.vocabSize, cols: d)
        layers = try (0..<c.layerCount).map { l in
            let p = "blk.\(l)."
            return Layer(
                attnNorm: try vector(p + "attn_norm.weight", d),
                wq: try matrix(p + "attn_q.weight", rows: d, cols: d),
                wk: try matrix(p + "attn_k.weight", rows: kv, cols: d),
                wv: try matrix(p + "attn_v.weight", rows: kv, cols: d),
                wo: try matrix(p + "attn_output.weight", rows: d, cols: d),
                ffnNorm: try vector(p + "ffn_norm.weight", d),
                gate: try matrix(p + "ffn_gate.weight", rows: ff, cols: d),
                up: try matrix(p + "ffn_up.weight", rows: ff, cols: d),
                down: try matrix(p + "ffn_down.weight", rows: d, cols: ff))
        }
        outputNorm = try vector("output_norm.weight", d)
        if f.tensorInfo("output.weight") != nil {
            output = try matrix("output.weight", rows: c.vocabSize, cols: d)
            outputIsTied = false
        } else {
            output = tokenEmbedding
            outputIsTied = true
        }
    }

    /// Bytes of weights one decoded token streams from memory (all matrices + the head).
    public var bytesPerToken: Int {
        let perLayer = layers.first.map { l in [l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down].reduce(0) { $0 + $1.rows * $1.rowBytes } } ?? 0
        return perLayer * layers.count + output.rows * output.rowBytes
    }
}
