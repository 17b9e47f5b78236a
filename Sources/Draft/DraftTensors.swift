/// How a tensor starts in a fresh training run (`DraftParameters.initialise` in DraftTraining).
public enum DraftTensorInit: Sendable, Equatable {
    /// Norm weights.
    case ones
    /// U(±1/√in), as PyTorch's `nn.Linear`.
    case fanIn
    /// U(±a): the adapter's learned queries.
    case uniform(Float)
    /// `img_fc` = [I ; 0], so an untrained adapter leaves the plain EAGLE draft.
    case identityFusion
}

/// One float tensor of a draft: checkpoint name, shape (`[out, in]` for matrices), whether
/// training updates it, and its initialisation.
public struct DraftTensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    /// False for the copied output norm of EAGLE-2/ViSpec drafts (it normalises the target's
    /// state, so it stays the target's); every EAGLE-3 tensor trains.
    public var trainable: Bool
    public var initialisation: DraftTensorInit
    public var count: Int { shape.reduce(1, *) }
}

extension DraftConfig {
    /// Every float tensor of a draft with this config, in checkpoint and parameter-vector order.
    /// The one table of the draft: inference weights (`DraftWeights`), the checkpoint reader and
    /// writers, training parameters and gradient views are all built from it.
    public var tensors: [DraftTensor] {
        typealias N = DraftWeights.Name
        let d = width
        // EAGLE-3: fc fuses the aux layers' states; attention reads [norm(e) ; norm(g)] (2d).
        let attIn = isEagle3 ? 2 * d : d
        func matrix(_ name: String, _ shape: [Int]) -> DraftTensor {
            DraftTensor(name: N.of(name, self), shape: shape, trainable: true, initialisation: .fanIn)
        }
        func norm(_ name: String, trainable: Bool = true) -> DraftTensor {
            DraftTensor(name: N.of(name, self), shape: [d], trainable: trainable, initialisation: .ones)
        }
        var t = [
            matrix(N.fc, isEagle3 ? [d, featureWidth] : [d, 2 * d]),
            matrix(N.q, [qWidth, attIn]), matrix(N.k, [kvWidth, attIn]), matrix(N.v, [kvWidth, attIn]), matrix(N.o, [d, qWidth]),
            norm(N.postNorm),
            matrix(N.gate, [ffn, d]), matrix(N.up, [ffn, d]), matrix(N.down, [d, ffn]),
            norm(N.norm, trainable: isEagle3),
        ]
        if isEagle3 { t += [norm(N.inputNorm), norm(N.hiddenNorm)] }
        if !headTied { t.append(matrix(N.lmHead, [vocab, d])) }
        if numQ > 0 {
            t.append(DraftTensor(name: N.queries, shape: [numQ, d], trainable: true, initialisation: .uniform(0.02)))
            t += [matrix(N.aq, [d, d]), matrix(N.ak, [d, d]), matrix(N.av, [d, d]), matrix(N.ao, [d, d])]
            t.append(DraftTensor(name: N.imgFc, shape: [d, 2 * d], trainable: true, initialisation: .identityFusion))
        }
        return t
    }
}
