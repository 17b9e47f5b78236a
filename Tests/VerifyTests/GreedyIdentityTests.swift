import Draft
import Foundation
import Generation
import Llama
import Sampling
import Testing
import TestSupport
import Verify

/// Greedy speculative decoding must give exactly plain greedy decoding's tokens: the target's
/// logits for a tree node are bitwise those of plain decoding (batch-invariant kernels), so these
/// compare token ids, never tolerances. Generations are short to keep the target fast.
@Suite(.serialized) struct GreedyIdentityTests {
    static let n = 16
    /// Plain greedy references, computed once.
    static let references: [[Int32]] = { TestPrompt.all.map { try! plainDecode($0, n: n) } }()

    @Test func thereAreEnoughPrompts() {
        #expect(TestPrompt.all.count >= 50)
        #expect(TestPrompt.all.filter { $0.sequence != nil }.count >= 6)
    }

    /// `--tree-tokens auto` times one tree level of the draft on synthetic input before the
    /// first generation: the drafter comes back reset, and the decode that follows is plain's.
    @Test func timingTheDraftsTreeLevelLeavesItReset() throws {
        let drafter = perfectDrafter()
        let cost = try DraftLevelCost.measure(drafter: drafter, width: Target.width, vocab: Target.vocab, topK: 4)
        #expect(cost.topK == 4 && cost.seconds > 0, "\(cost)")
        #expect(drafter.acceptedPositions == 0, "the synthetic positions were left in the draft")
        let p = TestPrompt.all[0]
        let spec = try speculativeDecode(p, n: Self.n, drafter: drafter, shape: shape(4, 3, 4))
        #expect(spec.tokens == Self.references[0])
        #expect(spec.stats.tau > 1, "the perfect draft accepts deep: tau \(spec.stats.tau)")
    }

    /// The exact (f32) precision keeps the identity too: every third prompt (images included),
    /// random and perfect drafts, against plain f32 decoding. (The tests above run the default q8.)
    @Test func exactPrecisionMatchesPlainToo() throws {
        let m = Target.f32Model
        let drafter = perfectDrafter(model: m)
        var images = 0, differsFromQ8 = 0
        for (i, p) in TestPrompt.all.enumerated() where i % 3 == 0 || p.sequence != nil {
            let ref = try plainDecode(p, n: Self.n, model: m)
            let r1 = try speculativeDecode(p, n: Self.n, drafter: RandomDrafter(seed: UInt64(i)), shape: shape(2, 3, 6), model: m)
            let r2 = try speculativeDecode(p, n: Self.n, drafter: drafter, shape: shape(1, 5, 5), model: m)
            #expect(r1.tokens == ref, "f32 random draft, prompt \(i) '\(p.name)'")
            #expect(r2.tokens == ref, "f32 perfect draft, prompt \(i) '\(p.name)'")
            if p.sequence != nil { images += 1 }
            if ref != Self.references[i] { differsFromQ8 += 1 }
        }
        #expect(images >= 6)
        print("f32 vs q8 plain greedy: \(differsFromQ8) prompts differ within \(Self.n) tokens")
    }

    /// A bad draft (almost everything rejected) may be slow, never wrong.
    @Test func randomDraftMatchesPlainOnEveryPrompt() throws {
        let shapes = [shape(1, 1, 1), shape(1, 4, 4), shape(3, 3, 8), shape(4, 5, 16)]
        for (i, p) in TestPrompt.all.enumerated() {
            let s = shapes[i % shapes.count]
            let r = try speculativeDecode(p, n: Self.n, drafter: RandomDrafter(seed: UInt64(i)), shape: s)
            #expect(r.tokens == Self.references[i], "prompt \(i) '\(p.name)', \(s)")
        }
    }

    /// Plain steps (drafting paused because it does not pay) change no token, and drafting
    /// resumes after them with the skipped positions caught up: a random draft always loses.
    @Test func fallbackToPlainStepsMatchesPlain() throws {
        var f = FallbackPolicy()
        f.window = 2; f.probe = 1; f.initialPause = 2; f.maxPause = 4
        let eagle = try EagleDraft(weights: DraftWeights.random(for: Target.model, seed: 4), target: Target.model, contextSize: 512)
        var plainSteps = 0, resumed = 0
        for (i, p) in TestPrompt.all.enumerated() where i % 6 == 1 {
            let drafter: Drafter = i % 12 == 1 ? eagle : RandomDrafter(seed: UInt64(i))
            let r = try speculativeDecode(p, n: 24, drafter: drafter, shape: shape(2, 3, 4), fallback: f)
            #expect(r.tokens == Array(try plainDecode(p, n: 24)), "prompt \(i) '\(p.name)'")
            plainSteps += r.stats.plainSteps
            if r.stats.fallbacks > 1 { resumed += 1 }
        }
        #expect(plainSteps > 20)
        #expect(resumed > 0, "drafting must resume after a pause and pause again")
    }

    /// A draft that is always wrong, on a 16-token answer: the default policy stops drafting
    /// after its first window (4 steps), without waiting for plain-step timings, and the output
    /// is unchanged. Counts, not the clock (the slowdown is in the benchmark).
    @Test func alwaysWrongDraftPausesWithinTheFirstWindow() throws {
        var paused = 0
        for (i, p) in TestPrompt.all.enumerated() where i % 5 == 2 {
            let r = try speculativeDecode(p, n: 16, drafter: RandomDrafter(seed: UInt64(100 + i)), shape: shape(2, 3, 4),
                                          fallback: FallbackPolicy())
            #expect(r.tokens == Self.references[i], "prompt \(i) '\(p.name)'")
            let drafting = r.stats.steps   // plain steps are counted apart
            if r.stats.acceptedDraftTokens == 0 && r.tokens.count == 16 {
                #expect(drafting <= 4, "prompt \(i): \(drafting) drafting steps before the first pause")
                #expect(r.stats.fallbacks >= 1 && r.stats.plainSteps >= 16 - 4 - 1, "prompt \(i): \(r.stats)")
                paused += 1
            }
        }
        #expect(paused >= 5)
    }

    /// After a pause, drafting must win again from its first steps: an always-wrong draft that
    /// resumes is paused again after `firstWindow` steps, not after a whole `window` (at 64
    /// tokens: 4 drafting steps, 16 plain, 4 drafting, 32 plain, at most 4 more drafting).
    @Test func resumedLosingDraftPausesWithinFirstWindow() throws {
        var checked = 0
        for (i, p) in TestPrompt.all.enumerated() where i % 7 == 3 {
            let r = try speculativeDecode(p, n: 64, drafter: RandomDrafter(seed: UInt64(200 + i)), shape: shape(2, 3, 4),
                                          fallback: FallbackPolicy())
            #expect(r.tokens == Array(try plainDecode(p, n: 64)), "prompt \(i) '\(p.name)'")
            guard r.stats.acceptedDraftTokens == 0, r.tokens.count == 64 else { continue }
            #expect(r.stats.fallbacks >= 2, "prompt \(i): drafting should have resumed and paused again: \(r.stats)")
            #expect(r.stats.steps <= 3 * FallbackPolicy().firstWindow, "prompt \(i): \(r.stats.steps) drafting steps")
            checked += 1
        }
        #expect(checked >= 2)
    }

    /// Context matching (`ngram`, and merged into a draft's tree) changes no token, images
    /// included, and its accepted tokens are never counted as the draft's (τ).
    @Test func contextMatchMatchesPlainOnEveryPrompt() throws {
        let match = try ContextMatch(maxTokens: 4)
        var contextAccepted = 0, draftAccepted = 0
        for (i, p) in TestPrompt.all.enumerated() {
            let alone = try speculativeDecode(p, n: Self.n, drafter: ContextMatchDrafter(inner: nil, match: match), shape: shape(1, 1, 1))
            #expect(alone.tokens == Self.references[i], "ngram, prompt \(i) '\(p.name)'")
            #expect(alone.stats.acceptedDraftTokens == 0 && alone.stats.acceptanceByDepth.isEmpty)
            contextAccepted += alone.stats.acceptedContextTokens
            let merged = ContextMatchDrafter(inner: RandomDrafter(seed: UInt64(i)), match: match)
            let r = try speculativeDecode(p, n: Self.n, drafter: merged, shape: shape(2, 3, 4))
            #expect(r.tokens == Self.references[i], "random+ngram, prompt \(i) '\(p.name)'")
            #expect(r.stats.emitted == r.stats.steps + r.stats.acceptedDraftTokens + r.stats.acceptedContextTokens)
            draftAccepted += r.stats.acceptedDraftTokens
        }
        #expect(contextAccepted > 20, "context matching should accept on repetitive answers")
        // A paused draft keeps the context matches (plain steps verify them), output unchanged.
        // A random draft accepts nothing in its first (one-step) window and is paused for good.
        var f = FallbackPolicy()
        f.firstWindow = 1; f.initialPause = 1000; f.maxPause = 1000
        var pausedContext = 0
        for (i, p) in TestPrompt.all.enumerated() where i % 2 == 0 {
            let merged = ContextMatchDrafter(inner: RandomDrafter(seed: UInt64(50 + i)), match: match)
            let r = try speculativeDecode(p, n: Self.n, drafter: merged, shape: shape(2, 3, 4), fallback: f)
            #expect(r.tokens == Self.references[i], "paused random+ngram, prompt \(i) '\(p.name)'")
            guard r.stats.steps == 1 else { continue }
            // The one drafting step emitted 1 + its accepted draft and context tokens; the rest came from plain steps.
            pausedContext += r.stats.acceptedContextTokens - (r.stats.emitted - 1 - r.stats.acceptedDraftTokens)
        }
        #expect(pausedContext > 0, "plain steps of a paused draft should still accept context matches")
        #expect(draftAccepted < 10, "a random draft accepts almost nothing; context tokens must not count as its own")
    }

    /// The target as its own draft: deep acceptance, long compactions.
    @Test func perfectDraftMatchesPlainOnEveryPromptWithDeepAcceptance() throws {
        let shapes = [shape(1, 5, 5), shape(3, 4, 10), shape(1, 1, 1), shape(2, 6, 12)]
        var taus: [TreeShape: [Double]] = [:]
        let drafter = perfectDrafter()
        for (i, p) in TestPrompt.all.enumerated() {
            let s = shapes[i % shapes.count]
            let r = try speculativeDecode(p, n: Self.n, drafter: drafter, shape: s)
            #expect(r.tokens == Self.references[i], "prompt \(i) '\(p.name)', \(s)")
            taus[s, default: []].append(r.stats.tau)
            // Every step accepts as deep as the tree goes (unless the answer ends inside it).
            if r.tokens.count == Self.n && r.stats.steps > 1 {
                #expect(r.stats.acceptanceByDepth.allSatisfy { $0 == 1 }, "prompt \(i): \(r.stats.acceptanceByDepth)")
            }
        }
        let chainTau = (taus[shape(1, 5, 5)] ?? []).reduce(0, +) / Double(taus[shape(1, 5, 5)]?.count ?? 1)
        #expect(chainTau > 3.5, "a perfect chain of 5 should accept nearly 5 tokens per step: \(taus)")
    }

    /// The training-free baseline (`--draft early-exit:8`: the target's first 8 of 30 layers and
    /// its head) with `--draft-p-min auto`, one bandit learning over the prompts as eval runs it,
    /// and with a fixed threshold: the thresholds change which nodes are verified, never a token.
    @Test func adaptiveThresholdEarlyExitMatchesPlain() throws {
        let exit = try LlamaModel(earlyExitOf: Target.model, layers: 8)
        let drafter = LlamaDrafter(model: exit, contextSize: 512, prefillBatchInvariant: Generation.prefillBatchInvariant)
        let bandit = PMinBandit()
        var steps = 0, pruned = 0, unpruned = 0
        for i in [0, 3, 9, 24, 30, 44, 47] {   // chats, raw text, images
            let p = TestPrompt.all[i]
            let auto = try speculativeDecode(p, n: Self.n, drafter: drafter, shape: shape(4, 4, 8), pMin: bandit)
            #expect(auto.tokens == Self.references[i], "auto, prompt \(i) '\(p.name)'")
            steps += auto.stats.steps
            let fixed = try speculativeDecode(p, n: Self.n, drafter: drafter, shape: shape(4, 4, 8), pMin: PMinBandit(thresholds: [0.4]))
            #expect(fixed.tokens == Self.references[i], "p-min 0.4, prompt \(i) '\(p.name)'")
            let off = try speculativeDecode(p, n: Self.n, drafter: drafter, shape: shape(4, 4, 8))
            pruned += fixed.stats.treeNodes; unpruned += off.stats.treeNodes
        }
        #expect(bandit.arms.map(\.steps).reduce(0, +) == steps)
        #expect(pruned < unpruned / 2, "p-min 0.4 verifies far fewer of the early exit's nodes: \(pruned) vs \(unpruned)")
    }

    /// Greedy with a repetition penalty picks through the sampler's filtered distribution.
    @Test func repetitionPenaltyGreedyMatchesPlain() throws {
        var params = SamplingParameters()
        params.repetitionPenalty = 1.3
        for i in [0, 5, 30, 47] {
            let p = TestPrompt.all[i]
            let plain = try plainDecode(p, n: Self.n, params: params)
            let spec = try speculativeDecode(p, n: Self.n, drafter: perfectDrafter(), shape: shape(2, 4, 8), params: params)
            #expect(spec.tokens == plain, "prompt \(i)")
            let rand = try speculativeDecode(p, n: Self.n, drafter: RandomDrafter(seed: 9), shape: shape(2, 3, 6), params: params)
            #expect(rand.tokens == plain, "prompt \(i)")
        }
    }

    /// The drafter reads exactly the target's hidden rows of the accepted positions (bitwise those
    /// of plain decoding) and the tokens after them; the target's cache keeps only the accepted path.
    @Test func drafterSeesPlainDecodingsFeaturesAndTheCacheIsCompact() throws {
        let p = TestPrompt.all[3]
        let d = Target.width
        // Plain decoding's hidden rows, position by position.
        let plainSession = Target.model.makeSession(contextSize: 128)
        var out = try p.prefill(plainSession)
        var plainHidden = out.hidden
        var sampler = try Sampler(SamplingParameters())
        var plainTokens: [Int32] = []
        for _ in 0..<30 {
            let t = out.logits.withUnsafeBufferPointer { sampler.sample($0, history: []) }
            plainTokens.append(t)
            out = try plainSession.forward(tokens: [t])
            plainHidden += out.hidden
        }

        let rec = RecordingDrafter(perfectDrafter())
        let session = Target.model.makeSession(contextSize: 128)
        let prefill = try p.prefill(session)
        let dec = try SpeculativeDecoder(session: session, drafter: rec, sampler: try Sampler(SamplingParameters()),
                                         shape: shape(2, 4, 7), prefill: prefill, prompt: p.tokens, images: [], history: p.history)
        var emitted = [dec.firstToken]
        while emitted.count < 16 {
            emitted += try dec.step()
            // Root (the last emitted token) is not yet evaluated: the cache holds everything before it.
            #expect(session.length == p.tokens.count + emitted.count - 1)
        }
        _ = try dec.step()   // feeds the drafter the last step's rows
        #expect(Array(emitted.prefix(16)) == Array(plainTokens.prefix(16)))
        let next = rec.nextTokens
        #expect(Array(next.prefix(p.tokens.count - 1)) == Array(p.tokens.dropFirst()))
        #expect(Array(next.dropFirst(p.tokens.count - 1).prefix(emitted.count)) == emitted)
        let rows = min(rec.features.count, plainHidden.count) / d
        #expect(rows >= p.tokens.count + emitted.count - 1)
        #expect(Array(rec.features.prefix(rows * d)) == Array(plainHidden.prefix(rows * d)), "features differ from plain decoding's hidden rows")
    }
}

/// Passes everything through and records what `accept` was given.
final class RecordingDrafter: Drafter {
    let inner: Drafter
    var features: [Float] = []
    var nextTokens: [Int32] = []
    init(_ inner: Drafter) { self.inner = inner }
    var acceptedPositions: Int { inner.acceptedPositions }
    func accept(features: [Float], nextTokens: [Int32], images: [DraftImageSpan], topK: Int) throws -> [DraftCandidate] {
        self.features += features; self.nextTokens += nextTokens
        return try inner.accept(features: features, nextTokens: nextTokens, images: images, topK: topK)
    }
    func expand(tokens: [Int32], parents: [Int], topK: Int) throws -> [[DraftCandidate]] {
        try inner.expand(tokens: tokens, parents: parents, topK: topK)
    }
    func reset() { inner.reset(); features = []; nextTokens = [] }
}

extension RecordingDrafter: SequenceStartDrafter {
    func begin(firstInput: [Float]) { (inner as? SequenceStartDrafter)?.begin(firstInput: firstInput) }
}
