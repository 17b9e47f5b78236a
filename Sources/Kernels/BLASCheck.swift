import COpenBLAS

/// Checks `cblas_sgemm` under the core type this process runs against a float64 triple loop,
/// on sizes that are not multiples of any kernel's tile. Returns the largest relative error.
public func checkSgemm(m: Int = 67, n: Int = 45, k: Int = 129, seed: UInt64 = 1) -> Double {
    var state = seed
    func next() -> Float {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 1000
    }
    let a = (0..<(m * k)).map { _ in next() }
    let b = (0..<(k * n)).map { _ in next() }
    var c = [Float](repeating: 0, count: m * n)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, &c, Int32(n))
    var worst = 0.0
    for i in 0..<m {
        for j in 0..<n {
            var ref = 0.0, mag = 0.0
            for p in 0..<k {
                ref += Double(a[i * k + p]) * Double(b[p * n + j])
                mag += abs(Double(a[i * k + p]) * Double(b[p * n + j]))
            }
            worst = max(worst, abs(Double(c[i * n + j]) - ref) / max(mag, 1e-30))
        }
    }
    return worst
}
