import Draft

/// The shape of the EAGLE-2 dynamic draft tree: `topK` children per expanded node and `topK`
/// expanded nodes per level, `depth` levels, then the best `tokens` nodes overall (the root, the
/// last emitted token, is not counted).
public struct TreeShape: Sendable, Hashable, CustomStringConvertible {
    public var topK: Int
    public var depth: Int
    public var tokens: Int

    public init(topK: Int, depth: Int, tokens: Int) throws {
        guard topK >= 1 else { throw VerifyError.badShape("tree top-k must be ≥ 1, got \(topK)") }
        guard depth >= 1 else { throw VerifyError.badShape("tree depth must be ≥ 1, got \(depth)") }
        guard tokens >= 1 else { throw VerifyError.badShape("tree tokens must be ≥ 1, got \(tokens)") }
        self.topK = topK; self.depth = depth; self.tokens = tokens
    }

    /// Every candidate the expansion produces: topK at level 1, topK² at each later level.
    public var candidateCount: Int { topK + (depth - 1) * topK * topK }

    public var description: String { "top-k \(topK), depth \(depth), \(tokens) nodes" }
}

public enum VerifyError: Error, CustomStringConvertible, Equatable {
    case badShape(String)
    case drafter(String)
    case contextFull(Int)

    public var description: String {
        switch self {
        case .badShape(let s): return s
        case .drafter(let s): return "draft: \(s)"
        case .contextFull(let n): return "the context (\(n) positions) is full"
        }
    }
}

/// A draft tree in verification order: parents before children, siblings best first.
public struct DraftTree: Sendable, Equatable {
    public var tokens: [Int32] = []
    /// Index of each node's parent in this tree; −1 = the root.
    public var parents: [Int] = []
    /// 1 for the root's children.
    public var depths: [Int] = []
    /// Cumulative draft log-probability of the path root → node.
    public var scores: [Float] = []
    /// Nodes added by context matching (`merge(chain:)`), not proposed by the draft.
    public var contextMatched: [Bool] = []

    public init() {}
    public var count: Int { tokens.count }
}

/// All candidates grown from one root by EAGLE-2's expansion, before the final selection.
public struct DraftCandidates: Sendable {
    struct Node { var token: Int32; var score: Float; var parent: Int; var depth: Int }
    var nodes: [Node] = []

    public var count: Int { nodes.count }

    /// Grows candidates from the root's top-k (from `Drafter.accept`): at each level the `topK`
    /// best nodes by cumulative log-probability are expanded (one `Drafter.expand` call per
    /// level), each giving `topK` children.
    ///
    /// `budget` is the most nodes `select` will take. Selection takes a prefix of the best-first
    /// order (a child never ranks above its parent), so a node at depth L + 1 that is selected
    /// has its L ancestors, its better siblings and its parent's better cousins ranked above it:
    /// with n nodes selected, at most n − L nodes of level L can have a selected child, each with
    /// at most n − L selected children. Growing no more than that gives the same `select(n)`
    /// for every n ≤ budget, and spares the draft's work on nodes no tree could keep (with a
    /// budget of 2 and top-k 8, one expanded node instead of eight).
    ///
    /// `minLogProb` (`--draft-p-min`, as a log-probability) drops every candidate whose
    /// cumulative log-probability is below it where it is proposed: its descendants could only
    /// score lower, so growth stops at the first level with no node left, and `select(n)` gives
    /// the tree without the threshold minus its nodes below it (those are its best-first tail).
    public static func grow(root: [DraftCandidate], drafter: Drafter, shape: TreeShape, budget: Int,
                            minLogProb: Float = -.infinity) throws -> DraftCandidates {
        var c = DraftCandidates()
        let k = shape.topK
        var level: [Int] = []
        for cand in distinct(root).prefix(min(k, budget)) where finite(cand.logProb) >= minLogProb {
            level.append(c.nodes.count)
            c.nodes.append(Node(token: cand.token, score: finite(cand.logProb), parent: -1, depth: 1))
        }
        // Drafter's node index of each expanded candidate.
        var drafterIndex: [Int: Int] = [:]
        var depth = 1
        while depth < min(shape.depth, budget), !level.isEmpty {
            let useful = min(k, budget - depth)
            let expand = level.sorted { c.better($0, $1) }.prefix(useful)
            var tokens: [Int32] = [], parents: [Int] = []
            for e in expand {
                drafterIndex[e] = drafterIndex.count
                tokens.append(c.nodes[e].token)
                let p = c.nodes[e].parent
                parents.append(p < 0 ? -1 : drafterIndex[p]!)
            }
            let children = try drafter.expand(tokens: tokens, parents: parents, topK: useful)
            guard children.count == tokens.count else {
                throw VerifyError.drafter("expand returned \(children.count) candidate lists for \(tokens.count) nodes")
            }
            depth += 1
            level = []
            for (e, list) in zip(expand, children) {
                for cand in distinct(list).prefix(useful) {
                    let score = c.nodes[e].score + finite(cand.logProb)
                    if score < minLogProb { continue }
                    level.append(c.nodes.count)
                    c.nodes.append(Node(token: cand.token, score: score, parent: e, depth: depth))
                }
            }
        }
        return c
    }

    /// The best `n` candidates by cumulative log-probability, as a connected tree. A child never
    /// scores above its parent (log-probabilities are ≤ 0), and ties go to the shallower node, so
    /// taking nodes best-first always finds the parent already taken.
    public func select(_ n: Int) -> DraftTree {
        let order = nodes.indices.sorted { better($0, $1) }
        var taken = Set<Int>()
        for i in order where taken.count < n {
            let p = nodes[i].parent
            if p < 0 || taken.contains(p) { taken.insert(i) }
        }
        // Creation order puts parents before children and siblings best first.
        let kept = taken.sorted()
        var newIndex: [Int: Int] = [:]
        var t = DraftTree()
        for i in kept {
            newIndex[i] = t.count
            let node = nodes[i]
            t.tokens.append(node.token)
            t.parents.append(node.parent < 0 ? -1 : newIndex[node.parent]!)
            t.depths.append(node.depth)
            t.scores.append(node.score)
            t.contextMatched.append(false)
        }
        return t
    }

    /// Higher score first; ties: shallower, then created earlier.
    func better(_ a: Int, _ b: Int) -> Bool {
        let x = nodes[a], y = nodes[b]
        if x.score != y.score { return x.score > y.score }
        if x.depth != y.depth { return x.depth < y.depth }
        return a < b
    }

    private static func finite(_ x: Float) -> Float { x.isNaN ? -.infinity : min(x, 0) }

    /// The candidates with repeated tokens dropped (a sibling twice would only waste a node).
    private static func distinct(_ list: [DraftCandidate]) -> [DraftCandidate] {
        var seen = Set<Int32>()
        return list.filter { seen.insert($0.token).inserted }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension DraftTree {
    /// Merges `chain` (a path from the root) into the tree: it follows existing nodes while their
    /// tokens agree and appends the rest as new nodes, marked in `contextMatched`, after every
    /// existing node (parents stay before children; the draft's own siblings are tried first).
    public mutating func merge(chain: [Int32]) {
        var node = -1
        for token in chain {
            if let existing = child(of: node, token: token) {
                node = existing
                continue
            }
            tokens.append(token)
            parents.append(node)
            depths.append(node < 0 ? 1 : depths[node] + 1)
            scores.append(node < 0 ? 0 : scores[node])
            contextMatched.append(true)
            node = count - 1
        }
    }
}

extension DraftTree {
    /// The child of `node` (−1: the root) with `token`, if the tree has one.
    func child(of node: Int, token: Int32) -> Int? {
        tokens.indices.first { parents[$0] == node && tokens[$0] == token }
    }

    /// For each prefix of `chain` (1, 2, … tokens), the nodes `merge(chain:)` of it would add:
    /// tokens that follow the draft's own path cost no verify slot.
    public func nodesAdded(chain: [Int32]) -> [Int] {
        var node = -1, added = 0
        var result: [Int] = []
        for token in chain {
            if node >= -1, let existing = child(of: node, token: token) {
                node = existing
            } else {
                node = -2   // off the tree: every later token is new
                added += 1
            }
            result.append(added)
        }
        return result
    }
}
