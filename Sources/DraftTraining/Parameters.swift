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
        let d = c.width, q = c.heads * c.headDim, kv = c.kvHeads * c.headDim
        if c.isEagle3 {
            // EAGLE-3: the names and shapes of `DraftWeights.shapes` (midlayer.*, fc over the aux
            // layers, q/k/v over [norm(e) ; norm(g)]). Every tensor trains, the output norm too:
            // the state it normalises is the draft's own, not a regression of the target's.
            var off = 0
            for (name, shape) in DraftWeights.shapes(c) {
                let n = shape.reduce(1, *)
                slots.append(TensorSlot(name: name, shape: shape, offset: off, count: n, trainable: true))
                off += n
            }
            values = [Float](repeating: 0, count: off)
            return
        }
        var list: [(String, [Int], Bool)] = [
            ("fc.weight", [d, 2 * d], true),
            ("layers.0.self_attn.q_proj.weight", [q, d], true),
            ("layers.0.self_attn.k_proj.weight", [kv, d], true),
            ("layers.0.self_attn.v_proj.weight", [kv, d], true),
            ("layers.0.self_attn.o_proj.weight", [d, q], true),
            ("layers.0.post_attention_layernorm.weight", [d], true),
            ("layers.0.mlp.gate_proj.weight", [c.ffn, d], true),
            ("layers.0.mlp.up_proj.weight", [c.ffn, d], true),
            ("layers.0.mlp.down_proj.weight", [d, c.ffn], true),
            ("norm.weight", [d], false),
        ]
        if !c.headTied { list.append(("lm_head.weight", [c.vocab, d], true)) }
        if c.numQ > 0 {
            list.append(("adapter.queries", [c.numQ, d], true))
            for n in ["q_proj", "k_proj", "v_proj", "o_proj"] { list.append(("adapter.\(n).weight", [d, d], true)) }
            list.append(("img_fc.weight", [d, 2 * d], true))
        }
        var off = 0
        for (name, shape, tr) in list {
            let n = shape.reduce(1, *)
            slots.append(TensorSlot(name: name, shape: shape, offset: off, count: n, trainable: tr))
            off += n
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

    /// Random initialisation as PyTorch's nn.Linear (U(±1/√in)), norms at 1, queries N(0, 0.02)-ish
    /// uniform, `img_fc` = [I ; 0] so that the adapter starts as the plain EAGLE draft.
    public mutating func initialise(seed: UInt64) {
        var rng = SplitMix64(seed: seed ^ 0x5EED_D4AF7)
        for s in slots {
            if s.shape.count == 1 {
                for i in 0..<s.count { values[s.offset + i] = 1 }
            } else if s.name == "img_fc.weight" {
                let d = config.width
                for i in 0..<s.count { values[s.offset + i] = 0 }
                for i in 0..<d { values[s.offset + i * 2 * d + i] = 1 }
            } else {
                let bound = s.name == "adapter.queries" ? Float(0.02) : 1 / Float(s.shape[1]).squareRoot()
                for i in 0..<s.count { values[s.offset + i] = (rng.nextUnit() * 2 - 1) * bound }
            }
        }
    }
}


