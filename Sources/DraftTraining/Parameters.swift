import Draft
import Foundation
@_exported import Sampling   // SplitMix64 (stored in checkpoints) lives there

/// One named tensor inside the flat parameter vector.
public struct TensorSlot: Equatable, Sendable {
    public var name: String
    public var shape: [Int]
    public var offset: Int
    public var count: Int
    /// Frozen tensors (the copied output norm) get no gradient and no optimizer state.
    public var trainable: Bool
}

/// Every float parameter of the draft in one flat vector (so AdamW, clipping and the checkpoint
/// treat them uniformly), laid out by the checkpoint names of docs/draft-design.md.
public struct DraftParameters: Sendable {
    public let config: DraftConfig
    public private(set) var slots: [TensorSlot] = []
    public var values: [Float]

    public init(config c: DraftConfig) {
        self.config = c
        var off = 0
        for t in c.tensors {
            slots.append(TensorSlot(name: t.name, shape: t.shape, offset: off, count: t.count, trainable: t.trainable))
            off += t.count
        }
        values = [Float](repeating: 0, count: off)
    }

    public var count: Int { values.count }

    public func slot(_ name: String) -> TensorSlot? { slots.first { $0.name == name } }

    /// Offset of a tensor that the layout always has for this config.
    func offset(_ name: String) -> Int { slots.first { $0.name == name }!.offset }

    public func tensor(_ name: String) -> [Float]? {
        guard let s = slot(name) else { return nil }
        return Array(values[s.offset..<(s.offset + s.count)])
    }

    public mutating func set(_ name: String, _ v: [Float]) {
        let s = slot(name)!
        precondition(v.count == s.count, "\(name): \(v.count) values for \(s.count)")
        values.replaceSubrange(s.offset..<(s.offset + s.count), with: v)
    }

    /// Random initialisation by each tensor's rule in `DraftConfig.tensors`: U(±1/√in) as
    /// PyTorch's nn.Linear, norms at 1, queries U(±0.02), `img_fc` = [I ; 0] so that the adapter
    /// starts as the plain EAGLE draft. One stream over the tensors in table order.
    public mutating func initialise(seed: UInt64) {
        var rng = SplitMix64(seed: seed ^ 0x5EED_D4AF7)
        for (s, t) in zip(slots, config.tensors) {
            let bound: Float
            switch t.initialisation {
            case .ones:
                for i in 0..<s.count { values[s.offset + i] = 1 }
                continue
            case .identityFusion:
                let d = config.width
                for i in 0..<s.count { values[s.offset + i] = 0 }
                for i in 0..<d { values[s.offset + i * 2 * d + i] = 1 }
                continue
            case .fanIn: bound = 1 / Float(s.shape[1]).squareRoot()
            case .uniform(let a): bound = a
            }
            for i in 0..<s.count { values[s.offset + i] = (rng.nextUnit() * 2 - 1) * bound }
        }
    }
}

/// Every tensor of the draft as a pointer into one flat vector laid out by `DraftParameters`
/// (so by `DraftConfig.tensors`, the one table): the weights or their gradients. `fc`, the
/// layer's projections and its FFN norm are in every layout and always train; the rest are nil
/// where the view has none: the other arch's and the adapter's, and among the gradients those
/// of frozen tensors (the EAGLE-2/ViSpec output norm) and of a tied head.
struct DraftTensorViews<Pointer> {
    let fc, wq, wk, wv, wo, postNorm, gate, up, down: Pointer
    /// The output norm and the head rows (V × d): the weights always have both, a tied head
    /// being the target's rows.
    let norm, head: Pointer?
    /// EAGLE-3 only: the norms of the embedding and state halves of the attention input.
    let inputNorm, hiddenNorm: Pointer?
    /// ViSpec only: the adapter and img_fc.
    let queries, aq, ak, av, ao, imgFc: Pointer?

    /// `view` answers for a checkpoint name of `config`'s table (layer tensors are `midlayer.*`
    /// in an EAGLE-3 layout), nil where the view has no such tensor.
    init(config c: DraftConfig, _ view: (String) -> Pointer?) {
        typealias N = DraftWeights.Name
        func at(_ name: String) -> Pointer? { view(N.of(name, c)) }
        fc = at(N.fc)!; wq = at(N.q)!; wk = at(N.k)!; wv = at(N.v)!; wo = at(N.o)!
        postNorm = at(N.postNorm)!
        gate = at(N.gate)!; up = at(N.up)!; down = at(N.down)!
        norm = at(N.norm); head = at(N.lmHead)
        inputNorm = at(N.inputNorm); hiddenNorm = at(N.hiddenNorm)
        queries = at(N.queries); aq = at(N.aq); ak = at(N.ak); av = at(N.av); ao = at(N.ao); imgFc = at(N.imgFc)
    }
}

typealias DraftWeightViews = DraftTensorViews<UnsafePointer<Float>>
typealias DraftGradViews = DraftTensorViews<UnsafeMutablePointer<Float>>

extension DraftTensorViews<UnsafePointer<Float>> {
    /// The weights inside `params`; `tiedHead`: the target's head rows, for a draft whose head is tied.
    init(params p: UnsafePointer<Float>, layout: DraftParameters, tiedHead: UnsafePointer<Float>?) {
        self.init(config: layout.config) { name in
            layout.slot(name).map { p + $0.offset } ?? (name == DraftWeights.Name.lmHead ? tiedHead : nil)
        }
    }
}

extension DraftTensorViews<UnsafeMutablePointer<Float>> {
    /// The gradients inside `grads`: the trainable tensors'.
    init(grads g: UnsafeMutablePointer<Float>, layout: DraftParameters) {
        self.init(config: layout.config) { name in layout.slot(name).flatMap { $0.trainable ? g + $0.offset : nil } }
    }
}
