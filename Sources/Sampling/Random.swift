/// xoshiro256** seeded through SplitMix64: small, fast, and the same sequence on every
/// platform, so a `--seed` reproduces a sampled run exactly.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var z = SplitMix64(seed: seed)
        s = (z.next(), z.next(), z.next(), z.next())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 24 bits, as a Float.
    public mutating func nextUnitFloat() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [0, 1) with 53 bits.
    public mutating func nextUnitDouble() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }
}

/// SplitMix64: small, fast, and its whole state is one UInt64 (the trainer stores it in
/// checkpoints); it also seeds `SeededGenerator`.
public struct SplitMix64: Sendable, Equatable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.finalize(state)
    }
    /// SplitMix64's output function alone: a bijective 64-bit mix, good for hashing seeds.
    @inlinable public static func finalize(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in (0, 1] with 53 bits (never 0: safe under a logarithm).
    public mutating func nextOpenUnitDouble() -> Double {
        (Double(next() >> 11) + 1) * (1.0 / 9_007_199_254_740_992.0)
    }
    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Float { Float(next() >> 40) / Float(1 << 24) }
    /// A stream derived from several values (seed, step, sample…): order-independent data/noise.
    public static func derive(_ parts: UInt64...) -> SplitMix64 {
        var s = SplitMix64(seed: 0x1234_5678_9ABC_DEF0)
        var h: UInt64 = 0
        for p in parts { s.state ^= p &* 0x9E37_79B9_7F4A_7C15; h = s.next() }
        return SplitMix64(seed: h)
    }
}
