#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a GGUF (version 3) file: metadata in insertion order, tensors laid out at the
/// alignment. Used for checkpoints, demo towers and test files.
public struct GGUFWriter {
    public var metadata: [(key: String, value: GGUFValue)] = []
    public var tensors: [(name: String, shape: [Int], typeID: UInt32, bytes: [UInt8])] = []
    public var alignment = 32

    public init() {}

    public mutating func set(_ key: String, _ value: GGUFValue) {
        if let i = metadata.firstIndex(where: { $0.key == key }) { metadata[i].value = value } else { metadata.append((key, value)) }
    }

    /// Adds a tensor; `shape` is in ggml order (row length first).
    public mutating func addTensor(_ name: String, shape: [Int], typeID: UInt32, bytes: [UInt8]) {
        tensors.append((name, shape, typeID, bytes))
    }

    public mutating func addTensor(_ name: String, shape: [Int], floats: [Float]) {
        var b = [UInt8](repeating: 0, count: floats.count * 4)
        b.withUnsafeMutableBytes { dst in floats.withUnsafeBytes { dst.copyMemory(from: $0) } }
        addTensor(name, shape: shape, typeID: 0, bytes: b)
    }

    public func serialize() -> [UInt8] {
        var out: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func str(_ s: String) { let u = Array(s.utf8); u64(UInt64(u.count)); out.append(contentsOf: u) }
        func val(_ v: GGUFValue) {
            switch v {
            case .uint8(let x): out.append(x)
            case .int8(let x): out.append(UInt8(bitPattern: x))
            case .uint16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .int16(let x): withUnsafeBytes(of: x.littleEndian) { out.append(contentsOf: $0) }
            case .uint32(let x): u32(x)
            case .int32(let x): u32(UInt32(bitPattern: x))
            case .uint64(let x): u64(x)
            case .int64(let x): u64(UInt64(bitPattern: x))
            case .float32(let x): u32(x.bitPattern)
            case .float64(let x): u64(x.bitPattern)
            case .bool(let x): out.append(x ? 1 : 0)
            case .string(let s): str(s)
            case .array(let t, let items):
                u32(t.rawValue); u64(UInt64(items.count))
                for i in items { val(i) }
            }
        }
        u32(0x4655_4747); u32(3)
        u64(UInt64(tensors.count)); u64(UInt64(metadata.count))
        for (k, v) in metadata { str(k); u32(v.type.rawValue); val(v) }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset = (offset + t.bytes.count + alignment - 1) / alignment * alignment
        }
        for (t, off) in zip(tensors, offsets) {
            str(t.name); u32(UInt32(t.shape.count))
            for d in t.shape { u64(UInt64(d)) }
            u32(t.typeID); u64(UInt64(off))
        }
        let pad = (alignment - out.count % alignment) % alignment
        out.append(contentsOf: repeatElement(0, count: pad))
        let start = out.count
        for (t, off) in zip(tensors, offsets) {
            out.append(contentsOf: repeatElement(0, count: start + off - out.count))
            out.append(contentsOf: t.bytes)
        }
        return out
    }

    /// Writes through a temporary file and a rename, so a reader never sees half a file.
    public func write(to path: String) throws {
        try writeAtomically(serialize(), to: path)
    }
}

public struct FileWriteError: Error, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Writes `bytes` to `path` through `path.tmp-PID` and `rename`, so that an interrupted write
/// leaves either the old file or the new one, never a torn one.
public func writeAtomically(_ bytes: [UInt8], to path: String) throws {
    let tmp = "\(path).tmp-\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw FileWriteError(path: path, reason: "cannot create: \(String(cString: strerror(errno)))") }
    var written = 0
    let ok: Bool = bytes.withUnsafeBytes { buf in
        while written < buf.count {
            let n = write(fd, buf.baseAddress! + written, buf.count - written)
            if n <= 0 { if errno == EINTR { continue }; return false }
            written += n
        }
        return fsync(fd) == 0
    }
    let err = String(cString: strerror(errno))
    close(fd)
    guard ok, rename(tmp, path) == 0 else {
        unlink(tmp)
        throw FileWriteError(path: path, reason: "cannot write: \(err)")
    }
}
