/// Element types of GGML tensors, numbered as in the GGUF file format (`ggml_type`).
/// Only the types specdec can compute with are listed; any other id is rejected by the reader.
public enum QuantType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q4_1 = 3
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case bf16 = 30

    /// Elements per block: rows are stored as whole blocks, so a row length must be a multiple of this.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q8_0: return 32
        case .q4_K, .q5_K, .q6_K: return 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 2 + 16            // d, 32 × 4-bit
        case .q4_1: return 2 + 2 + 16        // d, m, 32 × 4-bit
        case .q8_0: return 2 + 32            // d, 32 × int8
        case .q4_K: return 2 + 2 + 12 + 128  // d, dmin, 8 × (6-bit scale, 6-bit min), 256 × 4-bit
        case .q5_K: return 2 + 2 + 12 + 32 + 128 // as q4_K plus one high bit per element
        case .q6_K: return 128 + 64 + 16 + 2 // low 4 bits, high 2 bits, 16 × int8 scales, d
        }
    }

    /// Bytes of a row of `count` elements; nil when `count` is not a whole number of blocks.
    public func rowBytes(_ count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (blocks, overflow) = (count / blockSize).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : blocks
    }

    public var description: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q8_0: return "Q8_0"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        }
    }
}
