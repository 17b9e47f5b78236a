import Foundation
import Kernels

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
    ///
    /// The trainable slots are cut into fixed blocks of `blockSize` values, which `threads`
    /// threads share: each block's squared-gradient sum is added to the others in block order,
    /// so the norm (and so the whole update) does not depend on the thread count.
    @discardableResult
    public func update(params: inout [Float], grads: inout [Float], m: inout [Float], v: inout [Float],
                       slots: [TensorSlot], step: Int, threads: Int = 1) -> Float {
        let blockSize = 1 << 15
        var blocks: [(range: Range<Int>, decay: Float)] = []
        for s in slots where s.trainable {
            let wd = s.shape.count >= 2 ? weightDecay : 0
            var o = s.offset
            while o < s.offset + s.count {
                let e = min(o + blockSize, s.offset + s.count)
                blocks.append((o..<e, wd)); o = e
            }
        }
        var partial = [Double](repeating: 0, count: blocks.count)
        grads.withUnsafeBufferPointer { g in
            partial.withUnsafeMutableBufferPointer { ps in
                let gp = g.baseAddress!, pp = ps.baseAddress!
                parallelChunks(blocks.count, threads: threads) { r in
                    for b in r {
                        var ss: Double = 0
                        for i in blocks[b].range { ss += Double(gp[i]) * Double(gp[i]) }
                        pp[b] = ss
                    }
                }
            }
        }
        let norm = Float(partial.reduce(0, +).squareRoot())
        let clip: Float = clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1
        let t = Float(step + 1)
        let bc1 = 1 - powf(beta1, t), bc2 = 1 - powf(beta2, t)
        let a = rate(step: step)
        let (b1, b2, eps) = (beta1, beta2, self.eps)
        params.withUnsafeMutableBufferPointer { pb in
            m.withUnsafeMutableBufferPointer { mb in
                v.withUnsafeMutableBufferPointer { vb in
                    grads.withUnsafeBufferPointer { gb in
                        let pp = pb.baseAddress!, mp = mb.baseAddress!, vp = vb.baseAddress!, gp = gb.baseAddress!
                        parallelChunks(blocks.count, threads: threads) { r in
                            for b in r {
                                let wd = blocks[b].decay
                                for i in blocks[b].range {
                                    let g = gp[i] * clip
                                    mp[i] = b1 * mp[i] + (1 - b1) * g
                                    vp[i] = b2 * vp[i] + (1 - b2) * g * g
                                    let mh = mp[i] / bc1, vh = vp[i] / bc2
                                    pp[i] -= a * (mh / (vh.squareRoot() + eps) + wd * pp[i])
                                }
                            }
                        }
                    }
                }
            }
        }
        return norm
    }
}
