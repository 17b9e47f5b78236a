import Draft
import Testing
import Verify

/// EAGLE-2 tree construction with a scripted draft (no model).
@Suite struct TreeTests {
    /// Children of token t are 10t+1 … 10t+k with log-probabilities −0.1·(child rank + 1)·(t % 3 + 1).
    final class ScriptDrafter: Drafter {
        var acceptedPositions = 0
        var calls: [(tokens: [Int32], parents: [Int])] = []
        var nodes: [Int32] = []
        func children(of t: Int32, _ k: Int) -> [DraftCandidate] {
            (0..<k).map { DraftCandidate(token: t * 10 + Int32($0) + 1, logProb: -0.1 * Float($0 + 1) * Float(t % 3 + 1)) }
        }
        func accept(features: [Float], nextTokens: [Int32], images: [DraftImageSpan], topK: Int) throws -> [DraftCandidate] {
            children(of: nextTokens.last!, topK)
        }
        func expand(tokens: [Int32], parents: [Int], topK: Int) throws -> [[DraftCandidate]] {
            for p in parents { #expect(p < nodes.count, "a parent must be an earlier node of the round") }
            calls.append((tokens, parents)); nodes += tokens
            return tokens.map { children(of: $0, topK) }
        }
        func reset() {}
    }

    @Test func growExpandsTopKPerLevelAndSelectsAConnectedBestTree() throws {
        let d = ScriptDrafter()
        let s = try TreeShape(topK: 3, depth: 4, tokens: 10)
        let root = try d.accept(features: [], nextTokens: [1], images: [], topK: 3)
        let c = try DraftCandidates.grow(root: root, drafter: d, shape: s, budget: 10)
        #expect(d.calls.count == 3, "depth 4: three expand calls")
        #expect(d.calls.allSatisfy { $0.tokens.count == 3 }, "top-k nodes expanded per level")
        #expect(d.calls[0].parents == [-1, -1, -1])
        #expect(c.count == 3 + 3 * 9)
        let t = c.select(10)
        #expect(t.count == 10)
        for i in 0..<t.count {
            let p = t.parents[i]
            #expect(p < i, "parents before children")
            #expect(t.depths[i] == (p < 0 ? 1 : t.depths[p] + 1))
            if p >= 0 { #expect(t.scores[p] >= t.scores[i]) }
        }
        // The selected nodes are the 10 best scores of all candidates.
        let all = c.select(c.count).scores.sorted(by: >)
        #expect(t.scores.sorted(by: >) == Array(all.prefix(10)))
    }

    @Test func chainAndSingleNode() throws {
        let d = ScriptDrafter()
        let root = try d.accept(features: [], nextTokens: [2], images: [], topK: 1)
        let chain = try DraftCandidates.grow(root: root, drafter: d, shape: try TreeShape(topK: 1, depth: 5, tokens: 5), budget: 5).select(5)
        #expect(chain.tokens == [21, 211, 2111, 21111, 211111])
        #expect(chain.parents == [-1, 0, 1, 2, 3])
        let d2 = ScriptDrafter()
        let single = try DraftCandidates.grow(root: root, drafter: d2, shape: try TreeShape(topK: 1, depth: 1, tokens: 1), budget: 1).select(1)
        #expect(single.tokens == [21] && single.parents == [-1] && d2.calls.isEmpty)
    }

    /// Growing only what a budget of n nodes can use selects the same tree as growing everything,
    /// and asks the draft for less.
    @Test func budgetPruningKeepsTheSelection() throws {
        let shape = try TreeShape(topK: 4, depth: 5, tokens: 12)
        let full = ScriptDrafter()
        let root = try full.accept(features: [], nextTokens: [4], images: [], topK: 4)
        let all = try DraftCandidates.grow(root: root, drafter: full, shape: shape, budget: 1000)
        for n in 1...12 {
            let d = ScriptDrafter()
            let pruned = try DraftCandidates.grow(root: root, drafter: d, shape: shape, budget: n)
            let a = all.select(n), b = pruned.select(n)
            #expect(a.tokens == b.tokens && a.parents == b.parents, "budget \(n)")
            #expect(d.nodes.count <= full.nodes.count)
            if n <= 2 { #expect(d.nodes.count == n - 1, "budget \(n): a chain needs \(n - 1) expansions") }
        }
    }

    @Test func badShapesAreTypedErrors() {
        #expect(throws: VerifyError.self) { try TreeShape(topK: 0, depth: 1, tokens: 1) }
        #expect(throws: VerifyError.self) { try TreeShape(topK: 1, depth: 0, tokens: 1) }
        #expect(throws: VerifyError.self) { try TreeShape(topK: 1, depth: 1, tokens: 0) }
    }

    @Test func topCandidatesAreLogSoftmaxBestFirst() {
        let row: [Float] = [0, 2, 1, 2, -1]
        let top = DraftCandidate.top(3, logits: row[...])
        #expect(top.map(\.token) == [1, 3, 2])
        let lse = log(row.map { exp(Double($0)) }.reduce(0, +))
        #expect(abs(Double(top[0].logProb) - (2 - lse)) < 1e-5)
    }

    @Test func budgetFollowsTheCostCurve() {
        // Verification cost flat to 8 tokens, then steep: the budget stops near 7 nodes.
        let curve = VerifyCostCurve(context: 128, threads: 2, points: [
            .init(n: 1, seconds: 0.010), .init(n: 2, seconds: 0.010), .init(n: 4, seconds: 0.010),
            .init(n: 8, seconds: 0.011), .init(n: 16, seconds: 0.030), .init(n: 32, seconds: 0.060), .init(n: 64, seconds: 0.120)])
        let n = TreeBudget.choose(curve: curve, acceptance: .default, draftSeconds: 0.002, depth: 6, maxNodes: 63)
        #expect(n >= 5 && n <= 9, "chose \(n)")
        // Free verification: take everything.
        let flat = VerifyCostCurve(context: 128, threads: 2, points: [.init(n: 1, seconds: 0.01), .init(n: 64, seconds: 0.01)])
        #expect(TreeBudget.choose(curve: flat, acceptance: .default, draftSeconds: 0, depth: 6, maxNodes: 40) == 40)
    }

    /// With the lazy head a node costs only its body unless the walk reaches it: the same target
    /// split into body and head affords at least as many nodes as when every row pays the head.
    @Test func lazyHeadMakesNodesCheaper() {
        let head = 0.004
        let body: [(Int, Double)] = [(1, 0.012), (2, 0.016), (4, 0.024), (8, 0.050)]
        let all = VerifyCostCurve(context: 128, threads: 1, points: body.map { .init(n: $0.0, seconds: $0.1 + head * Double($0.0)) })
        let lazy = VerifyCostCurve(context: 128, threads: 1, points: body.map { .init(n: $0.0, seconds: $0.1) }, headSeconds: head)
        #expect(lazy.stepSeconds(tokens: 4, visitedRows: 1.5) == 0.024 + 0.006)
        #expect(all.stepSeconds(tokens: 4, visitedRows: 1.5) == all.seconds(4))
        let a = AcceptanceModel(first: 0.8, decay: 0.7, source: "test")
        let nAll = TreeBudget.choose(curve: all, acceptance: a, draftSeconds: 0.004, depth: 6, maxNodes: 7)
        let nLazy = TreeBudget.choose(curve: lazy, acceptance: a, draftSeconds: 0.004, depth: 6, maxNodes: 7)
        #expect(nLazy > nAll, "lazy \(nLazy), all rows \(nAll)")
    }

    /// A head measured on several row counts is charged from that curve (load-bound: a path's rows
    /// cost about one row's time, not one each), so deeper trees cost less than per-row pricing
    /// says; a curve without it keeps the per-row price.
    @Test func headChargedFromItsRowCurve() {
        let body: [VerifyCostCurve.Point] = [.init(n: 1, seconds: 0.002), .init(n: 2, seconds: 0.0024), .init(n: 4, seconds: 0.0036),
                                             .init(n: 8, seconds: 0.0058)]
        let rows: [VerifyCostCurve.Point] = [.init(n: 1, seconds: 0.0005), .init(n: 2, seconds: 0.0005), .init(n: 4, seconds: 0.0006),
                                             .init(n: 8, seconds: 0.0010)]
        let measured = VerifyCostCurve(context: 128, threads: 2, points: body, headSeconds: 0.0005, headPoints: rows)
        let perRow = VerifyCostCurve(context: 128, threads: 2, points: body, headSeconds: 0.0005)
        #expect(abs(measured.headSeconds(rows: 3) - 0.00055) < 1e-12)
        #expect(abs(measured.headSeconds(rows: 1.5) - 0.0005) < 1e-12)
        #expect(abs(measured.headSeconds(rows: 12) - 0.0014) < 1e-12, "beyond the last point along the last two")
        #expect(abs(perRow.headSeconds(rows: 3) - 0.0015) < 1e-12)
        #expect(abs(measured.stepSeconds(tokens: 4, visitedRows: 3) - (0.0036 + 0.00055)) < 1e-12)
        let a = AcceptanceModel(first: 0.8, decay: 0.7, source: "test")
        let nMeasured = TreeBudget.choose(curve: measured, acceptance: a, draftSeconds: 0.001, depth: 6, maxNodes: 7)
        let nPerRow = TreeBudget.choose(curve: perRow, acceptance: a, draftSeconds: 0.001, depth: 6, maxNodes: 7)
        #expect(nMeasured > nPerRow, "row curve \(nMeasured), per row \(nPerRow)")
    }

    /// A compute-bound target (each extra verified token costs ~0.3–0.5 of one, as on this 2-core
    /// CPU): a weak draft gets a single node, a strong one a short chain.
    @Test func budgetOnAComputeBoundTarget() {
        let curve = VerifyCostCurve(context: 128, threads: 1, points: [
            .init(n: 1, seconds: 0.016), .init(n: 2, seconds: 0.021), .init(n: 4, seconds: 0.032), .init(n: 8, seconds: 0.070)])
        let weak = AcceptanceModel(first: 0.54, decay: 0.49, source: "test")
        let strong = AcceptanceModel(first: 0.9, decay: 0.9, source: "test")
        #expect(TreeBudget.choose(curve: curve, acceptance: weak, draftSeconds: 0.010, depth: 6, maxNodes: 7) == 1)
        let n = TreeBudget.choose(curve: curve, acceptance: strong, draftSeconds: 0.010, depth: 6, maxNodes: 7)
        #expect(n >= 2 && n <= 4, "chose \(n)")
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Context matching (`--draft ngram`, `DRAFT+ngram`): the proposal rule and the tree merge, no model.
@Suite struct ContextMatchTests {
    @Test func proposesWhatFollowedTheLatestLongestMatch() throws {
        let m = try ContextMatch(maxTokens: 3)
        // Suffix [7, 8, 9] occurred at 0 (→ 1, 2, 3) and [8, 9] at 10 (→ 5): the longer match wins.
        let h: [Int32] = [7, 8, 9, 1, 2, 3, 4, 0, 0, 0, 8, 9, 5, 6, 7, 8, 9]
        #expect(m.propose(history: h, limit: 8) == [1, 2, 3])
        #expect(m.propose(history: h, limit: 2) == [1, 2])
        // Among equal matches the latest: [4, 5] at 0 (→ 1) and at 3 (→ 2).
        #expect(m.propose(history: [4, 5, 1, 4, 5, 2, 9, 4, 5], limit: 4) == [2, 9, 4])
        // The continuation may run into the suffix itself (a repeating text keeps repeating).
        #expect(m.propose(history: [1, 2, 1, 2, 1, 2], limit: 3) == [1, 2])
        // One token alone is not a match; nothing before; image rows (−1) never match.
        #expect(m.propose(history: [3, 4, 5, 6, 7, 3], limit: 4).isEmpty)
        #expect(m.propose(history: [], limit: 4).isEmpty)
        #expect(m.propose(history: [-1, -1, 6, 8, -1, -1], limit: 4).isEmpty)
        #expect(m.propose(history: [1, 2, 5, 1, 2], limit: 0).isEmpty)
        #expect(throws: DraftError.self) { try ContextMatch(maxTokens: 0) }
    }

    @Test func mergeFollowsTheDraftsNodesAndAppendsTheRest() throws {
        let d = TreeTests.ScriptDrafter()
        let s = try TreeShape(topK: 2, depth: 2, tokens: 4)
        let root = try d.accept(features: [], nextTokens: [1], images: [], topK: 2)
        var tree = try DraftCandidates.grow(root: root, drafter: d, shape: s, budget: 4).select(4)
        let before = tree
        // 11 is the draft's first child and 111 its first grandchild: the chain follows them,
        // then adds 5 and 6 below 111.
        tree.merge(chain: [11, 111, 5, 6])
        #expect(Array(tree.tokens.prefix(before.count)) == before.tokens)
        #expect(Array(tree.parents.prefix(before.count)) == before.parents)
        #expect(tree.count == before.count + 2)
        let n111 = before.tokens.firstIndex(of: 111)!
        #expect(tree.parents[before.count] == n111 && tree.parents[before.count + 1] == before.count)
        #expect(tree.depths.suffix(2) == [3, 4])
        #expect(tree.contextMatched == Array(repeating: false, count: before.count) + [true, true])
        // A chain the draft did not propose at all starts a new child of the root.
        var other = before
        other.merge(chain: [99, 98])
        #expect(other.parents.suffix(2) == [-1, before.count])
        for (i, p) in other.parents.enumerated() { #expect(p < i) }
        // What merging each prefix would add: nothing while the chain follows the draft's nodes.
        #expect(before.nodesAdded(chain: [11, 111, 5, 6]) == [0, 0, 1, 2])
        #expect(before.nodesAdded(chain: [99, 11]) == [1, 2])
        #expect(DraftTree().nodesAdded(chain: []) == [])
    }

    /// A verify curve shaped like the AVX2 Zen 1's (a 5-token forward costs 2.05× one token).
    static let steepCurve = VerifyCostCurve(context: 128, threads: 2, points: [
        .init(n: 1, seconds: 0.010), .init(n: 2, seconds: 0.0132), .init(n: 3, seconds: 0.0155),
        .init(n: 4, seconds: 0.018), .init(n: 5, seconds: 0.0205), .init(n: 8, seconds: 0.028)], headSeconds: 0)
    /// A batch that costs what one token costs, as a memory-bound machine's nearly does.
    static let flatCurve = VerifyCostCurve(context: 128, threads: 2, points: [.init(n: 1, seconds: 0.010), .init(n: 64, seconds: 0.010)],
                                           headSeconds: 0)

    @Test func chainOddsCountAgreementWithTheTargetsTokensByPosition() {
        var odds = ContextMatchOdds()
        #expect(odds.probability(position: 1) == 0.5)   // no evidence: one in two
        // Agrees on 2 tokens, then differs; the emitted tokens end before the chain's 4th.
        odds.observe(chain: [5, 6, 7, 8], emitted: [5, 6, 9])
        #expect(odds.reached == [1, 1, 1] && odds.agreed == [1, 1, 0])
        // Differs at once: nothing further is reached.
        odds.observe(chain: [5, 6], emitted: [4, 6, 1])
        #expect(odds.reached == [2, 1, 1] && odds.agreed == [1, 1, 0])
        // Position 1: (1 + 1) / (2 + 2); deeper ones start from the estimate before them, worth two observations.
        #expect(odds.probability(position: 1) == 0.5)
        #expect(abs(odds.probability(position: 2) - (1 + 2 * 0.5) / 3) < 1e-12)
        #expect(abs(odds.probability(position: 3) - (0 + 2 * (2.0 / 3)) / 3) < 1e-12)
        #expect(odds.probability(position: 4) == odds.probability(position: 3))   // never reached: the estimate before it
        #expect(abs(odds.expectedTokens(2) - (0.5 + 0.5 * 2.0 / 3)) < 1e-12)
        #expect(odds.expectedTokens(0) == 0)
    }

    @Test func chainLengthFollowsVerifyCostAndOdds() {
        var right = ContextMatchOdds(), wrong = ContextMatchOdds()
        for _ in 0..<20 {
            right.observe(chain: [1, 2, 3, 4], emitted: [1, 2, 3, 4, 5])
            wrong.observe(chain: [1, 2, 3, 4], emitted: [9, 2, 3, 4, 5])
        }
        let added = [1, 2, 3, 4]
        // Free verify slots: every chain token is worth trying, even unlikely ones.
        #expect(wrong.bestLength(added: added, treeNodes: 0, baseTokens: 1, fixedSeconds: 0, curve: Self.flatCurve) == 4)
        // Costly slots: a chain that is always right pays for all four, one that is always wrong for none.
        #expect(right.bestLength(added: added, treeNodes: 0, baseTokens: 1, fixedSeconds: 0, curve: Self.steepCurve) == 4)
        #expect(wrong.bestLength(added: added, treeNodes: 0, baseTokens: 1, fixedSeconds: 0, curve: Self.steepCurve) == 0)
        // No evidence (one in two at each position) on the steep curve: a short chain.
        let fresh = ContextMatchOdds().bestLength(added: added, treeNodes: 0, baseTokens: 1, fixedSeconds: 0, curve: Self.steepCurve)
        #expect((1...2).contains(fresh), "\(fresh)")
        // Tokens that follow the draft's own nodes cost nothing: an unlikely chain is kept that far.
        #expect(wrong.bestLength(added: [0, 0, 1, 2], treeNodes: 3, baseTokens: 1.5, fixedSeconds: 0.002, curve: Self.steepCurve) == 2)
    }
}
