import Draft
import Kernels
import Llama
import Sampling

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Counters of a speculative run. τ is ViSpec's mean accepted length: accepted draft tokens per
/// target forward, the target's own token not counted.
public struct SpeculativeStats: Sendable, Equatable {
    /// Verification forwards (one per step).
    public var steps = 0
    /// Tokens emitted by the steps (accepted draft tokens plus one target token each).
    public var emitted = 0
    /// Accepted tokens the draft proposed (a node that context matching proposed too counts here).
    public var acceptedDraftTokens = 0
    /// Tree nodes verified, root excluded; of them, those the draft proposed.
    public var treeNodes = 0
    public var draftNodes = 0
    /// Nodes that only context matching proposed (`ContextMatch`), and those accepted: never
    /// counted as the draft's acceptance (τ, the rates by depth).
    public var contextNodes = 0
    public var acceptedContextTokens = 0
    /// Context-matched tokens found but not verified: with a measured verify cost, each step
    /// verifies only the prefix of the chain expected to pay (`ContextMatchOdds`).
    public var contextWithheld = 0
    /// Per depth d (index d−1): steps whose walk tried a child at depth d, and those that accepted one.
    public var triedByDepth: [Int] = []
    public var acceptedByDepth: [Int] = []
    /// Drafting (accept + expand), the drafter's read of the prompt included.
    public var draftSeconds: Double = 0
    /// The drafter's first `accept` (the whole prompt).
    public var draftPrefillSeconds: Double = 0
    /// Target forwards and the acceptance walk.
    public var verifySeconds: Double = 0
    /// Steps decoded without a draft because drafting did not pay (`FallbackPolicy`); not
    /// counted in `steps`, τ or the acceptance rates.
    public var plainSteps = 0
    /// Times the decoder switched from drafting to plain steps.
    public var fallbacks = 0

    public init() {}

    public var tau: Double { steps > 0 ? Double(acceptedDraftTokens) / Double(steps) : 0 }
    public var tokensPerStep: Double { steps > 0 ? Double(emitted) / Double(steps) : 0 }
    /// Accepted / tried, per depth.
    public var acceptanceByDepth: [Double] {
        let depths = (triedByDepth.lastIndex { $0 > 0 } ?? -1) + 1   // depths only context matches reached: left out
        return zip(acceptedByDepth, triedByDepth).prefix(depths).map { $1 > 0 ? Double($0) / Double($1) : 0 }
    }

    /// Context-matched tokens accepted per target forward (plain steps included: with a draft,
    /// they keep context matching while drafting is paused).
    public var contextTokensPerStep: Double {
        steps + plainSteps > 0 ? Double(acceptedContextTokens) / Double(steps + plainSteps) : 0
    }

    mutating func record(_ r: VerifyResult, tree: DraftTree) {
        steps += 1
        emitted += r.emitted.count
        let matched = tree.contextMatched.lazy.filter { $0 }.count
        treeNodes += tree.count
        draftNodes += tree.count - matched
        contextNodes += matched
        if triedByDepth.count < r.triedDepth {
            triedByDepth += Array(repeating: 0, count: r.triedDepth - triedByDepth.count)
            acceptedByDepth += Array(repeating: 0, count: r.triedDepth - acceptedByDepth.count)
        }
        // A depth the walk tried counts for the draft only where the draft proposed a child
        // of the walk's node there (not only context-matched ones).
        for d in 0..<r.triedDepth {
            let parent = d == 0 ? -1 : r.acceptedNodes[d - 1]
            if tree.parents.indices.contains(where: { tree.parents[$0] == parent && !tree.contextMatched[$0] }) {
                triedByDepth[d] += 1
            }
        }
        for (d, node) in r.acceptedNodes.enumerated() {
            if tree.contextMatched[node] {
                acceptedContextTokens += 1
            } else {
                acceptedDraftTokens += 1
                acceptedByDepth[d] += 1
            }
        }
    }
}


/// When drafting stops paying: the decoder compares the tokens per second of its recent drafting
/// steps with those of plain steps (one token, no draft; with `DRAFT+ngram`, the context-matched
/// tokens alone), each as mean tokens per step over the median step time (`StepTimes`), and,
/// when drafting is slower, decodes `pause` plain steps before trying again
/// (the pause doubles while drafting keeps losing, and resets once it wins). Plain steps verify
/// an empty tree (or the context match), so the output is what plain decoding gives; the drafter
/// catches up on the skipped positions in one batched `accept` when drafting resumes (its cost
/// counts against drafting).
public struct FallbackPolicy: Sendable, Equatable {
    /// Drafting steps per judgement (fewer make the verdict noisy: one window's τ varies a lot).
    public var window = 16
    /// Drafting steps before the first judgement: short, so that a short answer is protected too
    /// (a draft that accepts nothing in them is dropped at once, without measuring plain steps:
    /// each of its steps cost at least a plain step).
    public var firstWindow = 4
    /// Plain steps that measure a plain step's time before the first judgement.
    public var probe = 3
    public var initialPause = 16
    public var maxPause = 256
    /// Drafting must reach this fraction of the plain rate to continue. At break-even: a margin
    /// below 1 lets a draft that loses by less than the margin run on for good, and a draft near
    /// break-even costs little whichever way the noise tips the verdict.
    public var margin = 1.0
    public init() {}
}

/// Recent steps' times and token counts, and the rate they give: mean tokens per step over the
/// median step time. The median, not the total, so that one step slowed by another process (a
/// 3.6 ms step that took 5.5 ms, seen on a shared core) cannot flip the fallback's verdict.
/// The decoder records the target's and the draft's tokens, not context-matched ones: those come
/// in bursts (repeated phrases), to drafting and plain steps alike, so a window's share of them
/// says nothing of the draft; their mean over the whole run goes to both rates (`rate(plus:)`).
public struct StepTimes: Sendable, Equatable {
    public private(set) var seconds: [Double] = []
    public private(set) var tokens: [Int] = []
    /// Steps kept (the oldest go first); nil keeps all.
    public let capacity: Int?

    public init(capacity: Int? = nil) { self.capacity = capacity }

    public var count: Int { seconds.count }
    public var totalTokens: Int { tokens.reduce(0, +) }

    public mutating func add(seconds s: Double, tokens n: Int) {
        seconds.append(s); tokens.append(n)
        if let c = capacity, seconds.count > c { seconds.removeFirst(); tokens.removeFirst() }
    }

    /// Tokens per second with `extra` tokens added to each step's, nil before the first step or
    /// when the median step took no time.
    public func rate(plus extra: Double = 0) -> Double? {
        guard !seconds.isEmpty else { return nil }
        let sorted = seconds.sorted()
        let m = sorted.count
        let median = m % 2 == 1 ? sorted[m / 2] : (sorted[m / 2 - 1] + sorted[m / 2]) / 2
        guard median > 0 else { return nil }
        return (Double(totalTokens) / Double(m) + extra) / median
    }
}

/// Speculative decoding over a target session that holds the prefilled prompt: each `step`
/// drafts an EAGLE-2 tree, verifies it in one target forward and returns the emitted tokens.
public final class SpeculativeDecoder {
    public let drafter: Drafter
    public let verifier: TargetVerifier
    public var shape: TreeShape
    public private(set) var stats = SpeculativeStats()
    /// Context-matched tokens merged into each tree (`--draft …+ngram`); nil: the draft's alone.
    public var contextMatch: ContextMatch?
    /// The target's measured verify cost (`--tree-tokens auto`): each step verifies only the
    /// prefix of the context match expected to pay for its verify slots. Nil: the whole chain.
    public var verifyCost: VerifyCostCurve?
    /// How often context matches have agreed with the target in this generation.
    public private(set) var contextOdds = ContextMatchOdds()
    /// Falls back to plain steps while drafting loses to them (nil: always draft).
    public var fallback: FallbackPolicy?
    /// `--draft-p-min`: each drafting step plays one of its thresholds (tree nodes whose
    /// cumulative draft probability is below it are neither expanded nor verified) and rewards it
    /// with the step's tokens per second; nil: no threshold.
    public var pMin: PMinBandit?
    /// When sampling and the tree is the root's single child: draw that child from the draft's
    /// root candidates (softmax of their log-probabilities at the sampler's temperature) instead
    /// of taking the best, and verify it by the rejection rule for drawn tokens (`Proposal`).
    /// A drawn token is accepted with probability Σ min(q, p) over the vocabulary rather than
    /// p(best), which is higher wherever the draft spreads its mass as the target does.
    public var drawsSingleChild = true
    /// The draws' own generator (the verifier's draws stay as they are).
    private var proposalRNG: SeededGenerator

    private enum Mode { case drafting, probing(left: Int), plain(left: Int) }
    private var mode = Mode.drafting
    /// The current drafting window's steps, and the latest plain steps (the rate drafting must beat).
    private var window = StepTimes()
    private var plainTimes = StepTimes(capacity: 16)
    /// The current pause length.
    private var pause = 0
    /// Whether drafting has been judged once (later windows are `window` steps long).
    private var judged = false

    /// False for context matching alone (`--draft ngram`): no draft model to pause, so no
    /// fallback; the chain's length alone follows the cost.
    private let draftsItself: Bool
    private var rootCandidates: [DraftCandidate] = []
    private var pending: (features: [Float], next: [Int32], images: [DraftImageSpan], isPrompt: Bool)?

    public var session: any TargetSession { verifier.session }

    /// `prefill` is the target's forward over the whole prompt (its hidden rows, the layers of
    /// `drafter.featureLayers` captured, and last logits);
    /// `prompt` the prompt's tokens (−1 at image rows), `images` its image spans, `history` its
    /// text tokens. Chooses the first token from the prefill's logits exactly as plain decoding does.
    public init(session: any TargetSession, drafter: Drafter, sampler: Sampler, shape: TreeShape,
                prefill: ForwardOutput, prompt: [Int32], images: [DraftImageSpan], history: [Int32]) throws {
        guard !prompt.isEmpty, session.length == prompt.count else {
            throw VerifyError.drafter("the session must hold exactly the prefilled prompt")
        }
        var s = sampler
        let vocab = session.target.vocabSize
        let last = prefill.logits.count - vocab
        let first = prefill.logits[last...].withUnsafeBufferPointer { s.sample($0, history: history) }
        verifier = TargetVerifier(session: session, sampler: s, history: history + [first], root: first)
        proposalRNG = SeededGenerator(seed: sampler.parameters.seed ^ 0x5D5E_C0DE_D7A4_F001)
        self.drafter = drafter
        self.shape = shape
        contextMatch = (drafter as? ContextMatchDrafter)?.match
        draftsItself = (drafter as? ContextMatchDrafter).map { $0.inner != nil } ?? true
        drafter.reset()
        if let d = drafter as? SequenceStartDrafter {
            let width = session.target.width
            if let span = images.first(where: { $0.start == 0 }) {
                d.begin(firstInput: Array(span.embeddings[0 ..< width]))
            } else {
                var row = [Float](repeating: 0, count: width)
                guard prompt[0] >= 0, Int(prompt[0]) < vocab else { throw VerifyError.drafter("position 0 is neither a token nor an image row") }
                row.withUnsafeMutableBufferPointer { session.target.embed(token: prompt[0], into: $0.baseAddress!) }
                d.begin(firstInput: row)
            }
        }
        verifier.featureLayers = drafter.featureLayers
        guard let features = prefill.features(rows: Array(0..<prompt.count), layers: drafter.featureLayers,
                                              width: session.target.width) else {
            throw VerifyError.drafter("the prefill did not capture target layers \(drafter.featureLayers), which the drafter reads")
        }
        pending = (features, Array(prompt.dropFirst()) + [first], images, true)
    }

    /// The first token (chosen from the prefill's logits).
    public var firstToken: Int32 { verifier.history.last! }

    /// The deliberately wrong rule exists for the statistical test only.
    public var rule: AcceptanceRule {
        get { verifier.rule }
        set { verifier.rule = newValue }
    }

    /// One draft-and-verify round: the accepted draft tokens and the target's own next token.
    public func step() throws -> [Int32] {
        if let f = fallback, draftsItself {
            switch mode {
            case .drafting: break
            case .probing(let left), .plain(let left):
                let emitted = try plainStep()
                if left > 1 {
                    if case .probing = mode { mode = .probing(left: left - 1) } else { mode = .plain(left: left - 1) }
                } else if case .probing = mode, drafting(lost: f) {
                    enterPlain(f)
                } else {
                    mode = .drafting
                    window = StepTimes()
                }
                return emitted
            }
        }
        let t0 = monotonicSeconds()
        var prefillSeconds = 0.0
        if let p = pending {
            rootCandidates = try drafter.accept(features: p.features, nextTokens: p.next, images: p.images, topK: shape.topK)
            pending = nil
            if p.isPrompt {
                prefillSeconds = monotonicSeconds() - t0
                stats.draftPrefillSeconds += prefillSeconds
            }
        }
        let room = session.contextSize - session.length - 1
        guard room >= 0 else { throw VerifyError.contextFull(session.contextSize) }
        var tree = DraftTree()
        var chain: [Int32] = []
        var proposals: [Int: Proposal] = [:]
        var arm: Int?
        if room > 0 {
            var minLogProb = -Float.infinity
            if let b = pMin {
                let a = b.choose()
                arm = a
                minLogProb = b.minLogProb(a)
            }
            let cap = min(shape.tokens, room)
            tree = try DraftCandidates.grow(root: rootCandidates, drafter: drafter, shape: shape, budget: cap, minLogProb: minLogProb)
                .select(cap)
            if drawsSingleChild, tree.count == 1, let q = rootProposal() {
                tree.tokens[0] = q.draw(&proposalRNG)
                proposals = [0: q]
            }
            if let cm = contextMatch {
                chain = cm.propose(history: verifier.history, limit: room - tree.count)
                tree.merge(chain: worthVerifying(chain, tree: tree, baseTokens: 1 + stats.tau,
                                                 fixedSeconds: monotonicSeconds() - t0 - prefillSeconds))
            }
        }
        let t1 = monotonicSeconds()
        let r = try verifier.verify(tree: tree.tokens, parents: tree.parents, proposals: proposals)
        let t2 = monotonicSeconds()
        stats.draftSeconds += t1 - t0
        stats.verifySeconds += t2 - t1
        let contextBefore = stats.acceptedContextTokens
        stats.record(r, tree: tree)
        if !chain.isEmpty { contextOdds.observe(chain: chain, emitted: r.emitted) }
        if let a = arm {
            // The whole step, as the user waits for it; the drafter's one-off read of the prompt aside.
            let seconds = t2 - t0 - prefillSeconds
            if seconds > 0 { pMin?.update(arm: a, reward: Double(r.emitted.count) / seconds) }
        }
        pending = (r.features, r.emitted, [], false)
        if let f = fallback, draftsItself {
            // The drafter's read of the prompt is a one-off, not a cost of drafting on.
            window.add(seconds: t2 - t0 - prefillSeconds, tokens: r.emitted.count - (stats.acceptedContextTokens - contextBefore))
            // Losing is judged early, winning late: from `firstWindow` steps on, every step may
            // end a window that is behind plain steps (a draft that stopped paying costs a few
            // steps, not a whole window), while drafting goes on unquestioned only after a full
            // window ahead of them. A draft near break-even flaps, which costs little either way.
            let length = judged ? f.window : f.firstWindow
            if window.count >= min(f.firstWindow, length) {
                if window.totalTokens == window.count {
                    judged = true
                    enterPlain(f)   // nothing accepted: drafting cannot have paid
                } else if plainTimes.count == 0 {
                    judged = true
                    mode = .probing(left: f.probe)
                } else if drafting(lost: f) {
                    judged = true
                    enterPlain(f)
                } else if window.count >= length {
                    judged = true
                    pause = 0
                    window = StepTimes()
                }
            }
        }
        return r.emitted
    }

    /// The distribution to draw the root's single child from when sampling: the root candidates
    /// (distinct tokens) with probabilities ∝ exp(logProb / T); nil when greedy or none is finite.
    private func rootProposal() -> Proposal? {
        let p = verifier.sampler.parameters
        guard !p.isGreedy, p.temperature > 0 else { return nil }
        var seen = Set<Int32>()
        let cands = rootCandidates.filter { $0.logProb.isFinite && seen.insert($0.token).inserted }
        guard let top = cands.map(\.logProb).max() else { return nil }
        let w = cands.map { exp(Double($0.logProb - top) / Double(p.temperature)) }
        let total = w.reduce(0, +)
        return Proposal(tokens: cands.map(\.token), probs: w.map { $0 / total })
    }

    /// Whether the drafting window emits fewer tokens per second than the latest plain steps.
    private func drafting(lost f: FallbackPolicy) -> Bool {
        let context = stats.contextTokensPerStep
        guard let plain = plainTimes.rate(plus: context), let drafting = window.rate(plus: context) else { return false }
        return drafting < f.margin * plain
    }

    private func enterPlain(_ f: FallbackPolicy) {
        pause = pause == 0 ? f.initialPause : min(2 * pause, f.maxPause)
        mode = .plain(left: pause)
        stats.fallbacks += 1
    }

    /// The prefix of a context-matched `chain` to merge into `tree`: all of it without a measured
    /// verify cost, else the length expected to give the most tokens per second (the rest is
    /// counted as withheld).
    private func worthVerifying(_ chain: [Int32], tree: DraftTree, baseTokens: Double, fixedSeconds: Double) -> [Int32] {
        guard let curve = verifyCost, !chain.isEmpty else { return chain }
        let n = contextOdds.bestLength(added: tree.nodesAdded(chain: chain), treeNodes: tree.count, baseTokens: baseTokens,
                                       fixedSeconds: fixedSeconds, curve: curve)
        stats.contextWithheld += chain.count - n
        return Array(chain.prefix(n))
    }

    /// One step without drafting: the target alone (an empty tree); the drafter's inputs wait in
    /// `pending` until drafting resumes.
    private func plainStep() throws -> [Int32] {
        let t0 = monotonicSeconds()
        // With a draft and context matching, a paused draft leaves the free context-matched
        // tokens in place: the steps that drafting has to beat are those.
        var tree = DraftTree()
        var chain: [Int32] = []
        if let cm = contextMatch {
            let room = session.contextSize - session.length - 1
            if room > 0 {
                chain = cm.propose(history: verifier.history, limit: room)
                tree.merge(chain: worthVerifying(chain, tree: tree, baseTokens: 1, fixedSeconds: 0))
            }
        }
        let r = try verifier.verify(tree: tree.tokens, parents: tree.parents)
        if !chain.isEmpty { contextOdds.observe(chain: chain, emitted: r.emitted) }
        let dt = monotonicSeconds() - t0
        stats.verifySeconds += dt
        stats.plainSteps += 1
        stats.contextNodes += tree.count
        stats.acceptedContextTokens += r.acceptedNodes.count
        plainTimes.add(seconds: dt, tokens: r.emitted.count - r.acceptedNodes.count)   // context-matched tokens aside
        if var p = pending {
            p.features += r.features
            p.next += r.emitted
            pending = p
        } else {
            pending = (r.features, r.emitted, [], false)
        }
        return r.emitted
    }
}

