import Foundation

/// `h = silu(g) ∘ u` (LLaMA's FFN gate), elementwise over `count` values.
enum SwiGLU {
    static func forward(gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>, count: Int, into h: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let s = 1 / (1 + expf(-g[i]))
            h[i] = g[i] * s * u[i]
        }
    }

    /// dg = dh·u·σ(g)(1 + g(1 − σ(g))),  du = dh·silu(g); both overwrite.
    static func backward(dh: UnsafePointer<Float>, gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>, count: Int,
                         dg: UnsafeMutablePointer<Float>, du: UnsafeMutablePointer<Float>) {
        for i in 0..<count {
            let s = 1 / (1 + expf(-g[i]))
            du[i] = dh[i] * g[i] * s
            dg[i] = dh[i] * u[i] * s * (1 + g[i] * (1 - s))
        }
    }
}
