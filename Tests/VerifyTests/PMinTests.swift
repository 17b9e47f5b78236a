import Draft
import Generation
import Llama
import Sampling
import Testing
import Verify

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `--draft-p-min`: the bandit alone on synthetic rewards, the threshold's pruning of a scripted
/// tree, and the decoder on the tiny target (model-free: counts, never the clock). The real
/// model's identity with the early exit is in `GreedyIdentityTests`.
@Suite(.serialized) struct PMinTests {
    /// Rewards with means by arm and uniform noise of ±`noise`, from a seeded generator.
    static func play(_ bandit: PMinBandit, means: [Double], noise: Double, steps: Int, seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        for _ in 0..<steps {
            let a = bandit.choose()
            bandit.update(arm: a, reward: means[a] + noise * (2 * rng.nextUnitDouble() - 1))
        }
    }

    /// Gaps of 10–20% under noise larger than the gaps (a drafting step's tokens/s on a shared
    /// CPU): the bandit still plays the best arm most of the time, and the same seed and rewards
    /// give the same choices.
    @Test func banditConvergesToTheBestArm() {
        let means = [1.0, 1.2, 1.4, 1.25, 0.9]   // arm 2 (0.4) is best
        let a = PMinBandit(), b = PMinBandit()
        Self.play(a, means: means, noise: 0.5, steps: 2000, seed: 11)
        Self.play(b, means: means, noise: 0.5, steps: 2000, seed: 11)
        #expect(a.arms == b.arms, "deterministic given the seed and the rewards")
        let steps = a.arms.map(\.steps)
        #expect(steps.reduce(0, +) == 2000)
        #expect(steps[2] > 1400, "the best arm dominates: \(steps)")
        #expect(steps.allSatisfy { $0 >= 2 }, "every arm was tried: \(steps)")
        #expect(max(steps[0], steps[4]) < steps[3], "the two worst arms are played least: \(steps)")
        #expect(a.best == 0.4)
        #expect(abs(a.arms[2].mean_tokens_per_s - 1.4) < 0.05)
        // Another seed explores differently but learns the same.
        let c = PMinBandit(seed: 99)
        Self.play(c, means: means, noise: 0.5, steps: 2000, seed: 11)
        #expect(c.best == 0.4 && c.arms[2].steps > 1400)
    }

    /// Noise-free rewards: after the two opening rounds the bandit never leaves the best arm.
    @Test func banditWithExactRewardsIsGreedy() {
        let bandit = PMinBandit()
        Self.play(bandit, means: [3, 1, 2, 5, 4], noise: 0, steps: 100, seed: 1)
        #expect(bandit.arms.map(\.steps) == [2, 2, 2, 92, 2])
        let fixed = PMinBandit(thresholds: [0.3])
        #expect(!fixed.isAdaptive && (0..<5).allSatisfy { _ in fixed.choose() == 0 })
        #expect(PMinBandit().minLogProb(0) == -.infinity, "0 prunes nothing")
    }

    /// The threshold on cumulative probability prunes the tree to the unpruned selection's nodes
    /// at or above it, for every budget, and asks the draft for no more.
    @Test func thresholdPrunesTheTreeAsSpecified() throws {
        let shape = try TreeShape(topK: 3, depth: 4, tokens: 20)
        let root = try TreeTests.ScriptDrafter().accept(features: [], nextTokens: [1], images: [], topK: 3)
        let full = TreeTests.ScriptDrafter()
        let all = try DraftCandidates.grow(root: root, drafter: full, shape: shape, budget: 20)
        for p: Float in [0.05, 0.2, 0.4, 0.6, 0.75, 0.9] {
            for n in [1, 3, 8, 20] {
                let d = TreeTests.ScriptDrafter()
                let t = try DraftCandidates.grow(root: root, drafter: d, shape: shape, budget: n, minLogProb: logf(p)).select(n)
                let u = all.select(n)
                let keep = u.scores.indices.filter { u.scores[$0] >= logf(p) }
                #expect(t.tokens == keep.map { u.tokens[$0] }, "p \(p), budget \(n)")
                #expect(t.scores.allSatisfy { $0 >= logf(p) })
                #expect(d.nodes.count <= full.nodes.count)
            }
        }
        // By hand: root 1's children score −0.2, −0.4, −0.6; child 11's best child adds −0.3.
        // At p = 0.7 (log −0.357) only 11 is kept: one expansion (of 11), whose children all fall below.
        let d = TreeTests.ScriptDrafter()
        let t = try DraftCandidates.grow(root: root, drafter: d, shape: shape, budget: 20, minLogProb: logf(0.7)).select(20)
        #expect(t.tokens == [11] && t.parents == [-1])
        #expect(d.calls.count == 1 && d.calls[0].tokens == [11])
        // Above the best root candidate: an empty tree and no expansion at all.
        let e = TreeTests.ScriptDrafter()
        #expect(try DraftCandidates.grow(root: root, drafter: e, shape: shape, budget: 20, minLogProb: logf(0.9)).select(20).count == 0)
        #expect(e.calls.isEmpty)
    }

    /// The decoder applies the threshold: `RandomDrafter`'s best candidate has probability
    /// 0.55–0.61 and every other node below 0.37, so at p-min 0.5 each step verifies exactly one
    /// node and at 0.65 none, where the 2×3 tree without it verifies 6. Fails if the threshold is
    /// ignored; the tokens are plain decoding's either way.
    @Test func decoderVerifiesOnlyNodesAboveTheThreshold() throws {
        let model = TinyTarget.model
        let s = shape(2, 3, 6)
        for (i, p) in TinyTarget.prompts().prefix(4).enumerated() {
            let prompt = LMInput(tokens: p.input.tokens)
            let ctx = prompt.count + 24 + 64
            let plain = try Generation.plain(model: model, prompt: prompt, contextSize: ctx, params: SamplingParameters(), maxTokens: 24, eog: [])
            func run(_ pMin: PMinBandit?) throws -> SpeculativeStats {
                let d = RandomDrafter(seed: UInt64(i), vocab: TinyTarget.vocab, width: TinyTarget.width)
                let r = try Generation.speculative(model: model, drafter: d, prompt: prompt, contextSize: ctx, params: SamplingParameters(),
                                                   shape: s, maxTokens: 24, eog: [], pMin: pMin)
                #expect(r.tokens == plain.tokens, "prompt \(i)")
                return r.speculative!
            }
            let off = try run(nil)
            #expect(off.treeNodes == 6 * off.steps)
            let half = PMinBandit(thresholds: [0.5])
            let one = try run(half)
            #expect(one.treeNodes == one.steps, "one node per step at p-min 0.5: \(one.treeNodes) nodes, \(one.steps) steps")
            #expect(half.arms[0].steps == one.steps, "every drafting step rewarded")
            let none = try run(PMinBandit(thresholds: [0.65]))
            #expect(none.treeNodes == 0 && none.steps == 24 - 1)
        }
    }

    /// Greedy identity on the tiny target with its one-layer early exit and the adaptive
    /// threshold (the bandit learning across prompts, as eval runs it), in both precisions; the
    /// bandit plays once per drafting step.
    @Test(arguments: ["q8", "f32"]) func adaptiveEarlyExitEqualsPlainOnTheTinyTarget(precision: String) throws {
        let model = precision == "q8" ? TinyTarget.model : TinyTarget.f32Model
        let exit = try LlamaModel(earlyExitOf: model, layers: 1)
        let drafter = LlamaDrafter(model: exit, contextSize: 256, prefillBatchInvariant: Generation.prefillBatchInvariant)
        let bandit = PMinBandit()
        var steps = 0
        for (i, p) in TinyTarget.prompts().enumerated() {
            let prompt = p.input.sequence(for: model).map { LMInput(tokens: $0.tokens, sequence: $0) } ?? LMInput(tokens: p.input.tokens)
            let ctx = prompt.count + 24 + 64
            let plain = try Generation.plain(model: model, prompt: prompt, contextSize: ctx, params: SamplingParameters(), maxTokens: 24, eog: [])
            let r = try Generation.speculative(model: model, drafter: drafter, prompt: prompt, contextSize: ctx, params: SamplingParameters(),
                                               shape: shape(2, 3, 6), maxTokens: 24, eog: [], pMin: bandit)
            #expect(r.tokens == plain.tokens, "\(precision) prompt \(i) \(p.name)")
            steps += r.speculative!.steps
        }
        #expect(bandit.arms.map(\.steps).reduce(0, +) == steps)
        #expect(bandit.arms.allSatisfy { $0.steps >= 2 })
    }
}
