#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Softmax of `n` values (max-shifted), into `q`; `q` may be `z` itself. One fixed order, so the
/// vision tower's attention and the draft trainer's losses compute it the same way.
public func softmax(_ z: UnsafePointer<Float>, count n: Int, into q: UnsafeMutablePointer<Float>) {
    var mx = -Float.infinity
    for i in 0..<n { mx = max(mx, z[i]) }
    var s: Float = 0
    for i in 0..<n { let e = expf(z[i] - mx); q[i] = e; s += e }
    let inv = 1 / s
    for i in 0..<n { q[i] *= inv }
}
