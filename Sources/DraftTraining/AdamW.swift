import Foundation

/// AdamW (decoupled weight decay) over the flat parameter vector, with a linear warm-up then a
/// linear decay to `minLRFraction · lr`, and global gradient-norm clipping.
public struct AdamW: Sendable {
    public var lr: Float
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var eps: Float = 1e-8
    public var weightDecay: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var minLRFraction: Float = 0.0
    public var clipNorm: Float

    public init(lr: Float, weightDecay: Float, warmupSteps: Int, totalSteps: Int, clipNorm: Float) {
        self.lr = lr; self.weightDecay = weightDecay; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps; self.clipNorm = clipNorm
    }

    /// Learning rate of step `step` (0-based).
    public func rate(step: Int) -> Float {
        if warmupSteps > 0 && step < warmupSteps { return lr * Float(step + 1) / Float(warmupSteps) }
        let span = max(totalSteps - warmupSteps, 1)
        let frac = min(max(Float(step - warmupSteps) / Float(span), 0), 1)
        return lr * (1 - (1 - minLRFraction) * frac)
    }

    /// One update. Returns the gradient norm before clipping. Frozen slots are left alone;
    /// decay applies to matrices only (norm weights are not pulled towards 0).
    @discardableResult
    public func update(params: inout [Float], grads: inout [Float], m: inout [Float], v: inout [Float],
                       slots: [TensorSlot], step: Int) -> Float {
        var ss: Double = 0
        for s in slots where s.trainable { for i in s.offset..<(s.offset + s.count) { ss += Double(grads[i]) * Double(grads[i]) } }
        let norm = Float(ss.squareRoot())
        let clip: Float = clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1
        let t = Float(step + 1)
        let bc1 = 1 - powf(beta1, t), bc2 = 1 - powf(beta2, t)
        let a = rate(step: step)
        for s in slots where s.trainable {
            let wd = s.shape.count >= 2 ? weightDecay : 0
            for i in s.offset..<(s.offset + s.count) {
                let g = grads[i] * clip
                m[i] = beta1 * m[i] + (1 - beta1) * g
                v[i] = beta2 * v[i] + (1 - beta2) * g * g
                let mh = m[i] / bc1, vh = v[i] / bc2
                params[i] -= a * (mh / (vh.squareRoot() + eps) + wd * params[i])
            }
        }
        return norm
    }
}
