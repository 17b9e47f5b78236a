// specdec training-data shards (format versions 1 and 2; version 2 adds auxiliary layer states)
// ==============================================
//
// `specdec synth-data` writes a dataset directory:
//
//     DIR/manifest.json                      (or manifest-IIIII-of-NNNNN.json for one worker of --shard i/N)
//     DIR/shard-IIIII-of-NNNNN.sds           one file per worker: the samples whose index mod N = I
//     DIR/shard-IIIII-of-NNNNN.sds.tmp       a shard being written (renamed when complete)
//
// A shard is a sequence of zstd frames, so `zstd -dc shard.sds` prints the concatenated payloads
// (zstd skips the two skippable frames). All integers are little-endian.
//
//     prologue   zstd skippable frame (24 bytes)
//                  u32 0x184D2A5D  skippable-frame magic      u32 16  payload size
//                  8 bytes "SPECDATA"   u32 version (1)   u32 CRC-32 of the file's bytes 0..<20
//     header     zstd frame: the JSON header (UTF-8, keys sorted, snake_case): format, version,
//                model {file, sha256, architecture, width, vocab_size, layers}, tower (absent for
//                text-only data; {file, sha256} with a vision tower), source {kind, file, sha256,
//                seed}, generation {max_new, temperature, top_k, top_p, min_p, seed, long_answer,
//                system, context_size, template}, hidden {encoding, width}, zstd_level, samples
//                (the dataset's total sample count), shard {index, count}, fields (the layout below,
//                as text for humans).
//     records    one zstd frame per sample, in increasing sample index (I, I+N, I+2N, …)
//     index      zstd frame: "SIDX", u32 entry size (32), u64 count, then per record:
//                  u64 sample index, u64 frame offset in the file, u32 frame size,
//                  u32 CRC-32 of the frame's bytes, u32 token count, u32 answer (loss) token count
//     trailer    zstd skippable frame (40 bytes)
//                  u32 0x184D2A5E   u32 32
//                  u64 offset of the index frame    u64 record count
//                  u32 CRC-32 of the header frame   u32 CRC-32 of the index frame
//                  u32 CRC-32 of the trailer's bytes 0..<32      4 bytes "SDSE"
//
// Every zstd frame declares its content size and carries zstd's content checksum (XXH64); the
// index's per-frame CRC-32s and the trailer's CRCs cover every byte of the file, so a single
// flipped bit anywhere is detected from the shard alone (manifest.json adds each file's SHA-256).
//
// Record payload (decompressed):
//
//     0   "SREC"
//     4   u64 sample index
//     12  u32 n, the token count (prompt and answers of every turn)
//     16  u32 m, the meta JSON's length
//     20  u8  hidden encoding: 0 none, 1 fp16, 2 int8 (must match the header)
//     21  u8  k, auxiliary layer sections (0 in version 1; = count of the header's hidden.aux_layers)
//     22  u16 0
//     24  u32 hidden width w (0 when encoding is none)
//     28  u32 b, the embedded image bytes' total length (0 unless --embed-images)
//     32  meta JSON (m bytes): {id, messages [{role, content}], stop_reasons (one per answered
//         user turn: eos | length | context), images [{path, sha256, byte_count?}]}
//         messages are the conversation as the target saw it (the long-answer instruction
//         appended to user turns) with the target's own answers.
//     ..  tokens: n × i32
//     ..  loss mask: n × u8 (1 at the target's answer tokens, including the end-of-turn token)
//     ..  image mask: n × u8 (1 at positions holding image embeddings; all 0 for text samples)
//     ..  hidden states, the target's final-norm output at every position, row-major n × w:
//           fp16: the n·w halves byte-plane shuffled: all low bytes, then all high bytes
//                 (the high bytes, sign/exponent/top mantissa bits, compress well on their own)
//           int8: n × f32 per-row scales (max |x| / 127), then n·w i8 values; x ≈ scale · q
//           none: nothing
//     ..  version 2: k sections, the residual stream entering each hidden.aux_layers layer (id j =
//         layer j − 1's output), each n × w encoded as the hidden states (own planes / own scales)
//     ..  embedded image bytes, concatenated in the order of meta.images entries with byte_count
//     The payload must end exactly there.
//
// Writing: a worker writes DIR/shard-….sds.tmp (prologue, header, then one frame per record with
// a single write each), and on completion appends index and trailer, fsyncs, renames it to
// .sds and writes its manifest (temp file + rename). A rerun with the same arguments after a kill
// keeps every complete record of the .tmp file, cuts an incomplete last frame and continues; with
// deterministic generation (greedy, or sampling: each sample's seed derives from --seed and its
// index) the finished shard is byte-identical to an uninterrupted run's. A .tmp whose bytes
// differ from this run's header, or with a damaged complete record, is refused with the way out.
//
// manifest.json: {format "specdec-dataset", version 1, samples, shards [{file, sha256, bytes,
// records, tokens, answer_tokens, raw_fp16_hidden_bytes, shard {index, count}}]}.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Kernels

/// A fault in a shard, manifest or prompt file: which file, which field, where and why.
public struct DataError: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String
    public var field: String
    public var offset: Int?
    public var reason: String

    public init(file: String, field: String, offset: Int? = nil, reason: String) {
        self.file = file; self.field = field; self.offset = offset; self.reason = reason
    }

    public var description: String {
        "\(file): \(field): \(reason)" + (offset.map { " (at byte \($0))" } ?? "")
    }
}

enum ShardLayout {
    static let prologueMagic: UInt32 = 0x184D_2A5D
    static let trailerMagic: UInt32 = 0x184D_2A5E
    static let fileMagic: [UInt8] = Array("SPECDATA".utf8)
    static let version: UInt32 = 1
    static let prologueSize = 24
    static let trailerSize = 40
    static let trailerEnd: [UInt8] = Array("SDSE".utf8)
    static let recordMagic: [UInt8] = Array("SREC".utf8)
    static let indexMagic: [UInt8] = Array("SIDX".utf8)
    static let indexEntrySize = 32
    static let recordFixedSize = 32
    /// Limits a corrupt record cannot get past.
    static let maxTokens = 1 << 24
    static let maxWidth = 1 << 16
    static let maxMeta = 1 << 26

    static func prologue(version: UInt32 = version) -> [UInt8] {
        var b = ByteWriter()
        b.u32(prologueMagic); b.u32(16); b.bytes(fileMagic); b.u32(version)
        b.u32(CRC32.checksum(b.data))
        return b.data
    }

    static func trailer(indexOffset: Int, recordCount: Int, headerCRC: UInt32, indexCRC: UInt32) -> [UInt8] {
        var b = ByteWriter()
        b.u32(trailerMagic); b.u32(32)
        b.u64(UInt64(indexOffset)); b.u64(UInt64(recordCount))
        b.u32(headerCRC); b.u32(indexCRC)
        b.u32(CRC32.checksum(b.data))
        b.bytes(trailerEnd)
        return b.data
    }
}

func jsonEncoder() -> JSONEncoder {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    e.keyEncodingStrategy = .convertToSnakeCase
    return e
}

func jsonDecoder() -> JSONDecoder {
    let d = JSONDecoder()
    d.keyDecodingStrategy = .convertFromSnakeCase
    return d
}

func describeDecodingError(_ e: Error) -> String {
    guard let de = e as? DecodingError else { return "\(e)" }
    func path(_ c: [CodingKey]) -> String { c.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined() }
    switch de {
    case .keyNotFound(let k, let c): return "missing key \(path(c.codingPath + [k]))"
    case .typeMismatch(_, let c): return "wrong type at \(path(c.codingPath)): \(c.debugDescription)"
    case .valueNotFound(_, let c): return "missing value at \(path(c.codingPath))"
    case .dataCorrupted(let c): return "\(c.debugDescription) \(path(c.codingPath))"
    @unknown default: return "\(e)"
    }
}

/// Little-endian byte building.
struct ByteWriter {
    var data: [UInt8] = []
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
    mutating func bytes<C: Collection>(_ b: C) where C.Element == UInt8 { data.append(contentsOf: b) }
}

/// Bounds-checked little-endian reading; every failure is a `DataError` naming the field.
struct ByteReader {
    let bytes: [UInt8]
    var pos = 0
    let file: String
    let field: String
    /// Offset of `bytes[0]` in the file, for messages (nil: positions inside a decompressed payload).
    var base: Int? = nil

    init(bytes: [UInt8], file: String, field: String, base: Int? = nil) {
        self.bytes = bytes; self.file = file; self.field = field; self.base = base
    }

    func error(_ sub: String, _ why: String, at: Int?) -> DataError {
        let off: Int? = at.flatMap { a in base.map { $0 + a } }
        return DataError(file: file, field: sub.isEmpty ? field : "\(field).\(sub)", offset: off, reason: why)
    }

    mutating func take(_ n: Int, _ sub: String) throws -> [UInt8] {
        guard n >= 0, n <= bytes.count - pos else {
            throw error(sub, "needs \(n) bytes at offset \(pos) but only \(bytes.count - pos) remain", at: pos)
        }
        defer { pos += n }
        return Array(bytes[pos..<(pos + n)])
    }

    mutating func u8(_ sub: String) throws -> UInt8 { try take(1, sub)[0] }

    mutating func u32(_ sub: String) throws -> UInt32 {
        guard 4 <= bytes.count - pos else { throw error(sub, "needs 4 bytes at offset \(pos) but only \(bytes.count - pos) remain", at: pos) }
        defer { pos += 4 }
        return UInt32(bytes[pos]) | UInt32(bytes[pos + 1]) << 8 | UInt32(bytes[pos + 2]) << 16 | UInt32(bytes[pos + 3]) << 24
    }

    mutating func u64(_ sub: String) throws -> UInt64 {
        let lo = try u32(sub), hi = try u32(sub)
        return UInt64(lo) | UInt64(hi) << 32
    }
}
