import Foundation
import Kernels

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
