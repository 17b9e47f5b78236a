import Draft
import Generation
import Llama
import Sampling
import Testing
import Verify
import Vision

/// The model-free tier of the lossless tests (`scripts/test.sh --fast`): the shipped generation
/// loop (`Generation.plain` / `.speculative`) on `TinyTarget`, a random 2-layer model built in
/// memory, so greedy identity is checked in seconds without the model file. The drafts cover
/// every kind of drafter: a random EAGLE draft, a random ViSpec draft over image rows, the
/// target itself (always right: long accepted chains), its one-layer early exit, context
/// matching alone and merged, and a random proposer; in both precisions.
@Suite(.serialized) struct TinyTargetTests {
    static let n = 24

    func input(_ parts: LMInputParts, _ model: LlamaModel) -> LMInput {
        if let s = parts.sequence(for: model) { return LMInput(tokens: s.tokens, sequence: s) }
        return LMInput(tokens: parts.tokens)
    }

    func drafters(_ model: LlamaModel, seed: UInt64) throws -> [(String, Drafter)] {
        let ctx = 256
        let eagle = try EagleDraft(weights: DraftWeights.random(for: model, seed: seed), target: model, contextSize: ctx)
        let vispec = try EagleDraft(weights: DraftWeights.random(for: model, numQ: 3, seed: seed + 1), target: model, contextSize: ctx)
        let exit = try LlamaModel(earlyExitOf: model, layers: 1)
        return [
            ("eagle2 random", eagle),
            ("vispec random", vispec),
            ("self (perfect)", LlamaDrafter(model: model, contextSize: ctx, prefillBatchInvariant: Generation.prefillBatchInvariant)),
            ("early exit 1/2", LlamaDrafter(model: exit, contextSize: ctx, prefillBatchInvariant: Generation.prefillBatchInvariant)),
            ("ngram", ContextMatchDrafter(inner: nil, match: try ContextMatch())),
            ("random + ngram", ContextMatchDrafter(inner: RandomDrafter(seed: seed, vocab: TinyTarget.vocab, width: TinyTarget.width), match: try ContextMatch())),
        ]
    }

    @Test(arguments: ["q8", "f32"]) func greedySpeculativeEqualsPlainOnTheTinyTarget(precision: String) throws {
        let model = precision == "q8" ? TinyTarget.model : TinyTarget.f32Model
        let shapes = [shape(1, 4, 4), shape(2, 3, 6), shape(4, 4, 12)]
        var accepted = 0, contextAccepted = 0, images = 0, withheld = 0, contextAcceptedSized = 0
        for (i, p) in TinyTarget.prompts().enumerated() {
            let prompt = input(p.input, model)
            if prompt.sequence != nil { images += 1 }
            let ctx = prompt.count + Self.n + 64
            let plain = try Generation.plain(model: model, prompt: prompt, contextSize: ctx, params: SamplingParameters(),
                                             maxTokens: Self.n, eog: [])
            #expect(plain.tokens.count == Self.n)
            for (name, drafter) in try drafters(model, seed: UInt64(i)) {
                let s = shapes[(i + name.count) % shapes.count]
                let r = try Generation.speculative(model: model, drafter: drafter, prompt: prompt, contextSize: ctx,
                                                   params: SamplingParameters(), shape: s, maxTokens: Self.n, eog: [])
                #expect(r.tokens == plain.tokens, "\(precision) \(p.name) \(name) \(s)")
                accepted += r.speculative?.acceptedDraftTokens ?? 0
                contextAccepted += r.speculative?.acceptedContextTokens ?? 0
                // With a measured verify cost (`--tree-tokens auto`, the fallback on), context
                // matches are cut to the length that pays: other trees, the same tokens.
                if name.hasSuffix("ngram") {
                    let a = try Generation.speculative(model: model, drafter: drafter, prompt: prompt, contextSize: ctx,
                                                       params: SamplingParameters(), shape: s, maxTokens: Self.n, eog: [],
                                                       auto: AutoTree(curve: ContextMatchTests.steepCurve, nodes: nil),
                                                       fallback: FallbackPolicy())
                    #expect(a.tokens == plain.tokens, "\(precision) \(p.name) \(name) \(s) cost-sized chains")
                    withheld += a.speculative?.contextWithheld ?? 0
                    contextAcceptedSized += a.speculative?.acceptedContextTokens ?? 0
                }
            }
        }
        // The test can fail: drafts were accepted (the perfect self-draft at least), so the
        // verifier's multi-token path ran, and context matches were accepted on the repeated prompts.
        #expect(images >= 6)
        #expect(accepted > TinyTarget.prompts().count * Self.n / 2, "accepted draft tokens: \(accepted)")
        #expect(contextAccepted > 0)
        // Both sides of the cost rule ran: chains were cut, and verified context tokens accepted.
        #expect(withheld > 0 && contextAcceptedSized > 0, "withheld \(withheld), accepted \(contextAcceptedSized)")
    }

    /// The tiny target is a real model: its two precisions differ in bits but agree in shape, and
    /// decoding is deterministic.
    @Test func theTinyTargetIsDeterministic() throws {
        let p = TinyTarget.prompts()[0].input
        let a = try Generation.plain(model: TinyTarget.model, prompt: input(p, TinyTarget.model), contextSize: 128,
                                     params: SamplingParameters(), maxTokens: 16, eog: [])
        let b = try Generation.plain(model: TinyTarget.model, prompt: input(p, TinyTarget.model), contextSize: 128,
                                     params: SamplingParameters(), maxTokens: 16, eog: [])
        #expect(a.tokens == b.tokens)
        #expect(Set(a.tokens).count > 1, "a random model that repeats one token would test little")
    }
}
