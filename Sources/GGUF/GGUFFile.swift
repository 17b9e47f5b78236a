#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Kernels

/// One tensor of a GGUF file: where its packed bytes live in the mapping, never copied.
public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// ggml order: `shape[0]` is the fastest-varying dimension (a row's length for matrices).
    public let shape: [Int]
    public let type: GGMLTypeInfo
    /// Offset relative to the start of the data section, as stored.
    public let relativeOffset: Int
    /// Absolute offset in the file.
    public let fileOffset: Int
    public let byteCount: Int

    public var elementCount: Int { shape.reduce(1, *) }
    /// Rows of a matrix view: product of all dimensions but the first.
    public var rowCount: Int { shape.dropFirst().reduce(1, *) }
    public var rowLength: Int { shape.first ?? 1 }
}

/// A GGUF file (versions 2 and 3) mapped read-only into memory. Parsing checks every length,
/// count and offset against the file's size, so a broken file throws a `GGUFError` naming the
/// field instead of reading out of bounds.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    /// Metadata in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Absolute offset of the data section.
    public let dataOffset: Int
    public let fileSize: Int

    private let base: UnsafeRawPointer
    private let mapped: Bool
    private let index: [String: Int]
    private let tensorIndex: [String: Int]

    /// Maps and parses `path`.
    public convenience init(path: String) throws {
        let (p, size) = try MappedFile.map(path, minimumSize: 1,
                                           tooSmall: { _ in GGUFError(file: path, field: "magic", reason: "file is empty") },
                                           error: { GGUFError(file: path, field: $0, reason: $1) })
        do {
            try self.init(path: path, base: p, size: size, mapped: true)
        } catch {
            munmap(UnsafeMutableRawPointer(mutating: p), size)
            throw error
        }
    }

    /// Parses bytes already in memory (tests, embedded files). The bytes are copied once.
    public convenience init(bytes: [UInt8], name: String = "<memory>") throws {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: bytes.count) } }
        do {
            try self.init(path: name, base: UnsafeRawPointer(p), size: bytes.count, mapped: false)
        } catch {
            p.deallocate()
            throw error
        }
    }

    private init(path: String, base: UnsafeRawPointer, size: Int, mapped: Bool) throws {
        self.path = path
        self.base = base
        self.fileSize = size
        self.mapped = mapped
        var r = Cursor(base: base, size: size, file: path)

        let magic = try r.u32("magic")
        guard magic == 0x4655_4747 else {  // "GGUF" little-endian
            throw GGUFError(file: path, field: "magic", reason: "not a GGUF file (magic 0x\(String(magic, radix: 16)))")
        }
        version = try r.u32("version")
        guard version == 2 || version == 3 else {
            throw GGUFError(file: path, field: "version", reason: "unsupported GGUF version \(version) (2 and 3 are)")
        }
        let tensorCount = try r.count("tensor_count", minimumSize: 8 + 4 + 4 + 8)
        let kvCount = try r.count("metadata_kv_count", minimumSize: 8 + 4 + 1)

        var md: [(key: String, value: GGUFValue)] = []
        md.reserveCapacity(kvCount)
        var idx: [String: Int] = [:]
        for i in 0..<kvCount {
            let key = try r.string("metadata[\(i)].key")
            guard idx[key] == nil else {
                throw GGUFError(file: path, field: key, reason: "duplicate metadata key")
            }
            let rawType = try r.u32("\(key).type")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw GGUFError(file: path, field: key, reason: "unknown metadata value type \(rawType)")
            }
            let value = try r.value(type, field: key, depth: 0)
            idx[key] = md.count
            md.append((key, value))
        }
        metadata = md
        index = idx

        var align = 32
        if let i = idx["general.alignment"] {
            guard case .uint32(let a) = md[i].value else {
                throw GGUFError(file: path, field: "general.alignment", reason: "must be u32, found \(md[i].value.type)")
            }
            guard a > 0, a & (a - 1) == 0 else {
                throw GGUFError(file: path, field: "general.alignment", reason: "must be a power of two, found \(a)")
            }
            align = Int(a)
        }
        alignment = align

        struct Raw { var name: String; var shape: [Int]; var type: GGMLTypeInfo; var offset: Int; var bytes: Int }
        var raws: [Raw] = []
        raws.reserveCapacity(tensorCount)
        var tIdx: [String: Int] = [:]
        for i in 0..<tensorCount {
            let name = try r.string("tensor[\(i)].name")
            let field = "tensor '\(name)'"
            guard tIdx[name] == nil else { throw GGUFError(file: path, field: field, reason: "duplicate tensor name") }
            let nDims = try r.u32("\(field).n_dims")
            guard (1...4).contains(nDims) else {
                throw GGUFError(file: path, field: "\(field).n_dims", reason: "must be 1...4, found \(nDims)")
            }
            var shape: [Int] = []
            var elements = 1
            for d in 0..<Int(nDims) {
                let v = try r.u64("\(field).ne[\(d)]")
                guard v > 0, v <= UInt64(Int32.max) else {
                    throw GGUFError(file: path, field: "\(field).ne[\(d)]", reason: "dimension \(v) out of range")
                }
                shape.append(Int(v))
                let (e, o) = elements.multipliedReportingOverflow(by: Int(v))
                guard !o, e <= size * 64 else {
                    throw GGUFError(file: path, field: "\(field).shape", reason: "element count overflows the file")
                }
                elements = e
            }
            let typeID = try r.u32("\(field).type")
            guard let info = GGMLTypeInfo.lookup(typeID) else {
                throw GGUFError(file: path, field: "\(field).type", reason: "unknown tensor type \(typeID)")
            }
            guard shape[0] % info.blockSize == 0 else {
                throw GGUFError(file: path, field: "\(field).ne[0]",
                                reason: "\(shape[0]) is not a multiple of \(info.name)'s block size \(info.blockSize)")
            }
            let bytes = elements / info.blockSize * info.blockBytes
            let off = try r.u64("\(field).offset")
            guard off <= UInt64(size), Int(off) % align == 0 else {
                throw GGUFError(file: path, field: "\(field).offset",
                                reason: "offset \(off) is out of range or not a multiple of the alignment \(align)")
            }
            tIdx[name] = raws.count
            raws.append(Raw(name: name, shape: shape, type: info, offset: Int(off), bytes: bytes))
        }
        tensorIndex = tIdx

        // The data section starts at the next multiple of the alignment after the tensor infos.
        let start = (r.offset + align - 1) / align * align
        guard start <= size || raws.isEmpty else {
            throw GGUFError(file: path, field: "data", reason: "data section starts past the end of the file (truncated)")
        }
        dataOffset = start
        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(raws.count)
        for t in raws {
            let begin = start + t.offset
            guard begin <= size, t.bytes <= size - begin else {
                throw GGUFError(file: path, field: "tensor '\(t.name)'.data",
                                reason: "\(t.bytes) bytes at offset \(begin) run past the end of the file (\(size) bytes; truncated?)")
            }
            infos.append(GGUFTensorInfo(name: t.name, shape: t.shape, type: t.type, relativeOffset: t.offset,
                                        fileOffset: begin, byteCount: t.bytes))
        }
        tensors = infos
    }

    deinit {
        if mapped { munmap(UnsafeMutableRawPointer(mutating: base), fileSize) } else { base.deallocate() }
    }

    // MARK: metadata

    public subscript(key: String) -> GGUFValue? { index[key].map { metadata[$0].value } }

    public func string(_ key: String) throws -> String {
        guard let v = self[key] else { throw missing(key) }
        guard let s = v.stringValue else { throw wrongType(key, v, "string") }
        return s
    }

    public func int(_ key: String) throws -> Int {
        guard let v = self[key] else { throw missing(key) }
        guard let i = v.intValue else { throw wrongType(key, v, "integer") }
        return i
    }

    public func double(_ key: String) throws -> Double {
        guard let v = self[key] else { throw missing(key) }
        guard let d = v.doubleValue else { throw wrongType(key, v, "number") }
        return d
    }

    public func stringArray(_ key: String) throws -> [String] {
        guard let v = self[key] else { throw missing(key) }
        guard let a = v.arrayValue else { throw wrongType(key, v, "array of strings") }
        return try a.map { guard let s = $0.stringValue else { throw wrongType(key, v, "array of strings") }; return s }
    }

    public func intArray(_ key: String) throws -> [Int] {
        guard let v = self[key] else { throw missing(key) }
        guard let a = v.arrayValue else { throw wrongType(key, v, "array of integers") }
        return try a.map { guard let i = $0.intValue else { throw wrongType(key, v, "array of integers") }; return i }
    }

    public func missing(_ key: String) -> GGUFError {
        GGUFError(file: path, field: key, reason: "missing")
    }

    private func wrongType(_ key: String, _ v: GGUFValue, _ want: String) -> GGUFError {
        GGUFError(file: path, field: key, reason: "expected \(want), found \(v.type)")
    }

    // MARK: tensors

    public func tensorInfo(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// Pointer to a tensor's packed bytes inside the mapping; valid while this object lives.
    public func data(of t: GGUFTensorInfo) -> UnsafeRawPointer { base + t.fileOffset }
}

/// Bounds-checked little-endian reader over the mapping.
private struct Cursor {
    let base: UnsafeRawPointer
    let size: Int
    let file: String
    var offset = 0

    mutating func take(_ n: Int, _ field: String) throws -> UnsafeRawPointer {
        guard n >= 0, n <= size - offset else {
            throw GGUFError(file: file, field: field, reason: "needs \(n) bytes at offset \(offset), file has \(size) (truncated?)")
        }
        defer { offset += n }
        return base + offset
    }

    mutating func u32(_ f: String) throws -> UInt32 { UInt32(littleEndian: try take(4, f).loadUnaligned(as: UInt32.self)) }
    mutating func u64(_ f: String) throws -> UInt64 { UInt64(littleEndian: try take(8, f).loadUnaligned(as: UInt64.self)) }

    /// A u64 count that must be satisfiable by what is left of the file.
    mutating func count(_ f: String, minimumSize: Int) throws -> Int {
        let n = try u64(f)
        let left = size - offset
        guard n <= UInt64(left / max(minimumSize, 1)) else {
            throw GGUFError(file: file, field: f, reason: "count \(n) cannot fit in the \(left) bytes left")
        }
        return Int(n)
    }

    mutating func string(_ f: String) throws -> String {
        let n = try count("\(f) length", minimumSize: 1)
        let p = try take(n, f)
        // Invalid UTF-8 is repaired rather than rejected: tokens of byte-level vocabularies are valid, and a
        // slightly wrong name is more useful in an error message than a refusal.
        return String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self)
    }

    mutating func value(_ t: GGUFValueType, field f: String, depth: Int) throws -> GGUFValue {
        switch t {
        case .uint8: return .uint8(try take(1, f).load(as: UInt8.self))
        case .int8: return .int8(try take(1, f).load(as: Int8.self))
        case .uint16: return .uint16(UInt16(littleEndian: try take(2, f).loadUnaligned(as: UInt16.self)))
        case .int16: return .int16(Int16(littleEndian: try take(2, f).loadUnaligned(as: Int16.self)))
        case .uint32: return .uint32(try u32(f))
        case .int32: return .int32(Int32(bitPattern: try u32(f)))
        case .uint64: return .uint64(try u64(f))
        case .int64: return .int64(Int64(bitPattern: try u64(f)))
        case .float32: return .float32(Float(bitPattern: try u32(f)))
        case .float64: return .float64(Double(bitPattern: try u64(f)))
        case .bool:
            let b = try take(1, f).load(as: UInt8.self)
            guard b <= 1 else { throw GGUFError(file: file, field: f, reason: "bool byte must be 0 or 1, found \(b)") }
            return .bool(b == 1)
        case .string: return .string(try string(f))
        case .array:
            guard depth < 8 else { throw GGUFError(file: file, field: f, reason: "arrays nested deeper than 8") }
            let raw = try u32("\(f) element type")
            guard let et = GGUFValueType(rawValue: raw) else {
                throw GGUFError(file: file, field: f, reason: "unknown array element type \(raw)")
            }
            let n = try count("\(f) count", minimumSize: et.minimumSize)
            var items: [GGUFValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n { items.append(try value(et, field: f, depth: depth + 1)) }
            return .array(elementType: et, items)
        }
    }
}
