import Llama
import Testing
import TestSupport

/// The verifier's path: a whole draft tree in one forward must give each node exactly (bitwise)
/// what decoding its path token by token gives, and compaction must leave the cache as if only
/// the kept path had been decoded.
@Suite(.enabled(if: TestPaths.hasModel && TestPaths.hasReference, "needs the model (scripts/setup.sh) and ../shared/reference (its prompt)")) struct TreeMaskTests {
    let prompt: [Int32] = golden.first { $0.name == "chat_sky" }!.ids.map(Int32.init)
    //            0     1    2     3    4    5     6
    let tokens: [Int32] = [504, 6376, 3280, 335, 314, 253, 28]
    let parents = [-1, 0, -1, 1, 1, 3, 2]

    func path(to node: Int) -> [Int] {
        var p: [Int] = []
        var i = node
        while i >= 0 { p.insert(i, at: 0); i = parents[i] }
        return p
    }

    @Test func treeNodesEqualSequentialDecodingOfTheirPaths() throws {
        let vocab = model.config.vocabSize, d = model.config.width
        let tree = model.makeSession(contextSize: 256)
        _ = try tree.forward(tokens: prompt, logits: .none)
        let out = try tree.forward(tokens: tokens, logits: .all, mask: .tree(parents: parents))
        for node in tokens.indices {
            let seq = model.makeSession(contextSize: 256)
            _ = try seq.forward(tokens: prompt, logits: .none)
            var last: ForwardOutput?
            for i in path(to: node) { last = try seq.forward(tokens: [tokens[i]], logits: .last) }
            #expect(last!.logits == Array(out.logits(at: node, vocab: vocab)), "node \(node)")
            #expect(last!.hidden == Array(out.hidden[node * d ..< (node + 1) * d]), "node \(node) hidden")
            // The verifier's lazy head: one row from the hidden state, the batched head's bits.
            var lazy = [Float](repeating: 0, count: vocab)
            out.hidden.withUnsafeBufferPointer { h in
                lazy.withUnsafeMutableBufferPointer { model.logits(hidden: h.baseAddress! + node * d, into: $0.baseAddress!) }
            }
            #expect(lazy == last!.logits, "node \(node) lazy head")
        }
    }

    @Test func compactingKeepsExactlyTheAcceptedPath() throws {
        let kept = path(to: 5)   // 0 → 1 → 3 → 5
        let tree = model.makeSession(contextSize: 256)
        _ = try tree.forward(tokens: prompt, logits: .none)
        _ = try tree.forward(tokens: tokens, logits: .none, mask: .tree(parents: parents))
        tree.compact(batchStart: prompt.count, keeping: kept)
        #expect(tree.length == prompt.count + kept.count)
        let next = try tree.forward(tokens: [30], logits: .last)

        let seq = model.makeSession(contextSize: 256)
        _ = try seq.forward(tokens: prompt + kept.map { tokens[$0] }, logits: .none)
        let expected = try seq.forward(tokens: [30], logits: .last)
        #expect(next.logits == expected.logits)
    }

    @Test func causalMaskIsTheChainTree() throws {
        let a = model.makeSession(contextSize: 256)
        let chain = try a.forward(tokens: prompt, logits: .all, mask: .tree(parents: Array(-1..<(prompt.count - 1))))
        let b = model.makeSession(contextSize: 256)
        let causal = try b.forward(tokens: prompt, logits: .all)
        #expect(chain.logits == causal.logits)
    }

    @Test func badMasksAreRefused() throws {
        let s = model.makeSession(contextSize: 64)
        #expect(throws: LlamaError.self) { try s.forward(tokens: [1, 2], mask: .tree(parents: [-1])) }
        #expect(throws: LlamaError.self) { try s.forward(tokens: [1, 2], mask: .tree(parents: [1, -1])) }
        #expect(throws: LlamaError.self) { try s.forward(tokens: [1, 2], mask: .tree(parents: [-1, -2])) }
        #expect(s.length == 0)
    }
}
