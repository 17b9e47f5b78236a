/// A zero-initialised float buffer owned by one forward/backward computation. Raw pointers
/// keep the BLAS calls readable; the buffer frees itself.
final class Buf {
    let p: UnsafeMutablePointer<Float>
    let count: Int
    init(_ count: Int) {
        self.count = count
        p = .allocate(capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
    }
    convenience init(_ values: [Float]) {
        self.init(values.count)
        for i in 0..<values.count { p[i] = values[i] }
    }
    deinit { p.deallocate() }
    func zero() { p.update(repeating: 0, count: max(count, 1)) }
    var array: [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
    subscript(i: Int) -> Float {
        get { p[i] }
        set { p[i] = newValue }
    }
}

/// Copies rows `rows` of `src` (width w) into consecutive rows of `dst`.
func gatherRows(_ src: UnsafePointer<Float>, rows: [Int], width w: Int, into dst: UnsafeMutablePointer<Float>) {
    for (i, r) in rows.enumerated() { (dst + i * w).update(from: src + r * w, count: w) }
}

/// Adds consecutive rows of `src` into rows `rows` of `dst`.
func scatterAddRows(_ src: UnsafePointer<Float>, rows: [Int], width w: Int, into dst: UnsafeMutablePointer<Float>) {
    for (i, r) in rows.enumerated() {
        let s = src + i * w, d = dst + r * w
        for k in 0..<w { d[k] += s[k] }
    }
}
