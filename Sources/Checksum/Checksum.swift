import Crypto
import CZlib
import Foundation

/// CRC-32 (IEEE 802.3, the zlib/PNG polynomial), from zlib.
public enum CRC32 {
    /// The CRC of `bytes`, continuing from `seed` (the CRC of the bytes before them; 0 to start).
    public static func checksum<C: Collection>(_ bytes: C, seed: UInt32 = 0) -> UInt32 where C.Element == UInt8 {
        if let r = bytes.withContiguousStorageIfAvailable({ update(seed, $0) }) { return r }
        return Array(bytes).withUnsafeBufferPointer { update(seed, $0) }
    }

    private static func update(_ seed: UInt32, _ buf: UnsafeBufferPointer<UInt8>) -> UInt32 {
        // zlib takes the length as uInt (32 bits): feed large buffers in pieces.
        var crc = UInt(seed)
        var p = buf.baseAddress
        var left = buf.count
        while left > 0, let base = p {
            let n = min(left, 1 << 30)
            crc = CZlib.crc32(crc, base, uInt(n))
            p = base + n
            left -= n
        }
        return UInt32(truncatingIfNeeded: crc)
    }
}

/// SHA-256, from swift-crypto, with the small API the project uses (hex digests of bytes and files).
public struct SHA256 {
    private var hasher = Crypto.SHA256()

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }

    public mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if bytes.withContiguousStorageIfAvailable({ hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }) == nil {
            hasher.update(data: Array(bytes))
        }
    }

    /// The 32-byte digest.
    public func finalize() -> [UInt8] { Array(hasher.finalize()) }

    public static func hash<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        var h = SHA256()
        h.update(bytes)
        return h.finalize()
    }

    /// Lower-case hex of the SHA-256 of `bytes`. (Given a digest, it hashes the digest again: the
    /// data manifests and cache keys were defined that way, so it stays.)
    public static func hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        hexString(hash(bytes))
    }

    public static func hexString(_ digest: [UInt8]) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }

    /// The hex digest of a file, read in 4 MiB pieces.
    public static func hexOfFile(_ path: String) throws -> String {
        guard let fh = FileHandle(forReadingAtPath: path) else { throw ChecksumFileError(path: path) }
        defer { try? fh.close() }
        var h = SHA256()
        while let chunk = try fh.read(upToCount: 1 << 22), !chunk.isEmpty {
            chunk.withUnsafeBytes { h.update($0) }
        }
        return hexString(h.finalize())
    }
}

/// A file that could not be opened for hashing.
public struct ChecksumFileError: Error, CustomStringConvertible {
    public var path: String
    public var description: String { "\(path): cannot open the file to hash it" }
}
