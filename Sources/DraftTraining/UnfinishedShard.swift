import CZstd
import Shards
import Foundation

/// Records of one shard: a finished `.sds` (`ShardReader`) or the complete records at the start
/// of a `.sds.tmp` that synth-data is still writing.
public protocol RecordSource: AnyObject {
    var path: String { get }
    var header: ShardHeader { get }
    var recordCount: Int { get }
    func record(_ k: Int) throws -> SampleRecord
}

extension ShardReader: RecordSource {}

/// A read-only snapshot of an unfinished shard (`--allow-unfinished`): the records complete when
/// it was read (each zstd frame is checksummed; an incomplete last frame is ignored). The file is
/// only read, never changed, so a running synth-data is not disturbed.
public final class UnfinishedShard: RecordSource {
    public let path: String
    public let header: ShardHeader
    public let entries: [IndexEntry]
    private let bytes: [UInt8]

    public init(path: String) throws {
        self.path = path
        guard let d = FileManager.default.contents(atPath: path) else { throw TrainingError(file: path, field: "file", reason: "cannot read") }
        bytes = Array(d)
        entries = try unfinishedShardEntries(bytes, file: path)
        let json = try Self.frame(bytes, at: 24, file: path, field: "header").payload
        let dec = JSONDecoder(); dec.keyDecodingStrategy = .convertFromSnakeCase
        do { header = try dec.decode(ShardHeader.self, from: Data(json)) } catch {
            throw TrainingError(file: path, field: "header", reason: "unreadable: \(error)")
        }
    }

    public var recordCount: Int { entries.count }

    /// A SHA-256 over the header and the records' CRCs: the identity of this snapshot.
    public var identity: [UInt8] {
        var s = Checksum.SHA256()
        s.update(Array(bytes[0..<min(bytes.count, entries.first?.offset ?? bytes.count)]))
        for e in entries { s.update(withUnsafeBytes(of: e.crc.littleEndian) { Array($0) }) }
        return s.finalize()
    }

    static func frame(_ b: [UInt8], at offset: Int, file: String, field: String) throws -> (payload: [UInt8], size: Int) {
        try b.withUnsafeBytes { raw -> ([UInt8], Int) in
            guard offset < raw.count else { throw TrainingError(file: file, field: field, reason: "past the end of the file") }
            let src = raw.baseAddress! + offset, avail = raw.count - offset
            let size = ZSTD_findFrameCompressedSize(src, avail)
            guard ZSTD_isError(size) == 0 else { throw TrainingError(file: file, field: field, reason: "not a complete zstd frame") }
            let content = ZSTD_getFrameContentSize(src, size)
            guard content != ZSTD_CONTENTSIZE_ERROR, content != ZSTD_CONTENTSIZE_UNKNOWN, content < (1 << 31) else {
                throw TrainingError(file: file, field: field, reason: "frame without a usable content size")
            }
            var out = [UInt8](repeating: 0, count: Int(content))
            let n = out.withUnsafeMutableBytes { ZSTD_decompress($0.baseAddress, Int(content), src, size) }
            guard ZSTD_isError(n) == 0, n == Int(content) else { throw TrainingError(file: file, field: field, reason: "zstd frame does not decompress") }
            return (out, size)
        }
    }

    public func record(_ k: Int) throws -> SampleRecord {
        let e = entries[k]
        let p = try Self.frame(bytes, at: e.offset, file: path, field: "record[\(k)]").payload
        return try SampleRecord.decode(p, file: path, field: "record[\(k)]", expectedEncoding: header.hidden.encoding, expectedWidth: header.hidden.width,
                                      expectedAuxLayers: header.hidden.auxLayers?.count ?? 0)
    }
}
