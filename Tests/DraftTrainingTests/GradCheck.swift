import XCTest
@testable import DraftTraining

/// Central-difference checks: f is evaluated in float32 (the code under test), so the step is
/// large (1e-2) and the bound relative (1e-2 of the larger magnitude plus a small floor).
struct GradCheck {
    var eps: Float = 1e-2
    var tolerance: Double = 1e-2
    var floor: Double = 1e-3
    /// Richardson extrapolation, (4·D(ε/2) − D(ε))/3 of the central differences D: cancels their
    /// O(ε²) truncation error where the loss curves strongly at ε (the unrolled training-time
    /// steps compound it) while float32 noise forbids a smaller ε.
    var richardson = false

    /// Worst relative error between `analytic[i]` and the central difference of `f` in
    /// coordinate i of `x`, over `coords`.
    func worst(_ x: inout [Float], coords: [Int], analytic: [Float], _ f: ([Float]) -> Double) -> (error: Double, at: Int) {
        var worst = (0.0, -1)
        for i in coords {
            let keep = x[i]
            func central(_ h: Float) -> Double {
                x[i] = keep + h; let up = f(x)
                x[i] = keep - h; let down = f(x)
                x[i] = keep
                return (up - down) / (2 * Double(h))
            }
            let numeric = richardson ? (4 * central(eps / 2) - central(eps)) / 3 : central(eps)
            let a = Double(analytic[i])
            let err = abs(a - numeric) / max(abs(a), abs(numeric), floor)
            if err > worst.0 { worst = (err, i) }
        }
        return worst
    }

    func passes(_ x: inout [Float], coords: [Int], analytic: [Float], _ f: ([Float]) -> Double) -> Bool {
        worst(&x, coords: coords, analytic: analytic, f).error < tolerance
    }

    /// Asserts that `analytic` matches at `coords` (the worst coordinate named by its tensor in
    /// `slots`) and that the same check rejects a deliberately wrong gradient there, so that it
    /// cannot pass by being blind. `label` prefixes both messages.
    func assertMatches(_ x: inout [Float], coords: [Int], analytic: [Float], slots: [TensorSlot], label: String = "",
                       _ f: ([Float]) -> Double, file: StaticString = #filePath, line: UInt = #line) {
        let w = worst(&x, coords: coords, analytic: analytic, f)
        let name = slots.last { $0.offset <= max(w.at, 0) }?.name ?? "?"
        XCTAssertLessThan(w.error, tolerance, "\(label)worst at \(name) (coordinate \(w.at))", file: file, line: line)
        var wrong = analytic
        for i in coords { wrong[i] = wrong[i] * 1.1 + 0.05 }
        XCTAssertFalse(passes(&x, coords: coords, analytic: wrong, f), "\(label)a wrong gradient passed", file: file, line: line)
    }
}

struct TestRNG {
    var s: SplitMix64
    init(_ seed: UInt64) { s = SplitMix64(seed: seed) }
    mutating func uniform(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in (s.nextUnit() * 2 - 1) * scale } }
    mutating func pick(_ k: Int, of n: Int) -> [Int] { (0..<k).map { _ in Int(s.next() % UInt64(n)) } }
}

/// Σ r·y, the scalar whose gradient with respect to y is r.
func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }

func withPointers<R>(_ a: [Float], _ body: (UnsafePointer<Float>) -> R) -> R { a.withUnsafeBufferPointer { body($0.baseAddress!) } }
