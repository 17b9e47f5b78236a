import Foundation
import GGUF
import Llama
import Sampling
import Testing
import TestSupport

/// The real model, loaded once for every test in this file.
let model: LlamaModel = {
    do {
        let m = try LlamaModel(path: TestPaths.model)
        m.activationQuant = .none   // the exact (f32) mode: within 1e-2 of the float64 reference
        return m
    } catch {
        preconditionFailure("cannot load \(TestPaths.model): \(error) — run scripts/setup.sh first")
    }
}()

let golden: [GoldenCase] = {
    do { return try GoldenCase.load() } catch {
        preconditionFailure("cannot read the golden reference under \(TestPaths.referenceDir.path): \(error)")
    }
}()

/// Compares against ../shared/reference/golden_public.json, an independent float64 implementation.
@Suite(.enabled(if: TestPaths.hasModel && TestPaths.hasReference, "needs the model (scripts/setup.sh) and ../shared/reference")) struct GoldenTests {
    @Test func configMatchesTheModelCard() {
        let c = model.config
        #expect(c.layerCount == 30 && c.width == 576 && c.headCount == 9 && c.kvHeadCount == 3)
        #expect(c.headDim == 64 && c.ffnWidth == 1536 && c.vocabSize == 49152)
        #expect(c.ropeBase == 100_000 && abs(c.rmsEpsilon - 1e-5) < 1e-12)
        #expect(model.weights.outputIsTied)
    }

    /// Both prefill paths: the batch-invariant kernels and OpenBLAS sgemm (used for prompts).
    @Test(arguments: golden.map(\.name), [true, false])
    func prefillLogitsMatchReference(name: String, batchInvariant: Bool) throws {
        let g = golden.first { $0.name == name }!
        let session = model.makeSession(contextSize: 1024)
        let out = try session.forward(tokens: g.ids.map(Int32.init), logits: .all, batchInvariant: batchInvariant)
        let vocab = model.config.vocabSize
        #expect(out.logits.count == g.ids.count * vocab)
        // argmax and max logit at every prompt position: catches RoPE, cache and mask bugs early in the sequence.
        for p in 0..<g.ids.count {
            let row = out.logits(at: p, vocab: vocab)
            let best = row.indices.max { row[$0] < row[$1] }! - row.startIndex
            #expect(best == g.argmax_per_position[p], "position \(p)")
            #expect(abs(Double(row.max()!) - g.max_logit_per_position[p]) < 1e-2, "position \(p)")
        }
        // Top-20 logits after the whole prompt.
        let last = out.logits(at: g.ids.count - 1, vocab: vocab)
        for pair in g.last_top20 {
            let id = Int(pair[0])
            #expect(abs(Double(last[last.startIndex + id]) - pair[1]) < 1e-2, "token \(id)")
        }
    }

    @Test(arguments: golden.map(\.name))
    func greedyContinuationMatchesReference(name: String) throws {
        let g = golden.first { $0.name == name }!
        // Past a near-tie (margin < 0.05) float32 may legitimately take the other branch: compare up to it.
        let trusted = g.greedy_margins.firstIndex { $0 < 0.05 } ?? g.greedy.count
        let session = model.makeSession(contextSize: 1024)
        var out = try session.forward(tokens: g.ids.map(Int32.init))
        var tokens: [Int] = []
        while tokens.count < trusted {
            let next = out.logits.withUnsafeBufferPointer { Sampler.argmax($0) }
            tokens.append(next)
            if tokens.count < trusted { out = try session.forward(tokens: [Int32(next)]) }
        }
        #expect(tokens == Array(g.greedy.prefix(trusted)))
        #expect(trusted >= min(g.greedy.count, 2), "the reference itself should leave a testable prefix")
    }
}
