/// Float rows → packed rows, for matrices that specdec builds itself (a draft checkpoint's float
/// weights packed at load time so they run on the same fast kernels as the target's).
public enum QuantizeError: Error, CustomStringConvertible, Equatable {
    case unsupported(QuantType)
    case partialBlock(QuantType, cols: Int)
    public var description: String {
        switch self {
        case .unsupported(let t): return "packing float rows into \(t) is not implemented (F32, F16, BF16, Q8_0, Q4_0 are)"
        case .partialBlock(let t, let cols): return "a row of \(cols) elements is not a whole number of \(t) blocks"
        }
    }
}

/// Packs `count` floats into one row of `type` at `dst` (`type.rowBytes(count)` bytes).
/// Q8_0 follows ggml's reference quantizer (d = max|x| / 127, q = round(x / d)), so a row
/// packed here dequantizes exactly as a row from a GGUF file would.
public func quantizeRow(_ type: QuantType, _ src: UnsafePointer<Float>, count: Int, into dst: UnsafeMutableRawPointer) throws {
    guard count % type.blockSize == 0 else { throw QuantizeError.partialBlock(type, cols: count) }
    switch type {
    case .f32:
        dst.copyMemory(from: src, byteCount: count * 4)
    case .f16:
        for i in 0..<count { dst.storeBytes(of: floatToHalf(src[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
    case .bf16:
        for i in 0..<count { dst.storeBytes(of: floatToBF16(src[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self) }
    case .q8_0:
        for b in 0..<(count / 32) {
            let x = src + b * 32
            let out = dst + b * 34
            var amax: Float = 0
            for j in 0..<32 { amax = max(amax, abs(x[j])) }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            out.storeBytes(of: floatToHalf(d).littleEndian, toByteOffset: 0, as: UInt16.self)
            for j in 0..<32 {
                let q = (x[j] * id).rounded(.toNearestOrAwayFromZero)
                out.storeBytes(of: Int8(max(-127, min(127, q))), toByteOffset: 2 + j, as: Int8.self)
            }
        }
    case .q4_0:
        // ggml's reference quantizer: d = (signed value of largest magnitude) / −8,
        // q = min(15, trunc(x / d + 8.5)).
        for b in 0..<(count / 32) {
            let x = src + b * 32
            let out = dst + b * 18
            var amax: Float = 0, mx: Float = 0
            for j in 0..<32 where abs(x[j]) > amax { amax = abs(x[j]); mx = x[j] }
            let d = mx / -8
            let id: Float = d != 0 ? 1 / d : 0
            out.storeBytes(of: floatToHalf(d).littleEndian, toByteOffset: 0, as: UInt16.self)
            for j in 0..<16 {
                let lo = UInt8(min(15, Int8(x[j] * id + 8.5))), hi = UInt8(min(15, Int8(x[j + 16] * id + 8.5)))
                out.storeBytes(of: lo | (hi << 4), toByteOffset: 2 + j, as: UInt8.self)
            }
        }
    default:
        throw QuantizeError.unsupported(type)
    }
}

/// A `PackedMatrix` whose bytes this object owns (built from float rows), with its interleaved
/// copy for the int8-activation path when the type has one: keep the object alive as long as its
/// `matrix` is used.
public final class OwnedPackedMatrix: @unchecked Sendable {
    public let matrix: PackedMatrix
    private let buffer: UnsafeMutableRawPointer

    /// Packs `rows` × `cols` floats (row-major) into `type`.
    public init(type: QuantType, rows: Int, cols: Int, floats: UnsafePointer<Float>) throws {
        buffer = try Self.pack(type: type, rows: rows, cols: cols, floats: floats)
        matrix = PackedMatrix(type: type, rows: rows, cols: cols, data: UnsafeRawPointer(buffer)).withInterleavedCopy()
    }

    public init(type: QuantType, rows: Int, cols: Int, floats: [Float]) throws {
        precondition(floats.count == rows * cols, "OwnedPackedMatrix: \(floats.count) floats for \(rows) × \(cols)")
        buffer = try floats.withUnsafeBufferPointer { try Self.pack(type: type, rows: rows, cols: cols, floats: $0.baseAddress!) }
        matrix = PackedMatrix(type: type, rows: rows, cols: cols, data: UnsafeRawPointer(buffer)).withInterleavedCopy()
    }

    private static func pack(type: QuantType, rows: Int, cols: Int, floats: UnsafePointer<Float>) throws -> UnsafeMutableRawPointer {
        guard let rb = type.rowBytes(cols) else { throw QuantizeError.partialBlock(type, cols: cols) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(1, rb * rows), alignment: 64)
        for r in 0..<rows {
            do { try quantizeRow(type, floats + r * cols, count: cols, into: buffer + r * rb) } catch {
                buffer.deallocate(); throw error
            }
        }
        return buffer
    }

    deinit { buffer.deallocate() }
}
