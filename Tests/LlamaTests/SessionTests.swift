import Llama
import Testing
import TestSupport

/// Properties the verifier and the draft rely on: batch invariance, truncation, hidden states.
@Suite(.enabled(if: TestPaths.hasModel && TestPaths.hasReference, "needs the model (scripts/setup.sh) and ../shared/reference (its prompt)")) struct SessionTests {
    let prompt: [Int32] = golden.first { $0.name == "chat_capital" }!.ids.map(Int32.init)

    @Test func batchedPrefillIsBitIdenticalToOneTokenAtATime() throws {
        let batched = model.makeSession(contextSize: 256)
        let all = try batched.forward(tokens: prompt, logits: .all)
        let single = model.makeSession(contextSize: 256)
        let vocab = model.config.vocabSize, d = model.config.width
        for (i, t) in prompt.enumerated() {
            let o = try single.forward(tokens: [t], logits: .last)
            #expect(Array(o.logits) == Array(all.logits(at: i, vocab: vocab)), "position \(i)")
            #expect(o.hidden == Array(all.hidden[i * d ..< (i + 1) * d]), "hidden \(i)")
        }
    }

    @Test func splitBatchesGiveTheSameResult() throws {
        let a = model.makeSession(contextSize: 256)
        let whole = try a.forward(tokens: prompt, logits: .last)
        let b = model.makeSession(contextSize: 256)
        _ = try b.forward(tokens: Array(prompt.prefix(10)), logits: .none)
        let rest = try b.forward(tokens: Array(prompt.dropFirst(10)), logits: .last)
        #expect(whole.logits == rest.logits)
        #expect(b.length == prompt.count)
    }

    @Test func truncateThenReplayReproducesLogits() throws {
        let s = model.makeSession(contextSize: 256)
        let first = try s.forward(tokens: prompt, logits: .last)
        s.truncate(to: prompt.count - 3)
        #expect(s.length == prompt.count - 3)
        let again = try s.forward(tokens: Array(prompt.suffix(3)), logits: .last)
        #expect(first.logits == again.logits)
    }

    @Test func capturesAnyLayersResidualStream() throws {
        let s = model.makeSession(contextSize: 256)
        let out = try s.forward(tokens: Array(prompt.prefix(5)), logits: .none, captureLayers: [0, 29])
        #expect(out.layerStates[0]?.count == 5 * model.config.width)
        #expect(out.layerStates[29]?.count == 5 * model.config.width)
        #expect(out.layerStates[0] != out.layerStates[29])
        #expect(out.hidden.count == 5 * model.config.width)
        #expect(out.logits.isEmpty)
    }

    /// Several sessions, each at its own length, stepping one token together give each exactly
    /// what its own one-token forward gives: logits, hidden state, captured layers, cache.
    @Test func steppingSessionsTogetherIsBitIdenticalToAlone() throws {
        let lengths = [3, 11, 1, 7]
        let together = lengths.map { _ in model.makeSession(contextSize: 64) }
        let alone = lengths.map { _ in model.makeSession(contextSize: 64) }
        for (k, n) in lengths.enumerated() {
            _ = try together[k].forward(tokens: Array(prompt.prefix(n)), logits: .none)
            _ = try alone[k].forward(tokens: Array(prompt.prefix(n)), logits: .none)
        }
        for round in 0..<3 {
            let tokens = lengths.indices.map { prompt[($0 * 5 + round * 3) % prompt.count] }
            let wantLogits = lengths.indices.map { ($0 + round) % 3 != 0 }
            let outs = try LlamaSession.step(together, tokens: tokens, logits: wantLogits, captureLayers: [4])
            for k in lengths.indices {
                let o = try alone[k].forward(tokens: [tokens[k]], logits: wantLogits[k] ? .last : .none, captureLayers: [4])
                #expect(outs[k].logits == o.logits, "session \(k) round \(round)")
                #expect(outs[k].logits.count == (wantLogits[k] ? model.config.vocabSize : 0))
                #expect(outs[k].hidden == o.hidden && outs[k].layerStates[4] == o.layerStates[4], "session \(k) round \(round)")
                #expect(together[k].length == alone[k].length)
            }
        }
        // The caches agree too: one more token on each, alone, gives the same logits.
        for k in lengths.indices {
            #expect(try together[k].forward(tokens: [prompt[k]]).logits == (try alone[k].forward(tokens: [prompt[k]]).logits))
        }
        #expect(throws: LlamaError.self) { try LlamaSession.step([together[0], together[0]], tokens: [1, 2], logits: [true, true]) }
        let full = model.makeSession(contextSize: 1)
        _ = try full.forward(tokens: [1], logits: .none)
        #expect(throws: LlamaError.contextFull(needed: 2, capacity: 1)) { try LlamaSession.step([together[1], full], tokens: [1, 2], logits: [true, true]) }
    }

    @Test func rejectsBadInput() throws {
        let s = model.makeSession(contextSize: 8)
        #expect(throws: LlamaError.tokenOutOfRange(49152, vocabSize: 49152)) { try s.forward(tokens: [49152]) }
        #expect(throws: LlamaError.tokenOutOfRange(-1, vocabSize: 49152)) { try s.forward(tokens: [-1]) }
        #expect(throws: LlamaError.emptyInput) { try s.forward(tokens: []) }
        #expect(throws: LlamaError.contextFull(needed: 9, capacity: 8)) { try s.forward(tokens: Array(repeating: 1, count: 9)) }
        #expect(s.length == 0)
    }
}
