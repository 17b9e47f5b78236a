import Foundation
import Testing
import Kernels

/// SwiGLU's vectorized exp (specdec_silu.h): every width gives the same bits, whatever the
/// element's position or the call's length, and stays within a few ulp of silu in float64.
@Suite("SwiGLU")
struct SwiGLUTests {
    /// Gate values over the whole range a hidden state can take, the clamp edges and beyond.
    static func gates() -> [Float] {
        var rng = TestRNG(state: 91)
        var g = rng.floats(4000).map { $0 * 12 }
        g += stride(from: -120 as Float, through: 120, by: 0.37)
        g += [0, -0, 1e-30, -1e-30, 87, -87, 88, -88, 88.5, -88.5, 89, -89, 103, -103, .greatestFiniteMagnitude,
              -.greatestFiniteMagnitude, .infinity, -.infinity]
        return g
    }

    func run(_ width: SwiGLUWidth, gate: [Float], up: [Float]) -> [Float] {
        var g = gate
        g.withUnsafeMutableBufferPointer { gp in
            up.withUnsafeBufferPointer { swiGLU(gate: gp.baseAddress!, up: $0.baseAddress!, count: gate.count, width: width) }
        }
        return g
    }

    @Test("scalar, AVX2 and AVX-512 agree bit for bit (each where the CPU has it), at every offset and length")
    func widthsAgree() {
        let gate = Self.gates()
        var rng = TestRNG(state: 92)
        let up = rng.floats(gate.count)
        let base = run(.scalar, gate: gate, up: up)
        for width in SwiGLUWidth.allCases where width.isSupported {
            #expect(run(width, gate: gate, up: up).map(\.bitPattern) == base.map(\.bitPattern), "\(width)")
            // Odd lengths and offsets: the tail takes the scalar code, which must match the lanes.
            for (start, count) in [(1, 37), (5, 16), (13, 3), (0, 7)] {
                let part = run(width, gate: Array(gate[start..<(start + count)]), up: Array(up[start..<(start + count)]))
                #expect(part.map(\.bitPattern) == base[start..<(start + count)].map(\.bitPattern), "\(width) at \(start)+\(count)")
            }
        }
    }

    @Test("within 4 ulp of silu(g)·u computed in float64, and 0 or g where exp leaves the float range")
    func accuracy() {
        let gate = Self.gates()
        let up = [Float](repeating: 1, count: gate.count)
        let y = run(.widest, gate: gate, up: up)
        for (g, v) in zip(gate, y) where g.isFinite {
            let want = Double(g) / (1 + Foundation.exp(-Double(g)))
            if abs(want) < 1e-30 {
                #expect(abs(Double(v)) < 1e-30, "silu(\(g)) = \(v), want \(want)")
            } else {
                let ulp = Double(Float(want).ulp)
                #expect(abs(Double(v) - want) <= 4 * ulp, "silu(\(g)) = \(v), want \(want)")
            }
        }
        #expect(y[gate.firstIndex(of: .infinity)!] == .infinity)
    }
}
