import Draft
import Foundation
import Llama
import Sampling
import Testing
import Verify

/// At temperature > 0 speculative decoding must draw from exactly the target's distribution.
/// Chi-square of the first two tokens after a fixed prompt: the first comes from the prefill's
/// logits, the second from verifying a draft tree whose children are the target's top tokens in
/// the worst order (least likely first, plus a token the target never picks), so the residual
/// renormalisation after each rejection decides the outcome. The expected probabilities are
/// computed exactly from the target.
@Suite(.serialized) struct SamplingDistributionTests {
    static let prompt = TestPrompt.raw("My favourite food is")

    static var params: SamplingParameters {
        var p = SamplingParameters()
        p.temperature = 1.5; p.topK = 3; p.topP = 1; p.minP = 0
        return p
    }

    /// The prompt's prefill, the exact pair probabilities and the draft script (second tokens,
    /// worst first, per first token).
    struct Setup {
        var prefill: ForwardOutput
        var pairs: [[Int32]: Double]
        var script: [Int32: [Int32]]
    }

    static let setup: Setup = makeSetup(Target.model)
    static let f32Setup: Setup = makeSetup(Target.f32Model)

    static func makeSetup(_ model: LlamaModel) -> Setup {
        let p = prompt
        let session = model.makeSession(contextSize: p.tokens.count + 16)
        let prefill = try! p.prefill(session)
        let sampler = try! Sampler(params)
        let first = prefill.logits.withUnsafeBufferPointer { sampler.distribution($0, history: p.history) }
        var pairs: [[Int32]: Double] = [:], script: [Int32: [Int32]] = [:]
        for (t1, p1) in zip(first.ids, first.probs) {
            session.truncate(to: p.tokens.count)
            let out = try! session.forward(tokens: [t1])
            let second = out.logits.withUnsafeBufferPointer { sampler.distribution($0, history: p.history + [t1]) }
            let total = second.probs.reduce(0, +)
            for (t2, p2) in zip(second.ids, second.probs) { pairs[[t1, t2]] = Double(p1) / Double(first.probs.reduce(0, +)) * Double(p2) / Double(total) }
            // Worst first, then a token outside the support, then the rest.
            let never = (0..<Int32(Target.vocab)).first { !second.ids.contains($0) }!
            script[t1] = [second.ids.last!, never] + second.ids.dropLast().reversed()
        }
        return Setup(prefill: prefill, pairs: pairs, script: script)
    }

    /// Proposes the scripted children of the root (depth-1 tree), whatever the features.
    final class ScriptedDrafter: Drafter {
        let script: [Int32: [Int32]]
        var acceptedPositions = 0
        init(_ s: [Int32: [Int32]]) { script = s }
        func accept(features: [Float], nextTokens: [Int32], images: [DraftImageSpan], topK: Int) throws -> [DraftCandidate] {
            acceptedPositions += nextTokens.count
            return (script[nextTokens.last!] ?? []).enumerated().map { DraftCandidate(token: $0.element, logProb: -Float($0.offset) - 0.1) }
        }
        func expand(tokens: [Int32], parents: [Int], topK: Int) throws -> [[DraftCandidate]] { tokens.map { _ in [] } }
        func reset() { acceptedPositions = 0 }
    }

    /// Counts of (first, second) token pairs over `samples` speculative runs. `tokens`: the tree's
    /// node budget (1: the root's single child, drawn from the script's candidates).
    static func sample(_ samples: Int, rule: AcceptanceRule, seed: UInt64, model: LlamaModel = Target.model,
                       tokens: Int = 4) throws -> [[Int32]: Int] {
        let p = prompt, s = model === Target.f32Model ? f32Setup : setup
        let session = model.makeSession(contextSize: p.tokens.count + 16)
        _ = try p.prefill(session)
        let drafter = ScriptedDrafter(s.script)
        var counts: [[Int32]: Int] = [:]
        for i in 0..<samples {
            session.truncate(to: p.tokens.count)
            var params = Self.params
            params.seed = seed &+ UInt64(i) &* 0x9E37_79B9
            let dec = try SpeculativeDecoder(session: session, drafter: drafter, sampler: try Sampler(params),
                                             shape: try TreeShape(topK: 4, depth: 1, tokens: tokens), prefill: s.prefill,
                                             prompt: p.tokens, images: [], history: p.history)
            dec.rule = rule
            let t1 = dec.firstToken
            let t2 = try dec.step()[0]
            counts[[t1, t2], default: 0] += 1
        }
        return counts
    }

    /// `sample` scored against the exact pair probabilities (q8).
    static func sampledChiSquare(_ n: Int, rule: AcceptanceRule, seed: UInt64, tokens: Int) throws -> (chi2: Double, critical: Double, df: Int) {
        chiSquare(try sample(n, rule: rule, seed: seed, tokens: tokens), setup.pairs, samples: n)
    }

    /// Chi-square statistic and its p = 0.001 critical value (categories expected < 5 pooled).
    static func chiSquare(_ counts: [[Int32]: Int], _ probs: [[Int32]: Double], samples: Int) -> (chi2: Double, critical: Double, df: Int) {
        var cells: [(observed: Double, expected: Double)] = []
        var pooled = (observed: 0.0, expected: 0.0)
        for (k, p) in probs {
            let e = p * Double(samples), o = Double(counts[k] ?? 0)
            if e >= 5 { cells.append((o, e)) } else { pooled.observed += o; pooled.expected += e }
        }
        // Pairs the target gives no probability (must never appear) go in the pool too.
        pooled.observed += Double(counts.filter { probs[$0.key] == nil }.values.reduce(0, +))
        if pooled.expected > 0 || pooled.observed > 0 { cells.append(pooled) }
        let chi2 = cells.reduce(0.0) { $0 + ($1.observed - $1.expected) * ($1.observed - $1.expected) / max($1.expected, 1e-9) }
        let df = max(cells.count - 1, 1)
        // Wilson–Hilferty: the chi-square quantile at z = 3.09 (p = 0.001).
        let k = Double(df), z = 3.09
        let critical = k * pow(1 - 2 / (9 * k) + z * (2 / (9 * k)).squareRoot(), 3)
        return (chi2, critical, df)
    }

    @Test func setupHasSeveralLikelyPairs() {
        let big = Self.setup.pairs.values.filter { $0 > 0.02 }.count
        #expect(big >= 4, "the prompt's first two tokens should spread over several pairs: \(Self.setup.pairs)")
    }

    @Test func speculativeSamplingHasTheTargetsDistribution() throws {
        let n = 1500
        let counts = try Self.sample(n, rule: .exact, seed: 1234)
        let r = Self.chiSquare(counts, Self.setup.pairs, samples: n)
        #expect(r.df >= 3)
        #expect(r.chi2 < r.critical, "chi2 \(r.chi2) ≥ \(r.critical) (df \(r.df)): \(counts) vs \(Self.setup.pairs)")
    }

    /// The exact (f32) precision: the same test against its own exact probabilities.
    @Test func speculativeSamplingHasTheTargetsDistributionInF32() throws {
        let n = 1000
        let counts = try Self.sample(n, rule: .exact, seed: 4321, model: Target.f32Model)
        let r = Self.chiSquare(counts, Self.f32Setup.pairs, samples: n)
        #expect(r.df >= 3)
        #expect(r.chi2 < r.critical, "f32: chi2 \(r.chi2) ≥ \(r.critical) (df \(r.df))")
    }

    /// Context-matched nodes are accepted by the same exact rule: a drafter that proposes
    /// nothing, with the script's tokens as the text so far, so that context matching proposes the
    /// worst-first chain and the second token is decided by verifying it.
    @Test func contextMatchedTokensKeepTheTargetsDistribution() throws {
        let n = 1000, p = Self.prompt, s = Self.setup
        let session = Target.model.makeSession(contextSize: p.tokens.count + 16)
        _ = try p.prefill(session)
        var counts: [[Int32]: Int] = [:]
        var proposed = 0
        for i in 0..<n {
            session.truncate(to: p.tokens.count)
            var params = Self.params
            params.seed = 777 &+ UInt64(i) &* 0x9E37_79B9
            // The history ends with the first token after a planted earlier occurrence of the
            // last prompt token and the first token, followed by the least likely second token.
            let dec0 = try SpeculativeDecoder(session: session, drafter: ContextMatchDrafter(inner: nil, match: try ContextMatch(maxTokens: 1)),
                                              sampler: try Sampler(params), shape: try TreeShape(topK: 1, depth: 1, tokens: 1),
                                              prefill: s.prefill, prompt: p.tokens, images: [],
                                              history: p.history)
            let t1 = dec0.firstToken
            session.truncate(to: p.tokens.count)
            let planted = [p.history.last!, t1, s.script[t1]![0]]
            let dec = try SpeculativeDecoder(session: session, drafter: ContextMatchDrafter(inner: nil, match: try ContextMatch(maxTokens: 1)),
                                             sampler: try Sampler(params), shape: try TreeShape(topK: 1, depth: 1, tokens: 1),
                                             prefill: s.prefill, prompt: p.tokens, images: [],
                                             history: planted + p.history)
            #expect(dec.firstToken == t1)
            let t2 = try dec.step()[0]
            proposed += dec.stats.contextNodes
            counts[[t1, t2], default: 0] += 1
        }
        #expect(proposed == n, "every step should have verified the planted chain")
        let r = Self.chiSquare(counts, s.pairs, samples: n)
        #expect(r.df >= 3)
        #expect(r.chi2 < r.critical, "chi2 \(r.chi2) ≥ \(r.critical) (df \(r.df)): \(counts) vs \(s.pairs)")
    }

    /// A one-node tree while sampling: the child is drawn from the script's candidates (the least
    /// likely target token most often, the never-chosen one next: q is far from p) and verified
    /// by the rule for drawn tokens, min(1, p/q) and the residual max(0, p − q).
    @Test func drawnSingleChildKeepsTheTargetsDistribution() throws {
        let r = try Self.sampledChiSquare(1500, rule: .exact, seed: 2468, tokens: 1)
        #expect(r.df >= 3)
        #expect(r.chi2 < r.critical, "chi2 \(r.chi2) ≥ \(r.critical) (df \(r.df))")
    }

    /// ... and must notice a drawn child whose rejection leaves the target's distribution as it
    /// was (the residual max(0, p − q) skipped).
    @Test func drawnChildWithoutResidualFailsTheTest() throws {
        let r = try Self.sampledChiSquare(1000, rule: .keepDistributionAfterDrawnRejection, seed: 1357, tokens: 1)
        #expect(r.chi2 > r.critical, "the wrong rule for drawn children went unnoticed: chi2 \(r.chi2) < \(r.critical)")
    }

    /// The same test must notice a wrong rule (always accepting the first child).
    @Test func brokenAcceptanceRuleFailsTheTest() throws {
        let n = 500
        let counts = try Self.sample(n, rule: .acceptFirstChild, seed: 99)
        let r = Self.chiSquare(counts, Self.setup.pairs, samples: n)
        #expect(r.chi2 > r.critical, "the broken rule went unnoticed: chi2 \(r.chi2) < \(r.critical)")
    }
}
