import Foundation
import Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where one tensor lives: `byteRange` is relative to the start of the file's data section.
public struct SafeTensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: SafeTensorsDType
    public var shape: [Int]
    public var byteRange: Range<Int>
    public var elementCount: Int { shape.reduce(1, *) }
}

/// The bytes a file is read from: a private read-only mapping, or an owned copy.
final class SafeTensorsStorage: @unchecked Sendable {
    let base: UnsafeRawPointer
    let count: Int
    private let unmap: Bool

    init(mapping base: UnsafeRawPointer, count: Int) { self.base = base; self.count = count; self.unmap = true }

    init(copying bytes: [UInt8]) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        bytes.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: bytes.count) } }
        self.base = UnsafeRawPointer(p); self.count = bytes.count; self.unmap = false
    }

    deinit {
        if unmap { munmap(UnsafeMutableRawPointer(mutating: base), count) }
        else { UnsafeMutableRawPointer(mutating: base).deallocate() }
    }
}

/// A safetensors file (8-byte little-endian header length, JSON header, data), read over a memory
/// map. Everything in the header is checked when the file is opened: a file that opens can be
/// read in full without going out of bounds.
public final class SafeTensorsFile: @unchecked Sendable {
    /// The path (or the name given to an in-memory buffer), used in errors.
    public let file: String
    /// `__metadata__` (string to string; empty when absent).
    public let metadata: [String: String]
    /// Tensors by name.
    public let tensors: [String: SafeTensorInfo]
    /// Byte offset of the data section in the file.
    public let dataOffset: Int

    let storage: SafeTensorsStorage

    /// Larger headers are refused before any allocation (the reference implementation's limit).
    public static let maxHeaderBytes = 100_000_000

    /// Tensor names, sorted.
    public var names: [String] { tensors.keys.sorted() }

    /// Opens and checks `path` (memory-mapped read-only).
    public convenience init(path: String) throws {
        let (m, size) = try MappedFile.map(path, minimumSize: 8, tooSmall: {
            SafeTensorsError(file: path, field: "header length", reason: "file has \($0) bytes, fewer than the 8-byte header length")
        }, error: { SafeTensorsError(file: path, field: $0, reason: $1) })
        try self.init(storage: SafeTensorsStorage(mapping: m, count: size), file: path)
    }

    /// Checks and reads a file's bytes held in memory (`name` appears in errors).
    public convenience init(bytes: [UInt8], name: String = "<memory>") throws {
        try self.init(storage: SafeTensorsStorage(copying: bytes), file: name)
    }

    init(storage: SafeTensorsStorage, file: String) throws {
        self.storage = storage
        self.file = file
        func err(_ field: String, _ reason: String) -> SafeTensorsError {
            SafeTensorsError(file: file, field: field, reason: reason)
        }
        let total = storage.count
        guard total >= 8 else { throw err("header length", "file has \(total) bytes, fewer than the 8-byte header length") }
        let n = UInt64(littleEndian: storage.base.loadUnaligned(as: UInt64.self))
        guard n <= UInt64(Self.maxHeaderBytes) else {
            throw err("header length", "\(n) bytes is larger than the \(Self.maxHeaderBytes)-byte limit")
        }
        guard n >= 2 else { throw err("header length", "\(n) bytes cannot hold a JSON object") }
        guard n <= UInt64(total - 8) else {
            throw err("header length", "\(n) bytes runs past the end of the file (\(total - 8) bytes after the length)")
        }
        let headerCount = Int(n)
        let dataOffset = 8 + headerCount
        let dataCount = total - dataOffset
        self.dataOffset = dataOffset

        let json: HeaderJSON
        do {
            json = try HeaderJSON.parse(UnsafeRawBufferPointer(start: storage.base + 8, count: headerCount))
        } catch let e as HeaderJSON.ParseError {
            throw err("header", "invalid JSON at header byte \(e.offset): \(e.reason)")
        }
        guard case .object(let members) = json else { throw err("header", "is \(json.kind), not an object") }

        var metadata: [String: String] = [:]
        var tensors: [String: SafeTensorInfo] = [:]
        var seenMetadata = false
        for (name, value) in members {
            if name == "__metadata__" {
                guard !seenMetadata else { throw err("__metadata__", "appears twice") }
                seenMetadata = true
                guard case .object(let entries) = value else { throw err("__metadata__", "is \(value.kind), not an object") }
                for (k, v) in entries {
                    guard case .string(let s) = v else { throw err("__metadata__.\(k)", "is \(v.kind), not a string") }
                    guard metadata[k] == nil else { throw err("__metadata__.\(k)", "appears twice") }
                    metadata[k] = s
                }
                continue
            }
            guard tensors[name] == nil else { throw err(name, "tensor name appears twice") }
            guard case .object(let fields) = value else { throw err(name, "is \(value.kind), not an object") }
            var dtypeField: HeaderJSON?, shapeField: HeaderJSON?, offsetsField: HeaderJSON?
            for (k, v) in fields {
                switch k {
                case "dtype": guard dtypeField == nil else { throw err("\(name).dtype", "appears twice") }; dtypeField = v
                case "shape": guard shapeField == nil else { throw err("\(name).shape", "appears twice") }; shapeField = v
                case "data_offsets": guard offsetsField == nil else { throw err("\(name).data_offsets", "appears twice") }; offsetsField = v
                default: throw err("\(name).\(k)", "unknown field")
                }
            }
            guard case .string(let dtypeName)? = dtypeField else { throw err("\(name).dtype", "missing or not a string") }
            guard let dtype = SafeTensorsDType(rawValue: dtypeName) else { throw err("\(name).dtype", "unknown dtype \(jsonQuoted(dtypeName))") }
            guard case .array(let dims)? = shapeField else { throw err("\(name).shape", "missing or not an array") }
            var shape: [Int] = []
            var elements = 1
            for d in dims {
                guard case .integer(let v) = d, v >= 0 else { throw err("\(name).shape", "dimensions must be non-negative integers") }
                let (p, o) = elements.multipliedReportingOverflow(by: v)
                guard !o, p <= total else { throw err("\(name).shape", "\(dims.count)-dimensional shape has more elements than the file has bytes") }
                elements = p
                shape.append(v)
            }
            guard case .array(let offs)? = offsetsField, offs.count == 2,
                  case .integer(let begin) = offs[0], case .integer(let end) = offs[1] else {
                throw err("\(name).data_offsets", "missing or not two integers")
            }
            guard begin >= 0, end >= 0 else { throw err("\(name).data_offsets", "negative offset") }
            guard begin <= end else { throw err("\(name).data_offsets", "reversed: begin \(begin) > end \(end)") }
            guard end <= dataCount else {
                throw err("\(name).data_offsets", "end \(end) is past the data section (\(dataCount) bytes)")
            }
            let bytes = elements * dtype.size
            guard end - begin == bytes else {
                throw err("\(name).data_offsets", "holds \(end - begin) bytes, but shape \(shape) of \(dtype) needs \(bytes)")
            }
            tensors[name] = SafeTensorInfo(name: name, dtype: dtype, shape: shape, byteRange: begin..<end)
        }
        // Overlap: after sorting by start, each non-empty tensor must begin at or after the end of
        // the previous non-empty one.
        let sorted = tensors.values.filter { !$0.byteRange.isEmpty }
            .sorted { ($0.byteRange.lowerBound, $0.name) < ($1.byteRange.lowerBound, $1.name) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.byteRange.lowerBound < a.byteRange.upperBound {
            throw err("\(b.name).data_offsets", "overlaps tensor \(jsonQuoted(a.name)) (\(b.byteRange) with \(a.byteRange))")
        }
        self.metadata = metadata
        self.tensors = tensors
    }

    // MARK: - Accessors

    /// The tensor's description, or an error naming it when it is absent.
    public func info(_ name: String) throws -> SafeTensorInfo {
        guard let t = tensors[name] else { throw SafeTensorsError(file: file, field: name, reason: "no such tensor") }
        return t
    }

    public func contains(_ name: String) -> Bool { tensors[name] != nil }
    public func shape(_ name: String) throws -> [Int] { try info(name).shape }
    public func dtype(_ name: String) throws -> SafeTensorsDType { try info(name).dtype }

    /// The tensor's raw little-endian bytes (valid while this object lives).
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let t = try info(name)
        return UnsafeRawBufferPointer(start: storage.base + dataOffset + t.byteRange.lowerBound, count: t.byteRange.count)
    }

    /// A copy of the tensor's raw bytes.
    public func bytes(_ name: String) throws -> [UInt8] { Array(try rawBytes(name)) }

    /// The tensor as floats (F32, F16, BF16 and F64 converted; other dtypes are an error).
    public func floats(_ name: String) throws -> [Float] {
        let t = try info(name)
        let raw = try rawBytes(name)
        let n = t.elementCount
        // Loads are unaligned: a file from another writer may place tensors at any byte offset.
        switch t.dtype {
        case .F32:
            return [Float](unsafeUninitializedCapacity: n) { out, c in
                if n > 0 { memcpy(out.baseAddress!, raw.baseAddress!, n * 4) }
                c = n
            }
        case .F16:
            return [Float](unsafeUninitializedCapacity: n) { out, c in
                for i in 0..<n { out[i] = halfToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
                c = n
            }
        case .BF16:
            return [Float](unsafeUninitializedCapacity: n) { out, c in
                for i in 0..<n { out[i] = bf16ToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
                c = n
            }
        case .F64:
            return (0..<n).map { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))) }
        default:
            throw SafeTensorsError(file: file, field: "\(name).dtype", reason: "is \(t.dtype), not a float type (F32, F16, BF16, F64)")
        }
    }

    /// The tensor as Int32 (I32; I64, U8 and I8 widened or narrowed exactly, else an error).
    public func int32s(_ name: String) throws -> [Int32] {
        let t = try info(name)
        let raw = try rawBytes(name)
        let n = t.elementCount
        switch t.dtype {
        case .I32:
            return (0..<n).map { Int32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
        case .I64:
            var out = [Int32](); out.reserveCapacity(n)
            for i in 0..<n {
                let v = Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
                guard let w = Int32(exactly: v) else {
                    throw SafeTensorsError(file: file, field: name, reason: "element \(i) = \(v) does not fit in Int32")
                }
                out.append(w)
            }
            return out
        case .U8: return raw.map { Int32($0) }
        case .I8: return raw.map { Int32(Int8(bitPattern: $0)) }
        default:
            throw SafeTensorsError(file: file, field: "\(name).dtype", reason: "is \(t.dtype), not an integer type (I32, I64, U8, I8)")
        }
    }

    /// The tensor as Int64 (I64 or I32).
    public func int64s(_ name: String) throws -> [Int64] {
        let t = try info(name)
        let raw = try rawBytes(name)
        switch t.dtype {
        case .I64: return (0..<t.elementCount).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
        case .I32: return try int32s(name).map { Int64($0) }
        default:
            throw SafeTensorsError(file: file, field: "\(name).dtype", reason: "is \(t.dtype), not I64 or I32")
        }
    }

    /// Checks that a tensor exists with the given shape (the error names file, tensor and both shapes).
    public func expect(_ name: String, shape expected: [Int]) throws {
        let s = try shape(name)
        guard s == expected else {
            throw SafeTensorsError(file: file, field: name, reason: "has shape \(s), expected \(expected)")
        }
    }
}
