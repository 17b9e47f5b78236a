import Testing
import Kernels

@Suite("IEEE half / bfloat16 conversions")
struct HalfTests {
    static func isHalfNaN(_ h: UInt16) -> Bool { h & 0x7c00 == 0x7c00 && h & 0x3ff != 0 }

    @Test("halfToFloat → floatToHalf round-trips all 65536 bit patterns")
    func roundTripAll() {
        var failures = 0
        for i in 0...0xFFFF {
            let h = UInt16(i)
            let f = halfToFloat(h)
            let back = floatToHalf(f)
            if Self.isHalfNaN(h) {
                // NaN payloads are not preserved by floatToHalf (it returns a quiet NaN), but
                // NaN-ness and the sign are; halfToFloat keeps the payload in the top mantissa bits.
                if !f.isNaN || !Self.isHalfNaN(back) || (back & 0x8000) != (h & 0x8000) { failures += 1 }
                if f.bitPattern & 0x007f_ffff != UInt32(h & 0x3ff) << 13 { failures += 1 }
            } else if back != h {
                failures += 1
            }
        }
        #expect(failures == 0)
    }

    @Test("halfToFloat: spot values")
    func spotValues() {
        #expect(halfToFloat(0x3c00) == 1)
        #expect(halfToFloat(0xc000) == -2)
        #expect(halfToFloat(0x7bff) == 65504)
        #expect(halfToFloat(0x0001) == Float(sign: .plus, exponent: -24, significand: 1))
        #expect(halfToFloat(0x03ff) == Float(1023) * 0x1p-24)
        #expect(halfToFloat(0x0400) == 0x1p-14)
        #expect(halfToFloat(0x8000).bitPattern == 0x8000_0000)
        #expect(halfToFloat(0x7c00) == .infinity)
        #expect(halfToFloat(0xfc00) == -.infinity)
        #expect(halfToFloat(0x7e00).isNaN)
        #expect(floatToHalf(65520) == 0x7c00)          // rounds up to infinity
        #expect(floatToHalf(65519.996) == 0x7bff)
        #expect(floatToHalf(0x1p-25) == 0)             // tie → even (0)
        #expect(floatToHalf(Float(0x1p-25).nextUp) == 1)
        #expect(floatToHalf(3 * 0x1p-25) == 2)          // tie between 1 and 2 → even
        #expect(floatToHalf(-0.0) == 0x8000)
        #expect(floatToHalf(1e-30) == 0)
        #expect(floatToHalf(.greatestFiniteMagnitude) == 0x7c00)
        #expect(Self.isHalfNaN(floatToHalf(.nan)))
    }

    @Test("bf16ToFloat")
    func bf16() {
        #expect(bf16ToFloat(0x3f80) == 1)
        #expect(bf16ToFloat(0xc040) == -3)
        #expect(bf16ToFloat(0x7f80) == .infinity)
        #expect(bf16ToFloat(0x0001).bitPattern == 0x0001_0000)
        for i in stride(from: 0, through: 0xFFFF, by: 7) {
            #expect(bf16ToFloat(UInt16(i)).bitPattern == UInt32(i) << 16)
        }
    }

#if !(os(macOS) && arch(x86_64))
    @Test("agrees with Swift Float16 on all halves and on rounding boundaries")
    func againstFloat16() {
        var failures = 0
        func check(_ f: Float) {
            let mine = floatToHalf(f)
            let swift = Float16(f).bitPattern
            if f.isNaN {
                if !Self.isHalfNaN(mine) || !Self.isHalfNaN(swift) { failures += 1 }
            } else if mine != swift {
                failures += 1
            }
        }
        for i in 0...0xFFFF {
            let h = UInt16(i)
            let a = halfToFloat(h)
            let s = Float(Float16(bitPattern: h))
            if Self.isHalfNaN(h) { if !(a.isNaN && s.isNaN) { failures += 1 } }
            else if a.bitPattern != s.bitPattern { failures += 1 }
            check(a)
            // Midpoint to the next half up (exact in float) and its float neighbours: exercises
            // round-to-nearest-even in the normal, subnormal and overflow ranges.
            if !Self.isHalfNaN(h), h & 0x7fff < 0x7c00 {
                let next = h & 0x7fff == 0x7bff ? Float(65536) : halfToFloat(h &+ 1)
                if (h & 0x8000) == 0 {
                    let mid = (a + next) / 2
                    check(mid); check(mid.nextUp); check(mid.nextDown)
                    check(-mid); check(-mid.nextUp); check(-mid.nextDown)
                }
            }
        }
        var rng: UInt64 = 12345
        for _ in 0..<200_000 {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            check(Float(bitPattern: UInt32(truncatingIfNeeded: rng >> 32)))
        }
        #expect(failures == 0)
    }
#endif
}
