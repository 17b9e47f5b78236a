/// Element types of the safetensors format (the names are the format's own).
public enum SafeTensorsDType: String, Sendable, CaseIterable, CustomStringConvertible {
    case BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .BOOL, .U8, .I8: return 1
        case .I16, .U16, .F16, .BF16: return 2
        case .I32, .U32, .F32: return 4
        case .F64, .I64, .U64: return 8
        }
    }

    public var isFloat: Bool { self == .F16 || self == .BF16 || self == .F32 || self == .F64 }

    public var description: String { rawValue }
}

// Half and bfloat16 conversions are repeated here (rather than taken from Kernels) so that the
// format module depends on nothing but the standard library and Foundation.

@inline(__always)
func stHalfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = UInt32(h >> 10) & 0x1f
    let mant = UInt32(h & 0x3ff)
    if exp == 0 {
        let v = Float(mant) * (1.0 / 16_777_216.0)
        return sign != 0 ? -v : v
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (mant << 13)) }
    return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
}

/// Round-to-nearest-even float → IEEE half (overflow → ±inf, NaN stays NaN).
func stFloatToHalf(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    let sign = UInt16((bits >> 16) & 0x8000)
    let exp = Int((bits >> 23) & 0xff)
    var mant = bits & 0x7f_ffff
    if exp == 0xff { return sign | 0x7c00 | (mant != 0 ? 0x200 : 0) }
    let e = exp - 127 + 15
    if e >= 31 { return sign | 0x7c00 }
    if e <= 0 {
        if e < -10 { return sign }
        mant |= 0x80_0000
        let shift = UInt32(14 - e)
        var half = mant >> shift
        let rem = mant & ((1 << shift) - 1)
        let halfway = UInt32(1) << (shift - 1)
        if rem > halfway || (rem == halfway && (half & 1) == 1) { half += 1 }
        return sign | UInt16(half)
    }
    var half = UInt32(e << 10) | (mant >> 13)
    let rem = mant & 0x1fff
    if rem > 0x1000 || (rem == 0x1000 && (half & 1) == 1) { half += 1 }
    return sign | UInt16(truncatingIfNeeded: half)
}

/// Round-to-nearest-even float → bfloat16 (NaN kept quiet).
func stFloatToBF16(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    if f.isNaN { return UInt16(bits >> 16) | 0x40 }
    let rounded = bits &+ 0x7fff &+ ((bits >> 16) & 1)
    return UInt16(rounded >> 16)
}

@inline(__always)
func stBF16ToFloat(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }
