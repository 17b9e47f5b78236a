import Foundation
import XCTest
import GGUF
import Kernels
import Llama
import SafeTensors
import TestSupport
import Draft

/// EAGLE-3 drafts: the inference forward against a float64 reference, tree = path by path, and
/// the llama.cpp / Hugging Face exports (names, keys, round trips).
final class Eagle3Tests: XCTestCase {
    static let vocab = 2048
    static let d2t: [Int32] = (0..<vocab).map { Int32(($0 * 7919) % 49152) }
    static var config: DraftConfig { .eagle3(target: Target.model.config, vocab: vocab) }
    /// The aux layers' input states at every reference position, side by side (n × 3d).
    static let aux: [Float] = {
        let c = config
        let s = Target.model.makeSession(contextSize: 64)
        let out = try! s.forward(tokens: Target.tokens, logits: .none, captureLayers: c.captureLayers)
        return out.features(rows: Array(0..<Target.tokens.count), layers: c.captureLayers, width: Target.d)!
    }()

    /// Random weights at a scale where the layer matters (0.02-scale matrices would leave the
    /// head reading little more than the fused state).
    func weights(seed: UInt64 = 11) throws -> DraftWeights {
        let m = Target.model
        var w = try DraftWeights.random(config: Self.config, seed: seed, outputNorm: m.weights.outputNorm,
                                        targetOutput: m.weights.output, d2t: Self.d2t)
        w.fc = w.fc.map { $0 * 3 }
        w.qProj = w.qProj.map { $0 * 5 }; w.kProj = w.kProj.map { $0 * 5 }; w.vProj = w.vProj.map { $0 * 5 }
        var rng = TestRNG(seed: seed)
        w.inputNorm = (0..<Target.d).map { _ in 1 + 0.3 * rng.normal() }
        w.hiddenNorm = (0..<Target.d).map { _ in 1 + 0.3 * rng.normal() }
        return w
    }

    func accept(_ dr: EagleDraft, _ range: Range<Int>, topK: Int = 4) throws -> [DraftCandidate] {
        let fw = Self.config.featureWidth
        return try dr.accept(features: Array(Self.aux[(range.lowerBound * fw)..<(range.upperBound * fw)]),
                             nextTokens: range.map { Target.tokens[$0 + 1] }, images: [], topK: topK)
    }

    func tmpPath(_ name: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("eagle3-tests-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.appendingPathComponent(name).path
    }

    func testDraftReadsTheAuxLayersInputs() {
        let c = Self.config
        XCTAssertEqual(c.auxLayers, [2, 15, 27])
        XCTAssertEqual(c.captureLayers, [1, 14, 26])
        XCTAssertEqual(c.featureWidth, 3 * 576)
        XCTAssertEqual(try EagleDraft(weights: weights(), target: Target.model).featureLayers, [1, 14, 26])
    }

    // MARK: - Reference

    /// EAGLE-3's forward in float64 over entries `0..<n` (causal), then a chain of `chain`
    /// tokens from the last entry; returns the log-softmax of every row's head output (entries
    /// first, then chain nodes).
    func reference(_ w: DraftWeights, n: Int, chain: [Int32]) -> [[Double]] {
        let c = w.config, d = c.width, hd = c.headDim, fw = c.featureWidth
        let tc = Target.model.config
        func row(_ m: [Float], _ r: Int, _ cols: Int) -> ArraySlice<Float> { m[(r * cols)..<((r + 1) * cols)] }
        func matvec(_ m: [Float], rows: Int, _ x: [Double]) -> [Double] {
            (0..<rows).map { r in zip(row(m, r, x.count), x).reduce(0.0) { $0 + Double($1.0) * $1.1 } }
        }
        func rms(_ x: [Double], _ wt: [Float]) -> [Double] {
            let s = 1 / (x.reduce(0) { $0 + $1 * $1 } / Double(x.count) + Double(c.rmsEps)).squareRoot()
            return zip(x, wt).map { $0 * s * Double($1) }
        }
        func rope(_ v: [Double], heads: Int, pos: Int) -> [Double] {
            var o = v
            for h in 0..<heads {
                for i in 0..<(tc.ropeDim / 2) {
                    let th = Double(pos) / tc.ropeScale * pow(tc.ropeBase, -2 * Double(i) / Double(tc.ropeDim))
                    let a = v[h * hd + 2 * i], b = v[h * hd + 2 * i + 1]
                    o[h * hd + 2 * i] = a * cos(th) - b * sin(th)
                    o[h * hd + 2 * i + 1] = a * sin(th) + b * cos(th)
                }
            }
            return o
        }
        func embed(_ t: Int32) -> [Double] {
            var e = [Float](repeating: 0, count: d)
            e.withUnsafeMutableBufferPointer { Target.model.weights.tokenEmbedding.dequantize(row: Int(t), into: $0.baseAddress!) }
            return e.map(Double.init)
        }
        var keys: [[Double]] = [], values: [[Double]] = []
        var out: [[Double]] = []
        // One row: token, state g, position, visible earlier key indices (plus its own).
        func step(_ tok: Int32, _ g: [Double], _ pos: Int, _ visible: [Int]) -> [Double] {
            let a = rms(embed(tok), w.inputNorm!) + rms(g, w.hiddenNorm!)
            let q = rope(matvec(w.qProj, rows: c.qWidth, a), heads: c.heads, pos: pos)
            keys.append(rope(matvec(w.kProj, rows: c.kvWidth, a), heads: c.kvHeads, pos: pos))
            values.append(matvec(w.vProj, rows: c.kvWidth, a))
            let vis = visible + [keys.count - 1]
            var att = [Double](repeating: 0, count: c.qWidth)
            for h in 0..<c.heads {
                let kvh = h / (c.heads / c.kvHeads)
                let scores = vis.map { j in (0..<hd).reduce(0.0) { $0 + q[h * hd + $1] * keys[j][kvh * hd + $1] } / Double(hd).squareRoot() }
                let mx = scores.max()!
                let e = scores.map { exp($0 - mx) }, z = e.reduce(0, +)
                for (k, j) in vis.enumerated() { for i in 0..<hd { att[h * hd + i] += e[k] / z * values[j][kvh * hd + i] } }
            }
            let r1 = zip(g, matvec(w.oProj, rows: d, att)).map(+)
            let n2 = rms(r1, w.postAttentionNorm)
            let gt = matvec(w.gateProj, rows: c.ffn, n2), up = matvec(w.upProj, rows: c.ffn, n2)
            let h = zip(gt, up).map { $0 / (1 + exp(-$0)) * $1 }
            let s = zip(r1, matvec(w.downProj, rows: d, h)).map(+)
            let logits = matvec(w.lmHead!, rows: c.vocab, rms(s, w.norm))
            let mx = logits.max()!
            let lse = mx + log(logits.reduce(0) { $0 + exp($1 - mx) })
            out.append(logits.map { $0 - lse })
            return s
        }
        var last: [Double] = []
        for t in 0..<n {
            let g = matvec(w.fc, rows: d, Self.aux[(t * fw)..<((t + 1) * fw)].map(Double.init))
            last = step(Target.tokens[t + 1], g, t, Array(0..<t))
        }
        var anc: [Int] = []
        for (k, tok) in chain.enumerated() {
            anc.append(keys.count)
            last = step(tok, last, n - 1 + k + 1, Array(0..<n) + anc.dropLast())
        }
        return out
    }

    func testForwardMatchesFloat64Reference() throws {
        let w = try weights()
        let dr = try EagleDraft(weights: w, target: Target.model, matrixType: .f32)
        let n = 12
        let root = try accept(dr, 0..<n, topK: 5)
        let chain: [Int32] = [root[1].token, 4096, 17]
        var nodes: [[DraftCandidate]] = []
        for (k, t) in chain.enumerated() { nodes += try dr.expand(tokens: [t], parents: [k - 1], topK: 5) }
        let ref = reference(w, n: n, chain: chain)
        for (i, got) in ([root] + nodes).enumerated() {
            let r = ref[n - 1 + i]
            let best = r.indices.sorted { r[$0] > r[$1] }.prefix(5)
            XCTAssertEqual(got.map(\.token), best.map { Self.d2t[$0] }, "row \(i)")
            for (cand, j) in zip(got, best) { XCTAssertEqual(Double(cand.logProb), r[j], accuracy: 2e-3, "row \(i)") }
        }
        // The reference's spread shows the layer matters (not a flat distribution).
        XCTAssertGreaterThan(ref[n - 1].max()! - ref[n - 1].min()!, 2)
    }

    func testExpandEqualsPathByPath() throws {
        for type in [QuantType.q8_0, .f32] {
            let w = try weights()
            let a = try EagleDraft(weights: w, target: Target.model, matrixType: type)
            let root = try accept(a, 0..<20)
            let l1 = root.prefix(3).map(\.token)
            var out = try a.expand(tokens: l1, parents: [-1, -1, -1], topK: 4)
            let l2: [Int32] = [out[0][0].token, out[0][1].token, out[2][0].token]
            out += try a.expand(tokens: l2, parents: [0, 0, 2], topK: 4)
            let tokens = l1 + l2, parents = [-1, -1, -1, 0, 0, 2]
            let b = try EagleDraft(weights: w, target: Target.model, matrixType: type)
            for i in 0..<tokens.count {
                var path: [Int] = []
                var j = i
                while j >= 0 { path.insert(j, at: 0); j = parents[j] }
                b.reset()
                XCTAssertEqual(try accept(b, 0..<20), root)
                var last: [DraftCandidate] = []
                for (k, node) in path.enumerated() { last = try b.expand(tokens: [tokens[node]], parents: [k - 1], topK: 4)[0] }
                XCTAssertEqual(last, out[i], "\(type) node \(i)")
            }
            // Accepting in pieces equals at once.
            let c = try EagleDraft(weights: w, target: Target.model, matrixType: type)
            _ = try accept(c, 0..<7)
            XCTAssertEqual(try accept(c, 7..<20), root)
        }
    }

    func testCheckpointUsesReferenceNamesAndRoundTrips() throws {
        let w = try weights()
        let path = tmpPath("e3.safetensors")
        try w.save(to: path)
        let f = try SafeTensorsFile(path: path)
        for n in ["fc.weight", "midlayer.self_attn.q_proj.weight", "midlayer.hidden_norm.weight", "midlayer.input_layernorm.weight",
                  "midlayer.mlp.down_proj.weight", "norm.weight", "lm_head.weight", "d2t"] {
            XCTAssertTrue(f.contains(n), n)
        }
        XCTAssertFalse(f.contains("layers.0.self_attn.q_proj.weight"))
        XCTAssertEqual(try f.info("fc.weight").shape, [576, 3 * 576])
        XCTAssertEqual(try f.info("midlayer.self_attn.k_proj.weight").shape, [192, 2 * 576])
        let l = try DraftWeights.load(path: path, target: Target.model.config)
        XCTAssertEqual(l.config, w.config)
        XCTAssertEqual(l.tensors, w.tensors)
        XCTAssertEqual(l.d2t, w.d2t)
    }

    // MARK: - llama.cpp GGUF

    func testGGUFExportHasLlamaCppNamesAndRoundTrips() throws {
        var w = try weights()
        w.metadata["tau"] = "1.5"
        let target = try GGUFFile(path: TestPaths.model)
        let path = tmpPath("e3.gguf")
        try Eagle3Formats.writeGGUF(w, targetFile: target, target: Target.model.config, to: path, matrixType: .f32)
        let f = try GGUFFile(path: path)
        // Keys as llama.cpp 0c1e570 reads them (src/llama-arch.cpp), with their strict types.
        XCTAssertEqual(f["general.architecture"], .string("eagle3"))
        for (k, v) in [("block_count", 1), ("embedding_length", 576), ("feed_forward_length", 1536), ("attention.head_count", 9),
                       ("attention.head_count_kv", 3), ("target_hidden_size", 576), ("context_length", Target.model.config.contextLength)] {
            XCTAssertEqual(f["eagle3." + k], .uint32(UInt32(v)), k)
        }
        XCTAssertEqual(f["eagle3.attention.layer_norm_rms_epsilon"]?.type, .float32)
        XCTAssertEqual(f["eagle3.rope.freq_base"]?.type, .float32)
        XCTAssertEqual(f["eagle3.target_layers"], .array(elementType: .int32, [.int32(2), .int32(15), .int32(27)]))
        XCTAssertEqual(f["tokenizer.ggml.model"], target["tokenizer.ggml.model"])
        XCTAssertEqual(f["tokenizer.ggml.tokens"]?.arrayValue?.count, 49152)
        let expected: [(String, [Int], String)] = [
            ("fc.weight", [1728, 576], "F32"), ("blk.0.attn_norm.weight", [576], "F32"), ("blk.0.attn_norm_2.weight", [576], "F32"),
            ("blk.0.attn_q.weight", [1152, 576], "F32"), ("blk.0.attn_k.weight", [1152, 192], "F32"),
            ("blk.0.attn_v.weight", [1152, 192], "F32"), ("blk.0.attn_output.weight", [576, 576], "F32"),
            ("blk.0.ffn_norm.weight", [576], "F32"), ("blk.0.ffn_gate.weight", [576, 1536], "F32"), ("blk.0.ffn_up.weight", [576, 1536], "F32"),
            ("blk.0.ffn_down.weight", [1536, 576], "F32"), ("output_norm.weight", [576], "F32"), ("output.weight", [576, 2048], "F32"),
            ("d2t", [2048], "I64"),
        ]
        XCTAssertEqual(Set(f.tensors.map(\.name)), Set(expected.map(\.0)))
        for (name, shape, type) in expected {
            XCTAssertEqual(f.tensorInfo(name)?.shape, shape, name)
            XCTAssertEqual(f.tensorInfo(name)?.type.name, type, name)
        }
        // Back: the same draft, the same drafting.
        let r = try Eagle3Formats.readGGUF(f, target: Target.model.config)
        XCTAssertEqual(r.config, w.config)
        XCTAssertEqual(r.tensors, w.tensors)
        XCTAssertEqual(r.d2t, w.d2t)
        XCTAssertEqual(r.metadata["tau"], "1.5")
        let a = try EagleDraft(weights: w, target: Target.model), b = try EagleDraft(weights: r, target: Target.model)
        XCTAssertEqual(try accept(a, 0..<16), try accept(b, 0..<16))
        XCTAssertEqual(try a.expand(tokens: [5, 9], parents: [-1, 0], topK: 4), try b.expand(tokens: [5, 9], parents: [-1, 0], topK: 4))
        // F16 matrices: rounded, norms exact.
        try Eagle3Formats.writeGGUF(w, targetFile: target, target: Target.model.config, to: path, matrixType: .f16)
        let h = try Eagle3Formats.readGGUF(try GGUFFile(path: path), target: Target.model.config)
        XCTAssertEqual(try GGUFFile(path: path).tensorInfo("fc.weight")?.type.name, "F16")
        XCTAssertEqual(h.inputNorm, w.inputNorm)
        XCTAssertLessThan(zip(h.fc, w.fc).map { abs($0 - $1) }.max()!, 1e-3)
    }

    func testBadEagle3GGUFsAreClearErrors() throws {
        let w = try weights()
        let target = try GGUFFile(path: TestPaths.model)
        let good = try Eagle3Formats.ggufWriter(w, targetFile: target, target: Target.model.config, matrixType: .f32)
        func expectError(_ field: String, _ change: (inout GGUFWriter) -> Void, line: UInt = #line) {
            var g = good
            change(&g)
            do {
                _ = try Eagle3Formats.readGGUF(try GGUFFile(bytes: g.serialize(), name: "bad.gguf"), target: Target.model.config)
                XCTFail("accepted a GGUF with a bad \(field)", line: line)
            } catch let e as DraftError {
                XCTAssertEqual(e.field, field, "\(e)", line: line)
                XCTAssertEqual(e.file, "bad.gguf", line: line)
            } catch { XCTFail("\(error)", line: line) }
        }
        expectError("eagle3.target_hidden_size") { $0.set("eagle3.target_hidden_size", .uint32(4096)) }
        expectError("eagle3.block_count") { $0.set("eagle3.block_count", .uint32(2)) }
        expectError("eagle3.norm_before_residual") { $0.set("eagle3.norm_before_residual", .bool(true)) }
        expectError("config.aux_layers") { $0.set("eagle3.target_layers", .array(elementType: .int32, [.int32(2), .int32(15), .int32(30)])) }
        expectError("eagle3.feed_forward_length") { g in g.metadata.removeAll { $0.key == "eagle3.feed_forward_length" } }
        expectError("d2t") { g in
            let i = g.tensors.firstIndex { $0.name == "d2t" }!
            g.tensors[i].bytes.withUnsafeMutableBytes { $0.storeBytes(of: Int64(49152), toByteOffset: 8, as: Int64.self) }
        }
        expectError("blk.0.attn_q.weight") { g in
            let i = g.tensors.firstIndex { $0.name == "blk.0.attn_q.weight" }!
            g.tensors[i].shape = [576, 1152]
        }
        // Not an eagle3 GGUF at all.
        XCTAssertFalse(Eagle3Formats.isEagle3(target))
        XCTAssertThrowsError(try Eagle3Formats.readGGUF(target, target: Target.model.config))
        // Only eagle3 drafts export.
        let e2 = try DraftWeights.random(for: Target.model, vocab: 2048, d2t: Self.d2t, seed: 1)
        XCTAssertThrowsError(try Eagle3Formats.ggufWriter(e2, targetFile: target, target: Target.model.config))
    }

    // MARK: - Hugging Face / vLLM

    /// Names, shapes and config keys as vLLM's `llama_eagle3.py` (Eagle3LlamaForCausalLM) and the
    /// EAGLE-3 reference (`eagle/model/cnets.py`) read them.
    func testHFExportMatchesTheReferenceLayout() throws {
        let w = try weights()
        let dir = tmpPath("hf-e3")
        try Eagle3Formats.writeHF(w, target: Target.model.config, folder: dir, dtype: .F32)
        let st = try SafeTensorsFile(path: dir + "/model.safetensors")
        let expected: [String: ([Int], SafeTensorsDType)] = [
            "fc.weight": ([576, 1728], .F32), "midlayer.hidden_norm.weight": ([576], .F32), "midlayer.input_layernorm.weight": ([576], .F32),
            "midlayer.post_attention_layernorm.weight": ([576], .F32), "midlayer.self_attn.q_proj.weight": ([576, 1152], .F32),
            "midlayer.self_attn.k_proj.weight": ([192, 1152], .F32), "midlayer.self_attn.v_proj.weight": ([192, 1152], .F32),
            "midlayer.self_attn.o_proj.weight": ([576, 576], .F32), "midlayer.mlp.gate_proj.weight": ([1536, 576], .F32),
            "midlayer.mlp.up_proj.weight": ([1536, 576], .F32), "midlayer.mlp.down_proj.weight": ([576, 1536], .F32),
            "norm.weight": ([576], .F32), "lm_head.weight": ([2048, 576], .F32), "d2t": ([2048], .I64), "t2d": ([49152], .BOOL),
        ]
        XCTAssertEqual(Set(st.names), Set(expected.keys))
        for (n, (shape, dt)) in expected {
            XCTAssertEqual(try st.info(n).shape, shape, n)
            XCTAssertEqual(try st.info(n).dtype, dt, n)
        }
        let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
        XCTAssertEqual(cfg["architectures"] as? [String], ["LlamaForCausalLMEagle3"])
        for (k, v) in [("hidden_size", 576), ("intermediate_size", 1536), ("num_attention_heads", 9), ("num_key_value_heads", 3),
                       ("num_hidden_layers", 1), ("vocab_size", 49152), ("draft_vocab_size", 2048), ("target_hidden_size", 576)] {
            XCTAssertEqual(cfg[k] as? Int, v, k)
        }
        XCTAssertEqual(cfg["eagle_aux_hidden_state_layer_ids"] as? [Int], [2, 15, 27])
        XCTAssertEqual(cfg["tie_word_embeddings"] as? Bool, false)
        XCTAssertNotNil(cfg["rms_norm_eps"] as? Double)
        XCTAssertNotNil(cfg["rope_theta"] as? Double)
        // d2t offsets, t2d mask.
        let off = try st.int64s("d2t")
        XCTAssertEqual(off.enumerated().map { Int32(Int64($0) + $1) }, Self.d2t)
        // q/k: each head's rows split into halves for rotate_half RoPE; undoing gives the draft's rows.
        let q = try st.floats("midlayer.self_attn.q_proj.weight")
        XCTAssertEqual(Eagle3Formats.halvesToPairs(q, heads: 9, headDim: 64, cols: 1152), w.qProj)
        XCTAssertEqual(Array(q[(1 * 1152)..<(2 * 1152)]), Array(w.qProj[(2 * 1152)..<(3 * 1152)]), "HF row 1 = pair row 2")
        XCTAssertEqual(Array(q[(32 * 1152)..<(33 * 1152)]), Array(w.qProj[(1 * 1152)..<(2 * 1152)]), "HF row hd/2 = pair row 1")
        XCTAssertEqual(try st.floats("midlayer.self_attn.v_proj.weight"), w.vProj, "v is not rotated")
    }

    /// Rotating adjacent pairs with the draft's rows equals rotating halves with the HF rows.
    func testPairAndHalfRoPELayoutsAgree() {
        let hd = 8, cols = 3
        var rng = TestRNG(seed: 3)
        let m = (0..<(2 * hd * cols)).map { _ in rng.normal() }, x = (0..<cols).map { _ in rng.normal() }
        let hf = Eagle3Formats.pairsToHalves(m, heads: 2, headDim: hd, cols: cols)
        func mv(_ w: [Float]) -> [Double] { (0..<(2 * hd)).map { r in (0..<cols).reduce(0.0) { $0 + Double(w[r * cols + $1] * x[$1]) } } }
        let a = mv(m), b = mv(hf)
        let pos = 5.0
        for h in 0..<2 {
            for i in 0..<(hd / 2) {
                let th = pos * pow(10000, -2 * Double(i) / Double(hd))
                let p0 = a[h * hd + 2 * i], p1 = a[h * hd + 2 * i + 1]
                let h0 = b[h * hd + i], h1 = b[h * hd + i + hd / 2]
                XCTAssertEqual(p0 * cos(th) - p1 * sin(th), h0 * cos(th) - h1 * sin(th), accuracy: 1e-9)
                XCTAssertEqual(p0 * sin(th) + p1 * cos(th), h1 * cos(th) + h0 * sin(th), accuracy: 1e-9)
            }
        }
        XCTAssertEqual(Eagle3Formats.halvesToPairs(hf, heads: 2, headDim: hd, cols: cols), m)
    }
}
