import Foundation
import Kernels
import Llama
import Shards
import Vision

/// `data features`: the target's hidden states recomputed for the tokens an existing dataset
/// already holds, by teacher forcing (one batched forward per record over all its tokens), so
/// that other features — EAGLE-3's layer states, another encoding — cost a prefill, not a new
/// generation. The kernels are batch-invariant, so a position's states are bit for bit the ones
/// its token got while being generated on the same machine class: the output is the dataset
/// `synth-data` would have written with these `--hidden`/`--hidden-layers`, and the summary
/// counts the records whose recomputed final states equal the stored ones.
public final class FeatureExtractor {
    let model: any TargetModel
    let modelInfo: ModelInfo
    let tower: (encoder: any VisionEncoder, info: TowerInfo)?
    let auxLayers: [Int]
    let encoding: HiddenEncoding?
    let zstdLevel: Int?
    private var session: (any TargetSession)?

    /// `encoding`/`zstdLevel` nil: the source's.
    public init(model: any TargetModel, modelInfo: ModelInfo, tower: (encoder: any VisionEncoder, info: TowerInfo)?,
                auxLayers: [Int], encoding: HiddenEncoding?, zstdLevel: Int?) {
        self.model = model; self.modelInfo = modelInfo; self.tower = tower
        self.auxLayers = auxLayers; self.encoding = encoding; self.zstdLevel = zstdLevel
    }

    /// The output header: the source's, with the new hidden states.
    func header(from h: ShardHeader, path: String) throws -> ShardHeader {
        guard h.model.sha256 == modelInfo.sha256 else {
            throw DataError(file: path, field: "model", reason: "written with \(h.model.file) (SHA-256 \(h.model.sha256.prefix(12))…), not \(modelInfo.file) (\(modelInfo.sha256.prefix(12))…): only the model that wrote the tokens gives their features")
        }
        if let t = h.tower, let mine = tower, t.sha256 != mine.info.sha256 {
            throw DataError(file: path, field: "tower", reason: "written with the tower \(t.file) (SHA-256 \(t.sha256.prefix(12))…), not \(mine.info.file): give that tower with --mmproj")
        }
        let enc = encoding ?? h.hidden.encoding
        guard enc != .none else {
            throw DataError(file: path, field: "hidden", reason: "the source stores no hidden states: choose --hidden fp16 or int8")
        }
        return ShardHeader(model: h.model, tower: h.tower, source: h.source, generation: h.generation, hidden: enc,
                           zstdLevel: zstdLevel ?? h.zstdLevel, samples: h.samples, shard: h.shard,
                           auxLayers: auxLayers.isEmpty ? nil : auxLayers)
    }

    /// `record` with its states recomputed; `same`: its final states equal the stored ones.
    func recompute(_ record: SampleRecord, encoding: HiddenEncoding, path: String) throws -> (record: SampleRecord, same: Bool) {
        let n = record.tokens.count, width = model.width
        guard n > 0 else { return (record, true) }
        if session == nil || session!.contextSize < n { session = model.makeTargetSession(contextSize: n) }
        guard let session, session.contextSize >= n else {
            throw DataError(file: path, field: "tokens", reason: "sample \(record.index) has \(n) tokens, more than the model's context")
        }
        session.truncate(to: 0)
        let capture = auxLayers.map { $0 - 1 }
        let out: ForwardOutput
        if record.imageMask.contains(1) {
            out = try session.forward(embeddings: try inputRows(record, path: path), logits: .none, captureLayers: capture)
        } else {
            out = try session.forward(tokens: record.tokens, logits: .none, captureLayers: capture)
        }
        var r = record
        r.hidden = HiddenStates.encode(out.hidden, rows: n, width: width, as: encoding)
        r.auxHidden = capture.map { HiddenStates.encode(out.layerStates[$0]!, rows: n, width: width, as: encoding) }
        // Compared in the source's encoding, whatever the output's.
        let same = record.hidden.encoding == encoding ? r.hidden == record.hidden
            : HiddenStates.encode(out.hidden, rows: n, width: width, as: record.hidden.encoding) == record.hidden
        return (r, same)
    }

    /// Token embeddings, with the tower's rows of the record's images at its image positions.
    private func inputRows(_ record: SampleRecord, path: String) throws -> [Float] {
        guard let tower else {
            throw DataError(file: path, field: "image", reason: "sample \(record.index) has images: give the tower that made the dataset (--mmproj TOWER.gguf)")
        }
        var imageRows: [Float] = []
        for ref in record.images {
            guard let bytes = ref.embedded else {
                throw DataError(file: path, field: "image", reason: "sample \(record.index): the image \(ref.path) is not embedded in the record")
            }
            let image: RGBImage
            do { image = try ImageDecoder.decode(bytes, name: ref.path) } catch {
                throw DataError(file: path, field: "image", reason: "sample \(record.index): \(error)")
            }
            imageRows += tower.encoder.encode(image).data
        }
        let width = model.width
        var rows = [Float](repeating: 0, count: record.tokens.count * width)
        var next = 0
        try rows.withUnsafeMutableBufferPointer { dst in
            for (i, t) in record.tokens.enumerated() {
                let row = dst.baseAddress! + i * width
                if record.imageMask[i] != 0 {
                    guard next + width <= imageRows.count else {
                        throw DataError(file: path, field: "image_mask", reason: "sample \(record.index) has more image positions than its images give rows")
                    }
                    imageRows.withUnsafeBufferPointer { src in row.update(from: src.baseAddress! + next, count: width) }
                    next += width
                } else {
                    guard t >= 0, Int(t) < model.vocabSize else {
                        throw DataError(file: path, field: "tokens", reason: "sample \(record.index): token \(t) at position \(i) is outside the vocabulary")
                    }
                    model.embed(token: t, into: row)
                }
            }
        }
        guard next == imageRows.count else {
            throw DataError(file: path, field: "image_mask", reason: "sample \(record.index): its images give \(imageRows.count / width) rows, its image mask \(next / width)")
        }
        return rows
    }
}

/// What `data features` did.
public struct FeatureSummary: Codable, Sendable {
    public var source: String
    public var out: String
    public var shards: Int
    public var records: Int
    public var resumedRecords: Int
    public var recomputedRecords: Int
    /// Recomputed records whose final-norm states equal the stored ones bit for bit.
    public var identicalHidden: Int
    public var positions: Int
    public var seconds: Double
    public var positionsPerSecond: Double
    public var bytes: Int
}

/// Progress after each record.
public struct FeatureProgress: Sendable {
    public var done: Int
    public var total: Int
    public var positions: Int
    public var seconds: Double
}

/// Writes `out`: every shard of the finished dataset in `source`, each record with its states
/// recomputed (resuming an interrupted run: each shard's complete records are kept).
public func extractFeatures(source: String, out: String, extractor: FeatureExtractor,
                            progress: (FeatureProgress) -> Void = { _ in }) throws -> FeatureSummary {
    let check = verifyDataset(dir: source)
    if let f = check.faults.first {
        throw DataError(file: f.file, field: f.field, offset: f.offset, reason: "\(f.reason) — \(source) does not verify (specdec data verify \(source)); features need a finished dataset (data snapshot makes one of a running job)")
    }
    guard (out as NSString).standardizingPath != (source as NSString).standardizingPath else {
        throw DataError(file: out, field: "--out", reason: "must differ from the source folder")
    }
    do { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
        throw DataError(file: out, field: "--out", reason: "cannot create the folder: \(error.localizedDescription)")
    }
    let start = monotonicSeconds()
    var summary = FeatureSummary(source: source, out: out, shards: check.shards.count, records: 0, resumedRecords: 0, recomputedRecords: 0,
                                 identicalHidden: 0, positions: 0, seconds: 0, positionsPerSecond: 0, bytes: 0)
    var p = FeatureProgress(done: 0, total: check.shards.reduce(0) { $0 + $1.entry.records }, positions: 0, seconds: 0)
    var manifests: [String: (samples: Int, entries: [DatasetManifest.Entry])] = [:]
    for shard in check.shards {
        let reader = try ShardReader(path: shard.path)
        let header = try extractor.header(from: reader.header, path: shard.path)
        let outPath = (out as NSString).appendingPathComponent(header.shard.shardFileName)
        let written: ShardReader
        if FileManager.default.fileExists(atPath: outPath) {
            written = try ShardReader(path: outPath)
            guard written.headerJSON == header.jsonBytes(), written.recordCount == reader.recordCount else {
                throw DataError(file: outPath, field: "header", reason: "already written from another source or with other settings: use another --out, or delete it")
            }
            p.done += written.recordCount
            summary.resumedRecords += written.recordCount
        } else {
            let writer = try ShardWriter(path: outPath, header: header)
            summary.resumedRecords += writer.resumedRecords
            p.done += writer.entries.count
            for k in writer.entries.count..<reader.recordCount {
                let (record, same) = try extractor.recompute(try reader.record(k), encoding: header.hidden.encoding, path: shard.path)
                try writer.append(record)
                summary.recomputedRecords += 1
                if same { summary.identicalHidden += 1 }
                p.done += 1
                p.positions += record.tokens.count
                p.seconds = monotonicSeconds() - start
                progress(p)
            }
            try writer.finish()
            written = try ShardReader(path: outPath)
        }
        let name = header.shard.manifestFileName
        manifests[name, default: (header.samples, [])].entries.append(try DatasetManifest.Entry(reader: written, path: outPath))
        summary.records += written.recordCount
        summary.bytes += written.fileSize
    }
    for (name, m) in manifests {
        try DatasetManifest(samples: m.samples, shards: m.entries.sorted { $0.file < $1.file })
            .write(to: (out as NSString).appendingPathComponent(name))
    }
    summary.positions = p.positions
    summary.seconds = monotonicSeconds() - start
    summary.positionsPerSecond = summary.seconds > 0 ? Double(p.positions) / summary.seconds : 0
    return summary
}
