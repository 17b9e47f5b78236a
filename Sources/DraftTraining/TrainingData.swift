import Draft
import Sampling
import Shards
import Foundation
import GGUF
import Kernels

/// A fault in the training inputs or a checkpoint: which file, which field, why.
public enum TrainingFault {}
public typealias TrainingError = FieldError<TrainingFault>

/// Token embeddings of the frozen target (rows of `token_embd.weight`, dequantized on demand).
public protocol TokenEmbedder {
    var width: Int { get }
    var vocabSize: Int { get }
    func embed(_ token: Int32, into dst: UnsafeMutablePointer<Float>)
}

extension PackedMatrix: TokenEmbedder {
    public var width: Int { cols }
    public var vocabSize: Int { rows }
    public func embed(_ token: Int32, into dst: UnsafeMutablePointer<Float>) { dequantize(row: Int(token), into: dst) }
}

/// A float embedding table (tests, tiny models).
public struct FloatEmbedder: TokenEmbedder {
    public let width: Int
    public let table: [Float]
    public var vocabSize: Int { table.count / width }
    public init(width: Int, table: [Float]) { self.width = width; self.table = table }
    public func embed(_ token: Int32, into dst: UnsafeMutablePointer<Float>) {
        for i in 0..<width { dst[i] = table[Int(token) * width + i] }
    }
}

/// The projected embeddings of a sample's image (rows × width), as the target saw them.
public protocol ImageEmbedder: AnyObject {
    func embeddings(for image: ImageRef, datasetDir: String) throws -> (rows: Int, data: [Float])
}

/// One sample of the dataset, without its payload.
public struct SampleInfo: Sendable, Equatable {
    public var dir: Int
    public var shard: Int
    public var record: Int
    public var sampleIndex: Int
    public var id: String
    public var tokens: Int
    public var answerTokens: Int
    public var hasImage: Bool
    /// A hash of what the target was asked: the tokens before the first answer token and the
    /// images' SHA-256. Samples that share it are the same request (`ValidationSplit.prompt`).
    public var promptKey: UInt64 = 0
}

/// How samples are assigned to validation.
public enum ValidationSplit: String, Codable, Sendable, CaseIterable {
    /// By a hash of the sample id: the split of every run before this option existed.
    case id
    /// By a hash of the prompt (`SampleInfo.promptKey`): every copy of a repeated request falls
    /// on the same side, so validation never scores a draft on prompts it trained on. A generator
    /// that repeats its prompts makes `id` validation measure memorisation.
    case prompt
}

/// 64-bit FNV-1a: the validation splits' hashes, stable across runs, platforms and Swift versions
/// (unlike `Hasher`, which is seeded per process).
struct FNV1a {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325
    mutating func add<Bytes: Sequence>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    }
}

/// Streams samples from one or more dataset folders of zstd shards (docs/shard-format.md).
/// Shards keep their compressed bytes in memory; a record is decompressed when it is used.
public final class TrainingData {
    public let dirs: [String]
    public private(set) var readers: [[RecordSource]] = []
    public private(set) var samples: [SampleInfo] = []
    /// SHA-256 over the folders' manifests (in argument order): what a resumed run must match.
    public let manifestSHA256: String
    public let width: Int
    public let modelSHA256: String
    public let vocabSize: Int

    /// `allowUnfinished`: a folder without a manifest is read from its `.sds.tmp` shards (the
    /// records complete at this moment; for a first run while synth-data is still writing).
    public init(dirs: [String], allowUnfinished: Bool = false) throws {
        guard !dirs.isEmpty else { throw TrainingError(file: "--data", field: "data", reason: "no dataset folder given") }
        self.dirs = dirs
        var hasher = Checksum.SHA256()
        var width: Int? = nil, model: String? = nil, vocab = 0
        for (di, dir) in dirs.enumerated() {
            let (paths, _) = manifestPaths(in: dir)
            var shardReaders: [RecordSource] = []
            if paths.isEmpty {
                let tmps = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".sds.tmp") }.sorted()
                guard allowUnfinished, !tmps.isEmpty else {
                    throw TrainingError(file: (dir as NSString).appendingPathComponent("manifest.json"), field: "manifest",
                                        reason: tmps.isEmpty ? "missing: not a dataset folder" : "missing: synth-data has not finished (--allow-unfinished trains on the records written so far)")
                }
                for t in tmps {
                    let u = try UnfinishedShard(path: (dir as NSString).appendingPathComponent(t))
                    hasher.update(u.identity)
                    shardReaders.append(u)
                }
            }
            for mp in paths {
                guard let bytes = FileManager.default.contents(atPath: mp) else {
                    throw TrainingError(file: mp, field: "manifest", reason: "cannot read")
                }
                hasher.update(Array(bytes))
                let m = try DatasetManifest.load(mp)
                for e in m.shards {
                    shardReaders.append(try ShardReader(path: (dir as NSString).appendingPathComponent(e.file)))
                }
            }
            for r in shardReaders {
                guard r.header.hidden.encoding != .none else {
                    throw TrainingError(file: r.path, field: "hidden.encoding", reason: "none: training needs the stored hidden states (make the data with --hidden fp16 or int8)")
                }
                if let w = width, w != r.header.hidden.width {
                    throw TrainingError(file: r.path, field: "hidden.width", reason: "\(r.header.hidden.width), but other shards have \(w)")
                }
                if let s = model, s != r.header.model.sha256 {
                    throw TrainingError(file: r.path, field: "model.sha256", reason: "made with another target model than the other shards")
                }
                width = r.header.hidden.width; model = r.header.model.sha256; vocab = r.header.model.vocabSize
            }
            readers.append(shardReaders)
            for (si, r) in shardReaders.enumerated() {
                for k in 0..<r.recordCount {
                    let rec = try r.record(k)
                    samples.append(SampleInfo(dir: di, shard: si, record: k, sampleIndex: rec.index, id: rec.id,
                                              tokens: rec.tokens.count, answerTokens: rec.answerTokenCount,
                                              hasImage: rec.imageMask.contains(1), promptKey: Self.promptKey(rec)))
                }
            }
        }
        guard let w = width, let m = model else { throw TrainingError(file: dirs[0], field: "shards", reason: "the dataset has no shards") }
        self.width = w; modelSHA256 = m; vocabSize = vocab
        manifestSHA256 = Checksum.SHA256.hex(hasher.finalize())
    }

    public func record(_ s: SampleInfo) throws -> SampleRecord { try readers[s.dir][s.shard].record(s.record) }

    /// Validation membership from a hash of the sample id (stable across runs, folders and shards).
    public static func isValidation(id: String, fraction: Double) -> Bool {
        var h = FNV1a()
        h.add(id.utf8)
        return Double(h.value % 10_000) < fraction * 10_000
    }

    /// Validation membership from a prompt key. The key is finalized first (splitmix64) because
    /// FNV's low bits, which `% 10_000` reads, mix the last bytes poorly.
    public static func isValidation(promptKey: UInt64, fraction: Double) -> Bool {
        var finalizer = SplitMix64(seed: promptKey)
        return Double(finalizer.next() % 10_000) < fraction * 10_000
    }

    /// FNV-1a over the prompt tokens (those before the first answer token) and the images' SHA-256.
    static func promptKey(_ rec: SampleRecord) -> UInt64 {
        var h = FNV1a()
        let promptEnd = rec.lossMask.firstIndex(of: 1) ?? rec.tokens.count
        for t in rec.tokens[..<promptEnd] { withUnsafeBytes(of: t.littleEndian) { h.add($0) } }
        for im in rec.images { h.add([0]); h.add(im.sha256.utf8) }
        return h.value
    }

    /// Train and validation samples for a stage: stage 1 takes text samples, stage 2 image samples
    /// (and, `withText`, the text samples too).
    public func split(validationFraction: Double, stage: Int, withText: Bool = false, by rule: ValidationSplit = .id) -> (train: [Int], validation: [Int]) {
        var train: [Int] = [], val: [Int] = []
        for (i, s) in samples.enumerated() where (stage == 1) != s.hasImage || (stage == 2 && withText) {
            let held = rule == .id ? Self.isValidation(id: s.id, fraction: validationFraction)
                                   : Self.isValidation(promptKey: s.promptKey, fraction: validationFraction)
            if held { val.append(i) } else { train.append(i) }
        }
        return (train, val)
    }

    /// How many of `validation` have a prompt that some sample of `train` has too: validation on
    /// those scores recall of a training answer, not generalisation.
    public func repeatedPrompts(train: [Int], validation: [Int]) -> Int {
        let seen = Set(train.map { samples[$0].promptKey })
        return validation.filter { seen.contains(samples[$0].promptKey) }.count
    }

    /// The split a training run with these options uses.
    public func split(for options: TrainOptions) -> (train: [Int], validation: [Int]) {
        split(validationFraction: options.validationFraction, stage: options.stage, withText: options.withText == true,
              by: options.validationSplit ?? .id)
    }

    /// The draft vocabulary: the V most frequent answer tokens of `sampleIndices` (descending
    /// count, ties by id); tokens never seen fill up by id so that d2t always has V rows.
    public func draftVocabulary(size v: Int, sampleIndices: [Int]) throws -> [Int32] {
        Self.topTokens(counts: try answerTokenCounts(sampleIndices), size: v)
    }

    /// The share of the answer tokens of `sampleIndices` that `vocabulary` contains: what a draft
    /// head over it can propose at all (a token outside it is never drafted). 1 when there are none.
    public func vocabularyCoverage(_ vocabulary: [Int32], sampleIndices: [Int]) throws -> Double {
        let counts = try answerTokenCounts(sampleIndices)
        let all = counts.reduce(0, +)
        let held = Set(vocabulary).reduce(0) { $0 + ($1 >= 0 && Int($1) < vocabSize ? counts[Int($1)] : 0) }
        return all == 0 ? 1 : Double(held) / Double(all)
    }

    /// How often each token id occurs as an answer token (loss mask set) in `sampleIndices`.
    func answerTokenCounts(_ sampleIndices: [Int]) throws -> [Int] {
        var counts = [Int](repeating: 0, count: vocabSize)
        for i in sampleIndices {
            let r = try record(samples[i])
            for (t, m) in zip(r.tokens, r.lossMask) where m != 0 && t >= 0 && Int(t) < vocabSize { counts[Int(t)] += 1 }
        }
        return counts
    }

    static func topTokens(counts: [Int], size v: Int) -> [Int32] {
        let order = (0..<counts.count).sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }
        return order.prefix(v).map { Int32($0) }
    }
}

/// How records become draft sequences (docs/draft-design.md, "Sequences and indexing").
public struct SequenceBuilder {
    public var width: Int
    public var numQ: Int
    /// Target positions kept per sample (longer samples are cut).
    public var maxLength: Int
    /// Uniform feature noise U(−a·s, a·s), s the row's RMS (EAGLE's input noise); 0 = none.
    public var noise: Float
    /// EAGLE-3: the aux layers (ids) the records must hold; their states become the entries'
    /// features. Nil for the other archs.
    public var auxLayers: [Int]?
    /// Text entries after an image read its global feature (ViSpec; false: the ablation).
    public var globalFeature: Bool

    public init(width: Int, numQ: Int, maxLength: Int, noise: Float, auxLayers: [Int]? = nil, globalFeature: Bool = true) {
        self.width = width; self.numQ = numQ; self.maxLength = maxLength; self.noise = noise; self.auxLayers = auxLayers
        self.globalFeature = globalFeature
    }

    /// U(−a·s, a·s) noise on one row, s its RMS.
    func addNoise(_ f: inout [Float], _ g: inout SplitMix64) {
        var ss: Float = 0
        for x in f { ss += x * x }
        let a = noise * (ss / Float(f.count)).squareRoot()
        for i in 0..<f.count { f[i] += (g.nextUnit() * 2 - 1) * a }
    }

    /// `rng`: the noise stream of this (seed, step, sample); nil = no noise (validation).
    public func build(_ r: SampleRecord, embedder: TokenEmbedder, images: ImageEmbedder?, datasetDir: String,
                      rng: SplitMix64?, file: String = "<sample>") throws -> DraftSequence {
        let d = width
        let n = min(r.tokens.count, maxLength)
        guard r.hidden.width == d, r.hidden.rows == r.tokens.count else {
            throw TrainingError(file: file, field: "sample \(r.index).hidden", reason: "\(r.hidden.rows) × \(r.hidden.width), expected \(r.tokens.count) × \(d)")
        }
        let h = r.hidden.floats()
        let aux = auxLayers?.count ?? 0
        if aux > 0 {
            guard r.auxHidden.count == aux, r.auxHidden.allSatisfy({ $0.rows == r.tokens.count && $0.width == d }) else {
                throw TrainingError(file: file, field: "sample \(r.index).aux_hidden",
                                    reason: "\(r.auxHidden.count) aux layer states, expected \(aux) (layers \(auxLayers!)) of \(r.tokens.count) × \(d)")
            }
        }
        let auxAll = aux > 0 ? r.auxFeatures() : []
        // Image spans: maximal runs of the image mask, in order.
        var spans: [(start: Int, rows: Int)] = []
        var t = 0
        while t < r.tokens.count {
            if r.imageMask[t] != 0 {
                var e = t
                while e < r.tokens.count && r.imageMask[e] != 0 { e += 1 }
                spans.append((t, e - t)); t = e
            } else { t += 1 }
        }
        var imgs: [[Float]] = [], imgRows: [Int] = []
        // With the adapter the image rows are compressed; without it (numQ = 0: an EAGLE-style
        // draft trained on image samples, ViSpec's baseline) each image row is the input at its
        // position, as `EagleDraft.accept` feeds them at decode time. Either way they come from
        // the tower.
        if !spans.isEmpty {
            guard spans.count == r.images.count else {
                throw TrainingError(file: file, field: "sample \(r.index).images", reason: "\(spans.count) image spans in the mask but \(r.images.count) images")
            }
            guard let emb = images else {
                throw TrainingError(file: file, field: "sample \(r.index).images", reason: "an image sample needs the vision tower (--mmproj)")
            }
            for (k, ref) in r.images.enumerated() {
                let e = try emb.embeddings(for: ref, datasetDir: datasetDir)
                guard e.rows == spans[k].rows, e.data.count == e.rows * d else {
                    throw TrainingError(file: file, field: "sample \(r.index).images[\(k)]",
                                        reason: "the tower gives \(e.rows) rows of width \(e.data.count / max(e.rows, 1)), the sample's span has \(spans[k].rows) of width \(d)")
                }
                imgs.append(e.data); imgRows.append(e.rows)
            }
        }
        var seq = DraftSequence(count: 0, positions: [], inputs: [], compImage: [], compRow: [], features: [], globalOf: [],
                                images: imgs, imageRows: imgRows, targetHidden: [], nextToken: [], lossMask: [])
        var row = [Float](repeating: 0, count: d)
        var rng = rng
        for t in 0..<max(n - 1, 0) {
            let p = t + 1
            var ci = -1, cr = -1
            var imageRow: (span: Int, row: Int)? = nil
            switch DraftEntryLayout.input(next: p, spans: spans, numQ: numQ) {
            case .dropped: continue
            case .compressed(let span, let row): ci = span; cr = row
            case .imageRow(let span, let row): imageRow = (span, row)
            case .token: break
            }
            seq.positions.append(t)
            seq.compImage.append(ci); seq.compRow.append(cr)
            if let (s, o) = imageRow {
                seq.inputs += imgs[s][(o * d)..<((o + 1) * d)]
            } else if ci < 0 {
                row.withUnsafeMutableBufferPointer { embedder.embed(r.tokens[p], into: $0.baseAddress!) }
                seq.inputs += row
            } else {
                seq.inputs += [Float](repeating: 0, count: d)
            }
            var f = Array(h[(t * d)..<((t + 1) * d)])
            if noise > 0, var g = rng {
                var ss: Float = 0
                for x in f { ss += x * x }
                let a = noise * (ss / Float(d)).squareRoot()
                for i in 0..<d { f[i] += (g.nextUnit() * 2 - 1) * a }
                rng = g
            }
            seq.features += f
            if aux > 0 {
                // Each layer's row gets noise scaled by its own RMS (the layers' scales differ).
                for l in 0..<aux {
                    var a = Array(auxAll[((t * aux + l) * d)..<((t * aux + l + 1) * d)])
                    if noise > 0, var g = rng { addNoise(&a, &g); rng = g }
                    seq.auxFeatures += a
                }
            }
            seq.globalOf.append(numQ > 0 && globalFeature ? (DraftEntryLayout.globalSpan(next: p, spans: spans) ?? -1) : -1)
            seq.targetHidden += h[(p * d)..<((p + 1) * d)]
            let next = p + 1 < n ? r.tokens[p + 1] : -1
            seq.nextToken.append(next)
            seq.lossMask.append(p + 1 < n && r.lossMask[p + 1] != 0 && r.imageMask[p + 1] == 0)
        }
        seq.count = seq.positions.count
        return seq
    }
}
