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
