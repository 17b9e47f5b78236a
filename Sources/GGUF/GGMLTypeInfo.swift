import Kernels

/// Block geometry of every ggml tensor type a GGUF file may hold, including those specdec
/// cannot compute with: the reader must size and bounds-check any tensor so `inspect` works on
/// any valid file, while arithmetic on an unsupported type is refused where it is attempted.
public struct GGMLTypeInfo: Sendable, Equatable {
    public let id: UInt32
    public let name: String
    public let blockSize: Int
    public let blockBytes: Int

    /// The computable type, if specdec has kernels for it.
    public var quantType: QuantType? { QuantType(rawValue: id) }

    public static func lookup(_ id: UInt32) -> GGMLTypeInfo? { table[id] }

    private static let table: [UInt32: GGMLTypeInfo] = {
        let rows: [(UInt32, String, Int, Int)] = [
            (0, "F32", 1, 4), (1, "F16", 1, 2), (2, "Q4_0", 32, 18), (3, "Q4_1", 32, 20),
            (6, "Q5_0", 32, 22), (7, "Q5_1", 32, 24), (8, "Q8_0", 32, 34), (9, "Q8_1", 32, 36),
            (10, "Q2_K", 256, 84), (11, "Q3_K", 256, 110), (12, "Q4_K", 256, 144),
            (13, "Q5_K", 256, 176), (14, "Q6_K", 256, 210), (15, "Q8_K", 256, 292),
            (20, "IQ4_NL", 32, 18), (23, "IQ4_XS", 256, 136),
            (24, "I8", 1, 1), (25, "I16", 1, 2), (26, "I32", 1, 4), (27, "I64", 1, 8),
            (28, "F64", 1, 8), (30, "BF16", 1, 2),
        ]
        var t: [UInt32: GGMLTypeInfo] = [:]
        for (id, name, bs, bb) in rows { t[id] = GGMLTypeInfo(id: id, name: name, blockSize: bs, blockBytes: bb) }
        return t
    }()
}
