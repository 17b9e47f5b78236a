#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GGUF

/// Appends records to `shard-….sds.tmp` and finishes it into `shard-….sds`.
public final class ShardWriter {
    public let finalPath: String
    public let tmpPath: String
    public let header: ShardHeader
    /// Records kept from an interrupted run (0 for a fresh file).
    public let resumedRecords: Int
    /// Bytes of an incomplete last frame cut off when resuming.
    public let discardedBytes: Int
    public private(set) var entries: [IndexEntry] = []
    private var fd: Int32
    private var offset: Int
    private let compressor: Zstd.Compressor
    private let headerFrameCRC: UInt32
    private let durable: Bool

    /// The first bytes of every shard of this run: prologue and header frame.
    static func prefix(header: ShardHeader, compressor: Zstd.Compressor) -> [UInt8] {
        ShardLayout.prologue() + compressor.compress(header.jsonBytes())
    }

    /// The prologue and header frame a shard with this header starts with.
    public static func prefix(header: ShardHeader) -> [UInt8] {
        prefix(header: header, compressor: Zstd.Compressor(level: header.zstdLevel))
    }

    /// Opens `finalPath + ".tmp"`: a new file, or an interrupted one whose complete records are kept.
    /// Refuses a file written with other settings or with a damaged record, saying how to recover.
    /// `durable: false` skips the fsyncs of `finish` (scratch data, tests).
    public init(path finalPath: String, header: ShardHeader, durable: Bool = true) throws {
        self.finalPath = finalPath
        self.durable = durable
        tmpPath = finalPath + ".tmp"
        self.header = header
        compressor = Zstd.Compressor(level: header.zstdLevel)
        let prefix = Self.prefix(header: header, compressor: compressor)
        var headerCRC = CRC32.checksum(prefix[ShardLayout.prologueSize...])
        let tmp = tmpPath

        // One writer per shard: a second run on the same folder (a duplicated job, a rerun while
        // the first still runs) would write over the first one's records. The lock lives as long
        // as this process holds the file open, so a killed writer never leaves it behind.
        let lockedFD = open(tmp, O_WRONLY | O_CREAT, 0o644)
        guard lockedFD >= 0 else { throw DataError(file: tmp, field: "file", reason: "cannot create: \(String(cString: strerror(errno)))") }
        var opened = false
        defer { if !opened { close(lockedFD) } }
        guard flock(lockedFD, LOCK_EX | LOCK_NB) == 0 else {
            throw DataError(file: tmp, field: "file", reason: "another process is writing this shard (it holds the file's lock): let it finish or stop it, then rerun")
        }

        var keep = 0
        var resumed: [IndexEntry] = []
        var discarded = 0
        if access(tmp, F_OK) == 0 {
            let b = try readWholeFile(tmp)
            let startOver = "delete it (rm \(tmp)) to write this shard from the beginning"
            if b.count < prefix.count && Array(prefix[0..<b.count]) == b {
                // Killed before the header was complete: nothing to keep.
                discarded = b.count
            } else {
                let dctx = Zstd.Decompressor()
                let json: [UInt8], headerSize: Int
                do {
                    try ShardParser.checkPrologue(b, file: tmp)
                    (_, json, headerSize) = try ShardParser.header(b, file: tmp, dctx: dctx)
                } catch var e as DataError {
                    e.reason += "; this unfinished shard is not usable: \(startOver)"
                    throw e
                }
                guard json == header.jsonBytes() else {
                    let other = try? jsonDecoder().decode(ShardHeader.self, from: Data(json))
                    let diff = other.map { $0.differences(from: header) } ?? []
                    throw DataError(file: tmp, field: "header", offset: ShardLayout.prologueSize,
                                     reason: "written with different settings (\(diff.isEmpty ? "header bytes" : diff.joined(separator: ", ")) differ); rerun with the arguments it was made with, or \(startOver)")
                }
                // The same settings; the header frame's bytes may come from another zstd build: keep them.
                let start = ShardLayout.prologueSize + headerSize
                headerCRC = CRC32.checksum(b[ShardLayout.prologueSize..<start])
                let s = ShardParser.scan(b, from: start, header: header, file: tmp, dctx: dctx)
                switch s.end {
                case .end, .truncated, .footer:
                    resumed = s.entries
                    keep = s.endOffset
                    discarded = b.count - s.endOffset
                case .corrupt(let e):
                    let n = s.entries.count
                    throw DataError(file: tmp, field: e.field, offset: e.offset,
                                     reason: "\(e.reason). Refusing to append to a corrupt shard. The \(n) record\(n == 1 ? "" : "s") before byte \(s.endOffset) \(n == 1 ? "is" : "are") intact: to keep \(n == 1 ? "it" : "them") run `truncate -s \(s.endOffset) \(tmp)` and rerun the same command; or \(startOver)")
                }
            }
        }
        headerFrameCRC = headerCRC

        fd = lockedFD
        opened = true
        entries = resumed
        resumedRecords = resumed.count
        discardedBytes = discarded
        if keep == 0 {
            guard ftruncate(fd, 0) == 0 else { throw DataError(file: tmp, field: "file", reason: "cannot truncate: \(String(cString: strerror(errno)))") }
            offset = 0
            try writeAll(prefix)
        } else {
            guard ftruncate(fd, off_t(keep)) == 0, lseek(fd, off_t(keep), SEEK_SET) == off_t(keep) else {
                throw DataError(file: tmp, field: "file", reason: "cannot cut the unfinished record: \(String(cString: strerror(errno)))")
            }
            offset = keep
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Index of the next sample this shard expects.
    public var nextSampleIndex: Int { header.shard.index + entries.count * header.shard.count }

    private func writeAll(_ bytes: [UInt8]) throws {
        var done = 0
        try bytes.withUnsafeBytes { buf in
            while done < buf.count {
                let n = write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 { if errno == EINTR { continue }; throw DataError(file: tmpPath, field: "file", reason: "write failed: \(String(cString: strerror(errno)))") }
                done += n
            }
        }
        offset += bytes.count
    }

    /// Appends one record (one write call). Returns the frame's size.
    @discardableResult
    public func append(_ r: SampleRecord) throws -> Int {
        guard r.index == nextSampleIndex else {
            throw DataError(file: tmpPath, field: "record", reason: "sample \(r.index) appended where sample \(nextSampleIndex) belongs")
        }
        if header.hidden.encoding != .none {
            precondition(r.hidden.encoding == header.hidden.encoding && r.hidden.width == header.hidden.width, "record's hidden states do not match the header")
        }
        precondition(r.auxHidden.count == (header.hidden.auxLayers?.count ?? 0), "record's auxiliary layer states do not match the header")
        let frame = compressor.compress(r.payload())
        let at = offset
        try writeAll(frame)
        entries.append(IndexEntry(sampleIndex: r.index, offset: at, frameSize: frame.count, crc: CRC32.checksum(frame),
                                  tokenCount: r.tokens.count, answerTokens: r.answerTokenCount))
        return frame.count
    }

    /// Appends index and trailer, syncs, renames the .tmp to the final name. Returns the file size.
    @discardableResult
    public func finish() throws -> Int {
        var ix = ByteWriter()
        ix.bytes(ShardLayout.indexMagic); ix.u32(UInt32(ShardLayout.indexEntrySize)); ix.u64(UInt64(entries.count))
        for e in entries {
            ix.u64(UInt64(e.sampleIndex)); ix.u64(UInt64(e.offset)); ix.u32(UInt32(e.frameSize)); ix.u32(e.crc)
            ix.u32(UInt32(e.tokenCount)); ix.u32(UInt32(e.answerTokens))
        }
        let indexFrame = compressor.compress(ix.data)
        let indexOffset = offset
        try writeAll(indexFrame)
        try writeAll(ShardLayout.trailer(indexOffset: indexOffset, recordCount: entries.count,
                                         headerCRC: headerFrameCRC, indexCRC: CRC32.checksum(indexFrame)))
        if durable {
            guard fsync(fd) == 0 else { throw DataError(file: tmpPath, field: "file", reason: "fsync failed: \(String(cString: strerror(errno)))") }
        }
        close(fd); fd = -1
        guard rename(tmpPath, finalPath) == 0 else {
            throw DataError(file: finalPath, field: "file", reason: "cannot rename \(tmpPath) to it: \(String(cString: strerror(errno)))")
        }
        if durable { syncDirectory(of: finalPath) }
        return offset
    }
}

func syncDirectory(of path: String) {
    let dir = (path as NSString).deletingLastPathComponent
    let d = open(dir.isEmpty ? "." : dir, O_RDONLY)
    if d >= 0 { _ = fsync(d); close(d) }
}
