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

/// How hidden states are stored.
public enum HiddenEncoding: String, Codable, Sendable, CaseIterable {
    case none, fp16, int8

    var code: UInt8 {
        switch self { case .none: 0; case .fp16: 1; case .int8: 2 }
    }

    init?(code: UInt8) {
        switch code { case 0: self = .none; case 1: self = .fp16; case 2: self = .int8; default: return nil }
    }
}

/// The target's final-norm hidden states of one sample: rows × width, in the stored encoding.
public struct HiddenStates: Equatable, Sendable {
    public var encoding: HiddenEncoding
    public var rows: Int
    public var width: Int
    /// fp16: rows × width IEEE half bit patterns.
    public var halves: [UInt16] = []
    /// int8: one scale per row, and rows × width quantized values.
    public var scales: [Float] = []
    public var quantized: [Int8] = []

    public init(encoding: HiddenEncoding, rows: Int, width: Int, halves: [UInt16] = [], scales: [Float] = [], quantized: [Int8] = []) {
        self.encoding = encoding; self.rows = rows; self.width = width
        self.halves = halves; self.scales = scales; self.quantized = quantized
    }

    public static func none(rows: Int) -> HiddenStates { HiddenStates(encoding: .none, rows: rows, width: 0) }

    /// Encodes rows × width floats.
    public static func encode(_ x: [Float], rows: Int, width: Int, as encoding: HiddenEncoding) -> HiddenStates {
        precondition(encoding == .none || x.count == rows * width)
        switch encoding {
        case .none:
            return .none(rows: rows)
        case .fp16:
            return HiddenStates(encoding: .fp16, rows: rows, width: width, halves: x.map(floatToHalf))
        case .int8:
            var scales = [Float](repeating: 0, count: rows)
            var q = [Int8](repeating: 0, count: rows * width)
            for r in 0..<rows {
                var m: Float = 0
                for c in 0..<width { m = max(m, abs(x[r * width + c])) }
                let s = m / 127
                scales[r] = s
                guard s > 0, s.isFinite else { continue }
                let inv = 1 / s
                for c in 0..<width {
                    q[r * width + c] = Int8(max(-127, min(127, (x[r * width + c] * inv).rounded())))
                }
            }
            return HiddenStates(encoding: .int8, rows: rows, width: width, scales: scales, quantized: q)
        }
    }

    /// rows × width floats (empty for `.none`).
    public func floats() -> [Float] {
        switch encoding {
        case .none: return []
        case .fp16: return halves.map(halfToFloat)
        case .int8:
            var out = [Float](repeating: 0, count: rows * width)
            for r in 0..<rows {
                let s = scales[r]
                for c in 0..<width { out[r * width + c] = Float(quantized[r * width + c]) * s }
            }
            return out
        }
    }

    /// Appends the encoded section (layout in the file header comment).
    func write(to b: inout ByteWriter) {
        switch encoding {
        case .none: break
        case .fp16:
            let count = halves.count
            let start = b.data.count
            b.data.append(contentsOf: repeatElement(0, count: 2 * count))
            b.data.withUnsafeMutableBufferPointer { d in
                halves.withUnsafeBufferPointer { h in
                    for i in 0..<count {
                        d[start + i] = UInt8(truncatingIfNeeded: h[i])
                        d[start + count + i] = UInt8(truncatingIfNeeded: h[i] >> 8)
                    }
                }
            }
        case .int8:
            for s in scales { b.u32(s.bitPattern) }
            quantized.withUnsafeBytes { b.data.append(contentsOf: $0) }
        }
    }

    /// Reads one encoded section of n rows × w; `name` names the field in errors.
    static func read(_ r: inout ByteReader, encoding enc: HiddenEncoding, rows n: Int, width w: Int, name: String) throws -> HiddenStates {
        var hidden = HiddenStates(encoding: enc, rows: n, width: w)
        switch enc {
        case .none: hidden = .none(rows: n)
        case .fp16:
            let count = n * w
            let planes = try r.take(2 * count, name)
            var h = [UInt16](repeating: 0, count: count)
            for i in 0..<count { h[i] = UInt16(planes[i]) | UInt16(planes[count + i]) << 8 }
            hidden.halves = h
        case .int8:
            var s = [Float](repeating: 0, count: n)
            for i in 0..<n {
                s[i] = Float(bitPattern: try r.u32("\(name).scales"))
                guard s[i].isFinite, s[i] >= 0 else { throw r.error("\(name).scales", "row \(i) has scale \(s[i])", at: nil) }
            }
            hidden.scales = s
            hidden.quantized = try r.take(n * w, name).map { Int8(bitPattern: $0) }
        }
        return hidden
    }

    /// Bytes of the encoded section in a record.
    var byteCount: Int {
        switch encoding {
        case .none: 0
        case .fp16: rows * width * 2
        case .int8: rows * 4 + rows * width
        }
    }
}

/// One chat turn as stored in a record.
public struct Message: Codable, Equatable, Sendable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// The image behind an image span: where it came from, its SHA-256, and optionally its bytes.
public struct ImageRef: Equatable, Sendable {
    public var path: String
    public var sha256: String
    /// The file's bytes when stored in the record (`--embed-images`).
    public var embedded: [UInt8]?
    public init(path: String, sha256: String, embedded: [UInt8]? = nil) {
        self.path = path; self.sha256 = sha256; self.embedded = embedded
    }
}

/// One training sample.
public struct SampleRecord: Equatable, Sendable {
    /// Global sample index in the dataset (0 ..< samples).
    public var index: Int
    public var id: String
    public var messages: [Message]
    /// Why each answer ended: eos, length or context.
    public var stopReasons: [String]
    public var tokens: [Int32]
    public var lossMask: [UInt8]
    public var imageMask: [UInt8]
    public var images: [ImageRef]
    public var hidden: HiddenStates
    /// Version 2 (`hidden.aux_layers` in the header): the residual stream entering each of those
    /// target layers (EAGLE-3's auxiliary states), one section per layer in header order, each
    /// rows × width in the hidden encoding. Empty in version-1 data.
    public var auxHidden: [HiddenStates]

    public init(index: Int, id: String, messages: [Message], stopReasons: [String], tokens: [Int32],
                lossMask: [UInt8], imageMask: [UInt8], images: [ImageRef] = [], hidden: HiddenStates,
                auxHidden: [HiddenStates] = []) {
        self.index = index; self.id = id; self.messages = messages; self.stopReasons = stopReasons
        self.tokens = tokens; self.lossMask = lossMask; self.imageMask = imageMask; self.images = images
        self.hidden = hidden; self.auxHidden = auxHidden
    }

    /// The auxiliary states side by side per position (rows × layers·width), the layout
    /// `EagleDraft.accept` reads as features. Empty without auxiliary states.
    public func auxFeatures() -> [Float] {
        guard let first = auxHidden.first else { return [] }
        let n = first.rows, w = first.width, k = auxHidden.count
        var out = [Float](repeating: 0, count: n * k * w)
        for (l, h) in auxHidden.enumerated() {
            let f = h.floats()
            for t in 0..<n { for i in 0..<w { out[(t * k + l) * w + i] = f[t * w + i] } }
        }
        return out
    }

    public var answerTokenCount: Int { lossMask.reduce(0) { $0 + Int($1) } }

    struct Meta: Codable {
        struct Image: Codable { var path: String; var sha256: String; var byteCount: Int? }
        var id: String
        var messages: [Message]
        var stopReasons: [String]
        var images: [Image]
    }

    /// The uncompressed record payload (layout in the file header comment).
    public func payload() -> [UInt8] {
        let n = tokens.count
        precondition(lossMask.count == n && imageMask.count == n, "masks must have one entry per token")
        precondition(hidden.encoding == .none || hidden.rows == n, "hidden states must have one row per token")
        precondition(auxHidden.count < 256 && auxHidden.allSatisfy { $0.encoding == hidden.encoding && $0.rows == n && $0.width == hidden.width },
                     "auxiliary states must match the hidden states' encoding and shape")
        let meta = Meta(id: id, messages: messages, stopReasons: stopReasons,
                        images: images.map { .init(path: $0.path, sha256: $0.sha256, byteCount: $0.embedded?.count) })
        let metaBytes = Array(try! jsonEncoder().encode(meta))
        let imageBytes = images.reduce(0) { $0 + ($1.embedded?.count ?? 0) }
        var b = ByteWriter()
        b.data.reserveCapacity(32 + metaBytes.count + n * 6 + hidden.byteCount * (1 + auxHidden.count) + imageBytes)
        b.bytes(ShardLayout.recordMagic)
        b.u64(UInt64(index)); b.u32(UInt32(n)); b.u32(UInt32(metaBytes.count))
        b.data.append(hidden.encoding.code); b.data.append(UInt8(auxHidden.count)); b.data.append(0); b.data.append(0)
        b.u32(UInt32(hidden.encoding == .none ? 0 : hidden.width)); b.u32(UInt32(imageBytes))
        b.bytes(metaBytes)
        for t in tokens { b.u32(UInt32(bitPattern: t)) }
        b.bytes(lossMask); b.bytes(imageMask)
        hidden.write(to: &b)
        for a in auxHidden { a.write(to: &b) }
        for im in images { if let e = im.embedded { b.bytes(e) } }
        return b.data
    }

    /// Parses a record payload; every length is checked against the payload's size first.
    /// `field` prefixes error fields (e.g. "record[3]").
    /// `expectedAuxLayers`: how many auxiliary sections the header announces (nil: not checked).
    public static func decode(_ p: [UInt8], file: String, field: String, expectedEncoding: HiddenEncoding? = nil,
                              expectedWidth: Int? = nil, expectedAuxLayers: Int? = nil) throws -> SampleRecord {
        var r = ByteReader(bytes: p, file: file, field: field)
        guard try r.take(4, "magic") == ShardLayout.recordMagic else {
            throw r.error("magic", "not a record (expected \"SREC\")", at: 0)
        }
        let index = try r.u64("sample_index")
        guard index < UInt64(Int.max / 2) else { throw r.error("sample_index", "\(index) is out of range", at: 4) }
        let n = Int(try r.u32("token_count"))
        guard n <= ShardLayout.maxTokens else { throw r.error("token_count", "\(n) tokens is more than the \(ShardLayout.maxTokens) allowed", at: 12) }
        let m = Int(try r.u32("meta_length"))
        guard m <= ShardLayout.maxMeta else { throw r.error("meta_length", "\(m) is more than the \(ShardLayout.maxMeta) allowed", at: 16) }
        let code = try r.u8("hidden_encoding")
        guard let enc = HiddenEncoding(code: code) else { throw r.error("hidden_encoding", "unknown encoding \(code)", at: 20) }
        if let e = expectedEncoding, e != enc {
            throw r.error("hidden_encoding", "record stores \(enc.rawValue) but the header says \(e.rawValue)", at: 20)
        }
        let aux = Int(try r.u8("aux_layers"))
        if let e = expectedAuxLayers, e != aux {
            throw r.error("aux_layers", "record stores \(aux) auxiliary layer states but the header's hidden.aux_layers has \(e)", at: 21)
        }
        guard aux == 0 || enc != .none else { throw r.error("aux_layers", "\(aux) auxiliary layer states with hidden encoding none", at: 21) }
        _ = try r.take(2, "reserved")
        let w = Int(try r.u32("hidden_width"))
        guard w <= ShardLayout.maxWidth, (enc == .none) == (w == 0) else {
            throw r.error("hidden_width", "width \(w) does not fit encoding \(enc.rawValue)", at: 24)
        }
        if let ew = expectedWidth, enc != .none, ew != w {
            throw r.error("hidden_width", "record width \(w) but the header says \(ew)", at: 24)
        }
        let imageBytes = Int(try r.u32("image_bytes"))
        let hiddenBytes: Int
        switch enc { case .none: hiddenBytes = 0; case .fp16: hiddenBytes = n * w * 2; case .int8: hiddenBytes = n * 4 + n * w }
        let expected = ShardLayout.recordFixedSize + m + n * 6 + hiddenBytes * (1 + aux) + imageBytes
        guard expected == p.count else {
            throw r.error("length", "the fields need \(expected) bytes but the record holds \(p.count)", at: nil)
        }
        let metaStart = r.pos
        let metaBytes = try r.take(m, "meta")
        let meta: Meta
        do { meta = try jsonDecoder().decode(Meta.self, from: Data(metaBytes)) } catch {
            throw r.error("meta", "invalid JSON: \(describeDecodingError(error))", at: metaStart)
        }
        var tokens = [Int32](repeating: 0, count: n)
        for i in 0..<n { tokens[i] = Int32(bitPattern: try r.u32("tokens")) }
        let lossMask = try r.take(n, "loss_mask")
        let imageMask = try r.take(n, "image_mask")
        if let bad = lossMask.firstIndex(where: { $0 > 1 }) { throw r.error("loss_mask", "entry \(bad) is \(lossMask[bad]), not 0 or 1", at: nil) }
        if let bad = imageMask.firstIndex(where: { $0 > 1 }) { throw r.error("image_mask", "entry \(bad) is \(imageMask[bad]), not 0 or 1", at: nil) }
        let hidden = try HiddenStates.read(&r, encoding: enc, rows: n, width: w, name: "hidden")
        var auxHidden: [HiddenStates] = []
        for l in 0..<aux { auxHidden.append(try HiddenStates.read(&r, encoding: enc, rows: n, width: w, name: "aux_hidden[\(l)]")) }
        var images: [ImageRef] = []
        var embeddedTotal = 0
        for (k, im) in meta.images.enumerated() {
            var ref = ImageRef(path: im.path, sha256: im.sha256)
            if let c = im.byteCount {
                guard c >= 0, c <= imageBytes - embeddedTotal else {
                    throw r.error("meta.images[\(k)].byte_count", "\(c) bytes, but only \(imageBytes - embeddedTotal) image bytes remain", at: nil)
                }
                ref.embedded = try r.take(c, "images[\(k)]")
                embeddedTotal += c
            }
            images.append(ref)
        }
        guard embeddedTotal == imageBytes else {
            throw r.error("image_bytes", "\(imageBytes) image bytes but the meta accounts for \(embeddedTotal)", at: 28)
        }
        return SampleRecord(index: Int(index), id: meta.id, messages: meta.messages, stopReasons: meta.stopReasons,
                            tokens: tokens, lossMask: lossMask, imageMask: imageMask, images: images, hidden: hidden,
                            auxHidden: auxHidden)
    }
}

/// Identity of the model or tower a dataset was made with.
public struct ModelInfo: Codable, Equatable, Sendable {
    public var file: String
    public var sha256: String
    public var architecture: String
    public var width: Int
    public var vocabSize: Int
    public var layers: Int
    public init(file: String, sha256: String, architecture: String, width: Int, vocabSize: Int, layers: Int) {
        self.file = file; self.sha256 = sha256; self.architecture = architecture
        self.width = width; self.vocabSize = vocabSize; self.layers = layers
    }
}

public struct TowerInfo: Codable, Equatable, Sendable {
    public var file: String
    public var sha256: String
    public init(file: String, sha256: String) { self.file = file; self.sha256 = sha256 }
}

/// Where the prompts came from.
public struct SourceInfo: Codable, Equatable, Sendable {
    /// generate-text, prompts-jsonl or llava-json.
    public var kind: String
    public var file: String?
    public var sha256: String?
    public var seed: UInt64?
    /// "text-only" when samples with images were left out.
    public var filter: String?
    public init(kind: String, file: String? = nil, sha256: String? = nil, seed: UInt64? = nil, filter: String? = nil) {
        self.kind = kind; self.file = file; self.sha256 = sha256; self.seed = seed; self.filter = filter
    }
}

/// How the target answered.
public struct GenerationSettings: Codable, Equatable, Sendable {
    public var maxNew: Int = 256
    public var temperature: Float = 0
    public var topK: Int = 40
    public var topP: Float = 0.95
    public var minP: Float = 0.05
    public var seed: UInt64 = 0
    /// Appended (after a newline) to every user turn; nil = off.
    public var longAnswer: String? = GenerationSettings.defaultLongAnswer(words: 1000)
    /// System message; nil = the chat template's default.
    public var system: String?
    public var contextSize: Int = 4096
    public var template: String = "chatml"
    /// `--embed-images` (absent unless set, so text-only headers are unchanged).
    public var embedImages: Bool? = nil

    public init() {}

    public static func defaultLongAnswer(words: Int) -> String { "Please answer with at least \(words) words." }
}

public struct HiddenInfo: Codable, Equatable, Sendable {
    public var encoding: HiddenEncoding
    public var width: Int
    /// Version 2: the target layers whose *input* residual stream each record also stores
    /// (EAGLE-3's auxiliary states; id j = the output of layer j − 1), in stored order.
    /// Absent (nil) in version 1.
    public var auxLayers: [Int]?
}

/// `--shard i/N`: this worker takes every sample whose index mod N = i.
public struct ShardSpec: Codable, Hashable, Sendable, CustomStringConvertible {
    public var index: Int
    public var count: Int
    public init(index: Int, count: Int) { self.index = index; self.count = count }
    public var description: String { "\(index)/\(count)" }

    /// Parses "i/N"; with nil, takes i from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX (N then
    /// from SLURM_ARRAY_TASK_COUNT or SPECDEC_SHARD_COUNT), else 0/1.
    public static func resolve(_ text: String?, environment env: [String: String]) throws -> ShardSpec {
        func bad(_ why: String) -> DataError { DataError(file: "--shard", field: "shard", reason: why) }
        if let t = text {
            let parts = t.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]) else { throw bad("expected i/N (e.g. 0/4), got \"\(t)\"") }
            guard n >= 1, i >= 0, i < n else { throw bad("\(t): need 0 ≤ i < N") }
            return ShardSpec(index: i, count: n)
        }
        for (indexVar, countVars) in [("SLURM_ARRAY_TASK_ID", ["SLURM_ARRAY_TASK_COUNT", "SPECDEC_SHARD_COUNT"]),
                                      ("JOB_COMPLETION_INDEX", ["SPECDEC_SHARD_COUNT"])] {
            guard let iv = env[indexVar], !iv.isEmpty else { continue }
            guard let i = Int(iv) else { throw bad("\(indexVar)=\(iv) is not a number") }
            guard let (cv, nv) = countVars.lazy.compactMap({ k in env[k].map { (k, $0) } }).first else {
                throw bad("\(indexVar)=\(iv) is set but the shard count is not: pass --shard \(i)/N or set SPECDEC_SHARD_COUNT")
            }
            guard let n = Int(nv) else { throw bad("\(cv)=\(nv) is not a number") }
            guard n >= 1, i >= 0, i < n else { throw bad("\(indexVar)=\(i) with \(cv)=\(n): need 0 ≤ i < N") }
            return ShardSpec(index: i, count: n)
        }
        return ShardSpec(index: 0, count: 1)
    }

    /// Sample indices this worker takes out of `samples`.
    public func indices(samples: Int) -> StrideTo<Int> { stride(from: index, to: samples, by: count) }

    var fileStem: String { String(format: "shard-%05d-of-%05d", index, count) }
    public var shardFileName: String { fileStem + ".sds" }
    public var manifestFileName: String { count == 1 ? "manifest.json" : String(format: "manifest-%05d-of-%05d.json", index, count) }
}

/// Human-readable record layout stored in the header.
public struct FieldInfo: Codable, Equatable, Sendable {
    public var name: String
    public var type: String
    public var shape: String
}

/// The JSON header of a shard.
public struct ShardHeader: Codable, Equatable, Sendable {
    public var format = "specdec-shard"
    public var version = 1
    public var model: ModelInfo
    public var tower: TowerInfo?
    public var source: SourceInfo
    public var generation: GenerationSettings
    public var hidden: HiddenInfo
    public var zstdLevel: Int
    public var samples: Int
    public var shard: ShardSpec
    public var fields: [FieldInfo]

    public init(model: ModelInfo, tower: TowerInfo? = nil, source: SourceInfo, generation: GenerationSettings,
                hidden: HiddenEncoding, zstdLevel: Int, samples: Int, shard: ShardSpec, auxLayers: [Int]? = nil) {
        self.model = model; self.tower = tower; self.source = source; self.generation = generation
        self.hidden = HiddenInfo(encoding: hidden, width: hidden == .none ? 0 : model.width, auxLayers: auxLayers)
        // Version 2 adds the auxiliary layer states; without them the bytes stay version 1's.
        version = auxLayers == nil ? 1 : 2
        self.zstdLevel = zstdLevel; self.samples = samples; self.shard = shard
        let hiddenType: String
        switch hidden {
        case .none: hiddenType = "absent"
        case .fp16: hiddenType = "fp16, byte planes (low bytes, then high bytes)"
        case .int8: hiddenType = "f32 scale per row, then int8"
        }
        fields = [
            FieldInfo(name: "meta", type: "json {id, messages, stop_reasons, images}", shape: "[m]"),
            FieldInfo(name: "tokens", type: "int32", shape: "[n]"),
            FieldInfo(name: "loss_mask", type: "uint8 0/1", shape: "[n]"),
            FieldInfo(name: "image_mask", type: "uint8 0/1", shape: "[n]"),
            FieldInfo(name: "hidden", type: hiddenType, shape: hidden == .none ? "[0]" : "[n, \(model.width)]"),
            FieldInfo(name: "images", type: "bytes (embedded images)", shape: "[b]"),
        ]
        if let a = auxLayers {
            fields.insert(FieldInfo(name: "aux_hidden", type: hiddenType + ", one section per layer: the input of target layers \(a)",
                                    shape: "[\(a.count), n, \(model.width)]"), at: 5)
        }
    }

    /// The bytes written in the header frame (sorted keys: the same settings give the same bytes).
    public func jsonBytes() -> [UInt8] { Array(try! jsonEncoder().encode(self)) }

    /// The header without the shard assignment: equal for every shard of one dataset.
    public var datasetIdentity: ShardHeader {
        var h = self; h.shard = ShardSpec(index: 0, count: 1); return h
    }

    /// Names of the top-level settings that differ (for error messages).
    public func differences(from o: ShardHeader) -> [String] {
        var d: [String] = []
        if format != o.format { d.append("format") }
        if version != o.version { d.append("version") }
        if model != o.model { d.append("model") }
        if tower != o.tower { d.append("tower") }
        if source != o.source { d.append("source") }
        if generation != o.generation { d.append("generation") }
        if hidden != o.hidden { d.append("hidden") }
        if zstdLevel != o.zstdLevel { d.append("zstd_level") }
        if samples != o.samples { d.append("samples") }
        if shard != o.shard { d.append("shard") }
        if fields != o.fields { d.append("fields") }
        return d
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
