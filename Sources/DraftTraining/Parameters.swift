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
