import Foundation
import Kernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a safetensors file. The bytes are deterministic: header keys sorted, no spaces, the
/// header padded with spaces so the data section starts 8-byte aligned, and tensors laid out
/// contiguously (as the format requires: no holes) ordered by element size, largest first, then
/// by name, so every tensor starts at a multiple of its own element size.
public struct SafeTensorsWriter: Sendable {
    public var metadata: [String: String] = [:]
    private var entries: [String: (dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8])] = [:]

    public init(metadata: [String: String] = [:]) { self.metadata = metadata }

    public var names: [String] { entries.keys.sorted() }

    /// Adds raw little-endian bytes; `bytes.count` must match shape × dtype size.
    public mutating func add(_ name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) throws {
        func err(_ r: String) -> SafeTensorsError { SafeTensorsError(file: "<writer>", field: name, reason: r) }
        guard name != "__metadata__", !name.isEmpty else { throw err("reserved or empty tensor name") }
        guard entries[name] == nil else { throw err("tensor name added twice") }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw err("negative dimension in shape \(shape)") }
        var n = 1
        for d in shape {
            let (p, o) = n.multipliedReportingOverflow(by: d)
            guard !o else { throw err("shape \(shape) overflows") }
            n = p
        }
        guard n * dtype.size == bytes.count else {
            throw err("\(bytes.count) bytes given for shape \(shape) of \(dtype) (needs \(n * dtype.size))")
        }
        entries[name] = (dtype, shape, bytes)
    }

    /// Adds floats stored as F32, F16 or BF16 (round to nearest even).
    public mutating func add(_ name: String, floats: [Float], shape: [Int], as dtype: SafeTensorsDType = .F32) throws {
        var bytes: [UInt8]
        switch dtype {
        case .F32:
            bytes = [UInt8](repeating: 0, count: floats.count * 4)
            bytes.withUnsafeMutableBytes { b in
                for (i, f) in floats.enumerated() { b.storeBytes(of: f.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self) }
            }
        case .F16, .BF16:
            bytes = [UInt8](repeating: 0, count: floats.count * 2)
            bytes.withUnsafeMutableBytes { b in
                for (i, f) in floats.enumerated() {
                    let h = dtype == .F16 ? floatToHalf(f) : floatToBF16(f)
                    b.storeBytes(of: h.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
                }
            }
        default:
            throw SafeTensorsError(file: "<writer>", field: name, reason: "floats can be stored as F32, F16 or BF16, not \(dtype)")
        }
        try add(name, dtype: dtype, shape: shape, bytes: bytes)
    }

    public mutating func add(_ name: String, int32s: [Int32], shape: [Int]) throws {
        var bytes = [UInt8](repeating: 0, count: int32s.count * 4)
        bytes.withUnsafeMutableBytes { b in
            for (i, v) in int32s.enumerated() { b.storeBytes(of: v.littleEndian, toByteOffset: 4 * i, as: Int32.self) }
        }
        try add(name, dtype: .I32, shape: shape, bytes: bytes)
    }

    public mutating func add(_ name: String, int64s: [Int64], shape: [Int]) throws {
        var bytes = [UInt8](repeating: 0, count: int64s.count * 8)
        bytes.withUnsafeMutableBytes { b in
            for (i, v) in int64s.enumerated() { b.storeBytes(of: v.littleEndian, toByteOffset: 8 * i, as: Int64.self) }
        }
        try add(name, dtype: .I64, shape: shape, bytes: bytes)
    }

    public mutating func add(_ name: String, uint8s: [UInt8], shape: [Int]) throws {
        try add(name, dtype: .U8, shape: shape, bytes: uint8s)
    }

    /// The whole file.
    public func serialize() -> [UInt8] {
        let order = entries.keys.sorted { a, b in
            let sa = entries[a]!.dtype.size, sb = entries[b]!.dtype.size
            return sa != sb ? sa > sb : Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8))
        }
        var offsets: [String: (Int, Int)] = [:]
        var cursor = 0
        for name in order {
            let n = entries[name]!.bytes.count
            offsets[name] = (cursor, cursor + n)
            cursor += n
        }
        // Keys sorted by their UTF-8 bytes, so the header does not depend on dictionary order.
        func byBytes(_ a: String, _ b: String) -> Bool { Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8)) }
        var parts: [(String, String)] = []
        if !metadata.isEmpty {
            let m = metadata.keys.sorted(by: byBytes).map { "\(jsonQuoted($0)):\(jsonQuoted(metadata[$0]!))" }
            parts.append(("__metadata__", "{" + m.joined(separator: ",") + "}"))
        }
        for name in entries.keys {
            let e = entries[name]!, o = offsets[name]!
            let shape = e.shape.map(String.init).joined(separator: ",")
            parts.append((name, "{\"data_offsets\":[\(o.0),\(o.1)],\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)]}"))
        }
        parts.sort { byBytes($0.0, $1.0) }
        var header = Array(("{" + parts.map { "\(jsonQuoted($0.0)):\($0.1)" }.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + cursor)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for name in order { out.append(contentsOf: entries[name]!.bytes) }
        return out
    }

    /// Writes the file through a temporary file in the same folder, flushed and then renamed
    /// over `path`, so a reader never sees a half-written checkpoint.
    public func write(to path: String) throws {
        let bytes = serialize()
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        func fail(_ what: String) -> SafeTensorsError {
            SafeTensorsError(file: path, field: "file", reason: "\(what): \(String(cString: strerror(errno)))")
        }
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o644)
        guard fd >= 0 else { throw fail("cannot create temporary file \(tmp)") }
        var ok = false
        defer { if !ok { unlink(tmp) } }
        var written = 0
        let writeError: SafeTensorsError? = bytes.withUnsafeBytes { b in
            while written < b.count {
                let r = systemWrite(fd, b.baseAddress! + written, b.count - written)
                if r < 0 { if errno == EINTR { continue }; return fail("write failed") }
                written += r
            }
            return nil
        }
        if let e = writeError { close(fd); throw e }
        guard fsync(fd) == 0 else { let e = fail("fsync failed"); close(fd); throw e }
        guard close(fd) == 0 else { throw fail("close failed") }
        guard rename(tmp, path) == 0 else { throw fail("cannot rename \(tmp) to the destination") }
        ok = true
    }
}

/// `write(2)`, named apart from the writer's own `write(to:)`.
@inline(__always)
private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, p, n)
    #else
    return Darwin.write(fd, p, n)
    #endif
}
