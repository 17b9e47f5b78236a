#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GGUF

/// One entry of a shard's index (see the layout in ShardFormat.swift).
public struct IndexEntry: Equatable, Sendable {
    public var sampleIndex: Int
    public var offset: Int
    public var frameSize: Int
    public var crc: UInt32
    public var tokenCount: Int
    public var answerTokens: Int
}

/// Reads a file whole. Errors name the file.
func readWholeFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw DataError(file: path, field: "file", reason: "cannot open: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw DataError(file: path, field: "file", reason: "cannot stat: \(String(cString: strerror(errno)))") }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw DataError(file: path, field: "file", reason: "not a regular file") }
    let size = Int(st.st_size)
    var out = [UInt8](repeating: 0, count: size)
    var got = 0
    while got < size {
        let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, size - got) }
        if n < 0 { if errno == EINTR { continue }; throw DataError(file: path, field: "file", reason: "read failed: \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        got += n
    }
    if got < size { out.removeSubrange(got...) }
    return out
}

/// The pieces of a shard and the checks on them, shared by the reader, `data verify` and resume.
enum ShardParser {
    /// Checks the 24-byte prologue.
    static func checkPrologue(_ b: [UInt8], file: String) throws {
        guard b.count >= ShardLayout.prologueSize else {
            throw DataError(file: file, field: "prologue", offset: 0, reason: "the file has \(b.count) bytes, fewer than the \(ShardLayout.prologueSize)-byte prologue")
        }
        var r = ByteReader(bytes: Array(b[0..<ShardLayout.prologueSize]), file: file, field: "prologue", base: 0)
        let skip = try r.u32("magic")
        let size = try r.u32("size")
        let magic = try r.take(8, "magic")
        guard skip == ShardLayout.prologueMagic, size == 16, magic == ShardLayout.fileMagic else {
            throw DataError(file: file, field: "prologue.magic", offset: 0, reason: "not a specdec shard (bad magic number)")
        }
        let version = try r.u32("version")
        guard version == ShardLayout.version else {
            throw DataError(file: file, field: "prologue.version", offset: 16,
                             reason: "unsupported shard version \(version) (this specdec reads version \(ShardLayout.version))")
        }
        let crc = try r.u32("crc")
        guard crc == CRC32.checksum(b[0..<20]) else {
            throw DataError(file: file, field: "prologue.crc", offset: 20, reason: "CRC-32 mismatch")
        }
    }

    enum FrameFailure: Error { case truncated, corrupt(String) }

    /// The zstd frame at `offset`: its decompressed payload and its size in the file.
    static func frame(_ b: [UInt8], at offset: Int, dctx: Zstd.Decompressor) -> Result<(payload: [UInt8], size: Int), FrameFailure> {
        guard offset <= b.count else { return .failure(.truncated) }
        return b.withUnsafeBytes { all -> Result<(payload: [UInt8], size: Int), FrameFailure> in
            let rest = UnsafeRawBufferPointer(rebasing: all[offset...])
            let size: Int
            switch Zstd.frameSize(rest) {
            case .success(let s): size = s
            case .failure(.truncated): return .failure(.truncated)
            case .failure(.corrupt(let why)): return .failure(.corrupt(why))
            }
            switch dctx.decompressFrame(UnsafeRawBufferPointer(rebasing: rest[0..<size])) {
            case .success(let p): return .success((p, size))
            case .failure(.truncated): return .failure(.truncated)
            case .failure(.corrupt(let why)): return .failure(.corrupt(why))
            }
        }
    }

    /// Reads the header frame after the prologue; returns the header, its raw JSON and the frame's size.
    static func header(_ b: [UInt8], file: String, dctx: Zstd.Decompressor) throws -> (ShardHeader, json: [UInt8], frameSize: Int) {
        let at = ShardLayout.prologueSize
        switch frame(b, at: at, dctx: dctx) {
        case .failure(.truncated):
            throw DataError(file: file, field: "header", offset: at, reason: "the file ends inside the header frame")
        case .failure(.corrupt(let why)):
            throw DataError(file: file, field: "header", offset: at, reason: why)
        case .success(let (json, size)):
            let h: ShardHeader
            do { h = try jsonDecoder().decode(ShardHeader.self, from: Data(json)) } catch {
                throw DataError(file: file, field: "header", offset: at, reason: "invalid header JSON: \(describeDecodingError(error))")
            }
            guard h.format == "specdec-shard" else { throw DataError(file: file, field: "header.format", offset: at, reason: "\"\(h.format)\", expected \"specdec-shard\"") }
            guard h.version == 1 || h.version == 2 else {
                throw DataError(file: file, field: "header.version", offset: at, reason: "unsupported version \(h.version) (this specdec reads versions 1 and 2)")
            }
            // Version 2 = version 1 plus the auxiliary layer states, which its header names.
            if h.version == 2 {
                guard let a = h.hidden.auxLayers, !a.isEmpty, a.count < 256 else {
                    throw DataError(file: file, field: "header.hidden.aux_layers", offset: at, reason: "version 2 needs the auxiliary layer ids (found \(h.hidden.auxLayers.map { "\($0)" } ?? "none"))")
                }
                guard h.hidden.encoding != .none else {
                    throw DataError(file: file, field: "header.hidden.aux_layers", offset: at, reason: "auxiliary layer states need a hidden encoding (fp16 or int8), not none")
                }
                if let bad = a.first(where: { $0 < 1 || $0 >= h.model.layers }) {
                    throw DataError(file: file, field: "header.hidden.aux_layers", offset: at, reason: "layer \(bad) is not the input of one of the model's layers 1..<\(h.model.layers)")
                }
            } else if h.hidden.auxLayers != nil {
                throw DataError(file: file, field: "header.hidden.aux_layers", offset: at, reason: "present in a version-1 header (auxiliary layer states are version 2)")
            }
            guard h.samples >= 0, h.shard.count >= 1, h.shard.index >= 0, h.shard.index < h.shard.count else {
                throw DataError(file: file, field: "header.shard", offset: at, reason: "shard \(h.shard) of \(h.samples) samples is impossible")
            }
            guard h.hidden.width >= 0, h.hidden.width <= ShardLayout.maxWidth, (h.hidden.encoding == .none) == (h.hidden.width == 0) else {
                throw DataError(file: file, field: "header.hidden", offset: at, reason: "width \(h.hidden.width) does not fit encoding \(h.hidden.encoding.rawValue)")
            }
            return (h, json, size)
        }
    }

    struct Trailer { var indexOffset: Int; var recordCount: Int; var headerCRC: UInt32; var indexCRC: UInt32 }

    static func trailer(_ b: [UInt8], file: String) throws -> Trailer {
        let start = b.count - ShardLayout.trailerSize
        guard start >= ShardLayout.prologueSize else {
            throw DataError(file: file, field: "trailer", offset: nil, reason: "the file is too short to hold a trailer")
        }
        var r = ByteReader(bytes: Array(b[start...]), file: file, field: "trailer", base: start)
        let magic = try r.u32("magic"), size = try r.u32("size")
        let indexOffset = try r.u64("index_offset"), count = try r.u64("record_count")
        let hcrc = try r.u32("header_crc"), icrc = try r.u32("index_crc"), tcrc = try r.u32("crc")
        let end = try r.take(4, "end")
        guard magic == ShardLayout.trailerMagic, size == 32, end == ShardLayout.trailerEnd else {
            throw DataError(file: file, field: "trailer", offset: start, reason: "no trailer at the end of the file (truncated, or not finished)")
        }
        guard tcrc == CRC32.checksum(b[start..<(start + 32)]) else {
            throw DataError(file: file, field: "trailer.crc", offset: start + 32, reason: "CRC-32 mismatch")
        }
        guard indexOffset <= UInt64(start), count <= UInt64(b.count) else {
            throw DataError(file: file, field: "trailer", offset: start, reason: "index offset \(indexOffset) or record count \(count) is out of range")
        }
        return Trailer(indexOffset: Int(indexOffset), recordCount: Int(count), headerCRC: hcrc, indexCRC: icrc)
    }

    static func index(_ p: [UInt8], file: String, offset: Int) throws -> [IndexEntry] {
        var r = ByteReader(bytes: p, file: file, field: "index")
        guard try r.take(4, "magic") == ShardLayout.indexMagic else {
            throw DataError(file: file, field: "index.magic", offset: offset, reason: "not an index frame (expected \"SIDX\")")
        }
        let es = Int(try r.u32("entry_size"))
        let count = try r.u64("count")
        guard es == ShardLayout.indexEntrySize, count <= UInt64(p.count), 16 + Int(count) * es == p.count else {
            throw DataError(file: file, field: "index", offset: offset, reason: "\(count) entries of \(es) bytes do not fill its \(p.count) bytes")
        }
        var out: [IndexEntry] = []
        out.reserveCapacity(Int(count))
        for _ in 0..<Int(count) {
            let si = try r.u64("sample_index"), off = try r.u64("offset")
            let size = try r.u32("frame_size"), crc = try r.u32("crc")
            let t = try r.u32("token_count"), a = try r.u32("answer_tokens")
            guard si < UInt64(Int.max / 2), off < UInt64(Int.max / 2) else {
                throw DataError(file: file, field: "index", offset: offset, reason: "entry out of range")
            }
            out.append(IndexEntry(sampleIndex: Int(si), offset: Int(off), frameSize: Int(size), crc: crc, tokenCount: Int(t), answerTokens: Int(a)))
        }
        return out
    }

    /// Outcome of walking the record frames from the header on.
    enum ScanEnd: Equatable {
        /// The bytes ended at a frame boundary.
        case end
        /// The last frame is cut short at this offset (an interrupted write).
        case truncated(Int)
        /// The index frame starts here (a finished shard, or one finished but not renamed).
        case footer(Int)
        case corrupt(DataError)
    }

    struct Scan {
        var entries: [IndexEntry] = []
        var records: [SampleRecord] = []
        var endOffset: Int
        var end: ScanEnd
    }

    /// Walks record frames in order from `start`, checking each record's checksum, layout and
    /// sample index (the k-th must be `shard.index + k·shard.count`).
    static func scan(_ b: [UInt8], from start: Int, header: ShardHeader, file: String, dctx: Zstd.Decompressor,
                     keepRecords: Bool = false) -> Scan {
        var s = Scan(endOffset: start, end: .end)
        var pos = start
        while pos < b.count {
            let k = s.entries.count
            let field = "record[\(k)]"
            switch frame(b, at: pos, dctx: dctx) {
            case .failure(.truncated):
                // A zstd frame that runs past the end; a skippable frame (the trailer) is not one.
                if b.count - pos >= 4, b.withUnsafeBytes({ $0.loadUnaligned(fromByteOffset: pos, as: UInt32.self) }) == ShardLayout.trailerMagic {
                    s.end = .corrupt(DataError(file: file, field: "trailer", offset: pos, reason: "a trailer without an index frame before it"))
                } else {
                    s.end = .truncated(pos)
                }
                return s
            case .failure(.corrupt(let why)):
                s.end = .corrupt(DataError(file: file, field: field, offset: pos, reason: why)); return s
            case .success(let (p, size)):
                if p.count >= 4 && Array(p[0..<4]) == ShardLayout.indexMagic {
                    s.end = .footer(pos); return s
                }
                let rec: SampleRecord
                do {
                    rec = try SampleRecord.decode(p, file: file, field: field, expectedEncoding: header.hidden.encoding,
                                                  expectedWidth: header.hidden.width, expectedAuxLayers: header.hidden.auxLayers?.count ?? 0)
                } catch let e as DataError {
                    var e = e; if e.offset == nil { e.offset = pos }
                    s.end = .corrupt(e); return s
                } catch {
                    s.end = .corrupt(DataError(file: file, field: field, offset: pos, reason: "\(error)")); return s
                }
                let want = header.shard.index + k * header.shard.count
                guard rec.index == want, want < header.samples else {
                    s.end = .corrupt(DataError(file: file, field: "\(field).sample_index", offset: pos,
                                                reason: "sample \(rec.index), expected \(want < header.samples ? "\(want)" : "no more records") (shard \(header.shard) of \(header.samples) samples)"))
                    return s
                }
                let crc = CRC32.checksum(b[pos..<(pos + size)])
                s.entries.append(IndexEntry(sampleIndex: rec.index, offset: pos, frameSize: size, crc: crc,
                                            tokenCount: rec.tokens.count, answerTokens: rec.answerTokenCount))
                if keepRecords { s.records.append(rec) }
                pos += size
                s.endOffset = pos
            }
        }
        return s
    }
}

/// The complete, intact records at the start of an unfinished shard's bytes (a `.tmp` being
/// written): what a resumed run keeps. Throws if the prologue or header is damaged.
public func unfinishedShardEntries(_ bytes: [UInt8], file: String = "<memory>") throws -> [IndexEntry] {
    try ShardReader(unfinishedBytes: bytes, path: file).entries
}

/// Random access to a finished shard: prologue, header, trailer and index are checked on open;
/// each record's CRC, zstd checksum and layout when read.
public final class ShardReader {
    public let path: String
    public let header: ShardHeader
    public let headerJSON: [UInt8]
    public let entries: [IndexEntry]
    public let fileSize: Int
    private let bytes: [UInt8]
    private let dctx = Zstd.Decompressor()

    public convenience init(path: String) throws {
        try self.init(bytes: try readWholeFile(path), path: path)
    }

    /// A shard already in memory; `path` is only used in errors.
    public convenience init(bytes b: [UInt8], path: String) throws {
        try self.init(b, path: path, entries: Self.indexedEntries)
    }

    /// The complete records at the start of an unfinished shard (a `.tmp` still being written or
    /// left by a killed run), for `data snapshot`; the header is checked, the records when read.
    public convenience init(unfinishedBytes b: [UInt8], path: String) throws {
        try self.init(b, path: path) { b, path, h, headerEnd, dctx in
            ShardParser.scan(b, from: headerEnd, header: h, file: path, dctx: dctx).entries
        }
    }

    /// Checks the prologue and header, then finds the records with `entries` (given the bytes,
    /// path, header, where the header ends, and the decompressor).
    private init(_ b: [UInt8], path: String,
                 entries find: ([UInt8], String, ShardHeader, Int, Zstd.Decompressor) throws -> [IndexEntry]) throws {
        self.path = path
        bytes = b
        fileSize = b.count
        try ShardParser.checkPrologue(b, file: path)
        let (h, json, size) = try ShardParser.header(b, file: path, dctx: dctx)
        header = h; headerJSON = json
        entries = try find(b, path, h, ShardLayout.prologueSize + size, dctx)
    }

    /// A finished shard's records, from its index: the trailer's CRCs, the index frame, and every
    /// entry's offset and sample index checked against the header and the bytes.
    private static func indexedEntries(_ b: [UInt8], path: String, h: ShardHeader, headerEnd: Int, dctx: Zstd.Decompressor) throws -> [IndexEntry] {
        let entries: [IndexEntry]
        let t = try ShardParser.trailer(b, file: path)
        guard t.headerCRC == CRC32.checksum(b[ShardLayout.prologueSize..<headerEnd]) else {
            throw DataError(file: path, field: "header.crc", offset: ShardLayout.prologueSize, reason: "CRC-32 of the header frame does not match the trailer")
        }
        guard t.indexOffset >= headerEnd else {
            throw DataError(file: path, field: "trailer.index_offset", offset: b.count - ShardLayout.trailerSize, reason: "\(t.indexOffset) points inside the header")
        }
        let indexEnd = b.count - ShardLayout.trailerSize
        switch ShardParser.frame(Array(b[t.indexOffset..<indexEnd]), at: 0, dctx: dctx) {
        case .failure(.truncated):
            throw DataError(file: path, field: "index", offset: t.indexOffset, reason: "the index frame runs into the trailer")
        case .failure(.corrupt(let why)):
            throw DataError(file: path, field: "index", offset: t.indexOffset, reason: why)
        case .success(let (p, size)):
            guard t.indexOffset + size == indexEnd else {
                throw DataError(file: path, field: "index", offset: t.indexOffset, reason: "\(indexEnd - t.indexOffset - size) stray bytes between the index frame and the trailer")
            }
            guard t.indexCRC == CRC32.checksum(b[t.indexOffset..<indexEnd]) else {
                throw DataError(file: path, field: "index.crc", offset: t.indexOffset, reason: "CRC-32 of the index frame does not match the trailer")
            }
            entries = try ShardParser.index(p, file: path, offset: t.indexOffset)
        }
        guard entries.count == t.recordCount else {
            throw DataError(file: path, field: "index", offset: t.indexOffset, reason: "\(entries.count) entries but the trailer says \(t.recordCount) records")
        }
        var pos = headerEnd
        for (k, e) in entries.enumerated() {
            guard e.offset == pos, e.frameSize > 0, e.frameSize <= t.indexOffset - pos else {
                throw DataError(file: path, field: "index[\(k)]", offset: t.indexOffset,
                                 reason: "frame at \(e.offset) of \(e.frameSize) bytes does not follow the previous one (expected offset \(pos))")
            }
            let want = h.shard.index + k * h.shard.count
            guard e.sampleIndex == want, want < h.samples else {
                throw DataError(file: path, field: "index[\(k)].sample_index", offset: t.indexOffset,
                                 reason: "sample \(e.sampleIndex), expected \(want) (shard \(h.shard) of \(h.samples) samples)")
            }
            pos += e.frameSize
        }
        guard pos == t.indexOffset else {
            throw DataError(file: path, field: "index", offset: pos, reason: "\(t.indexOffset - pos) bytes between the last record and the index belong to no record")
        }
        return entries
    }

    public var recordCount: Int { entries.count }

    /// The decompressed payload of record k (CRC and zstd checksum checked).
    public func payload(_ k: Int) throws -> [UInt8] {
        guard k >= 0, k < entries.count else { throw DataError(file: path, field: "record", reason: "no record \(k) (the shard has \(entries.count))") }
        let e = entries[k]
        let frameBytes = bytes[e.offset..<(e.offset + e.frameSize)]
        guard CRC32.checksum(frameBytes) == e.crc else {
            throw DataError(file: path, field: "record[\(k)].crc", offset: e.offset, reason: "CRC-32 of the frame does not match the index")
        }
        switch ShardParser.frame(Array(frameBytes), at: 0, dctx: dctx) {
        case .failure(.truncated):
            throw DataError(file: path, field: "record[\(k)]", offset: e.offset, reason: "frame shorter than the index says")
        case .failure(.corrupt(let why)):
            throw DataError(file: path, field: "record[\(k)]", offset: e.offset, reason: why)
        case .success(let (p, size)):
            guard size == e.frameSize else {
                throw DataError(file: path, field: "record[\(k)]", offset: e.offset, reason: "frame is \(size) bytes, the index says \(e.frameSize)")
            }
            return p
        }
    }

    /// The compressed frame of record k, as stored.
    public func frameBytes(_ k: Int) -> [UInt8] {
        let e = entries[k]
        return Array(bytes[e.offset..<(e.offset + e.frameSize)])
    }

    /// Record k, decoded and cross-checked against the index and header.
    public func record(_ k: Int) throws -> SampleRecord {
        let p = try payload(k)
        let e = entries[k]
        var r: SampleRecord
        do {
            r = try SampleRecord.decode(p, file: path, field: "record[\(k)]", expectedEncoding: header.hidden.encoding, expectedWidth: header.hidden.width,
                                          expectedAuxLayers: header.hidden.auxLayers?.count ?? 0)
        } catch var err as DataError {
            if err.offset == nil { err.offset = e.offset }
            throw err
        }
        guard r.index == e.sampleIndex, r.tokens.count == e.tokenCount, r.answerTokenCount == e.answerTokens else {
            throw DataError(file: path, field: "record[\(k)]", offset: e.offset,
                             reason: "record (sample \(r.index), \(r.tokens.count) tokens, \(r.answerTokenCount) answer tokens) disagrees with the index (sample \(e.sampleIndex), \(e.tokenCount), \(e.answerTokens))")
        }
        // Image rows hold the placeholder −1 (their inputs are image embeddings); text rows a real id.
        for (i, t) in r.tokens.enumerated() {
            if r.imageMask[i] == 1 {
                guard t == -1 else {
                    throw DataError(file: path, field: "record[\(k)].tokens", offset: e.offset, reason: "position \(i) is an image row but holds token \(t), not the placeholder -1")
                }
            } else if t < 0 || Int(t) >= header.model.vocabSize {
                throw DataError(file: path, field: "record[\(k)].tokens", offset: e.offset, reason: "token id \(t) at position \(i) is outside the vocabulary (0..<\(header.model.vocabSize))")
            }
        }
        r.index = e.sampleIndex
        return r
    }
}
