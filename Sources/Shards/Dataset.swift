#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GGUF

/// `manifest.json`: the shards of a dataset with their SHA-256, sizes and counts.
public struct DatasetManifest: Codable, Equatable, Sendable {
    public var format = "specdec-dataset"
    public var version = 1
    /// Samples in the whole dataset (all shards of all workers).
    public var samples: Int
    public var shards: [Entry]

    public struct Entry: Codable, Equatable, Sendable {
        public var file: String
        public var sha256: String
        public var bytes: Int
        public var records: Int
        public var tokens: Int
        public var answerTokens: Int
        /// What the final-norm hidden states would take as raw fp16 (tokens × width × 2; version
        /// 2's auxiliary layer states are not counted).
        public var rawFp16HiddenBytes: Int
        public var shard: ShardSpec

        public init(reader: ShardReader, path: String) throws {
            file = (path as NSString).lastPathComponent
            sha256 = try SHA256.hexOfFile(path)
            bytes = reader.fileSize
            records = reader.recordCount
            tokens = reader.entries.reduce(0) { $0 + $1.tokenCount }
            answerTokens = reader.entries.reduce(0) { $0 + $1.answerTokens }
            rawFp16HiddenBytes = tokens * reader.header.model.width * 2
            shard = reader.header.shard
        }
    }

    public init(samples: Int, shards: [Entry]) { self.samples = samples; self.shards = shards }

    public static func load(_ path: String) throws -> DatasetManifest {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(file: path, field: "manifest", reason: "cannot read")
        }
        let m: DatasetManifest
        do { m = try jsonDecoder().decode(DatasetManifest.self, from: data) } catch {
            throw DataError(file: path, field: "manifest", reason: "invalid: \(describeDecodingError(error))")
        }
        guard m.format == "specdec-dataset" else { throw DataError(file: path, field: "format", reason: "\"\(m.format)\", expected \"specdec-dataset\"") }
        guard m.version == 1 else { throw DataError(file: path, field: "version", reason: "unsupported manifest version \(m.version) (this specdec reads 1)") }
        return m
    }

    public func write(to path: String) throws {
        var data = Array(try jsonEncoderPretty().encode(self))
        data.append(UInt8(ascii: "\n"))
        do { try writeAtomically(data, to: path) } catch {
            throw DataError(file: path, field: "manifest", reason: "\(error)")
        }
    }
}

func jsonEncoderPretty() -> JSONEncoder {
    let e = jsonEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
    return e
}

/// The manifests of a dataset folder: `manifest.json`, else every worker's `manifest-i-of-N.json`.
public func manifestPaths(in dir: String) -> (paths: [String], complete: Bool) {
    let main = (dir as NSString).appendingPathComponent("manifest.json")
    if FileManager.default.fileExists(atPath: main) { return ([main], true) }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    let parts = names.filter { $0.hasPrefix("manifest-") && $0.hasSuffix(".json") }.sorted()
    return (parts.map { (dir as NSString).appendingPathComponent($0) }, false)
}

/// A shard as listed by a manifest, checked.
public struct CheckedShard: Sendable {
    public var path: String
    public var entry: DatasetManifest.Entry
    public var check: ShardCheck
}

/// What `data verify` found.
public struct DatasetCheck: Sendable {
    public var dir: String
    public var faults: [DataError] = []
    public var notes: [String] = []
    public var shards: [CheckedShard] = []
    public var samples = 0
    /// Distinct sample indices present.
    public var covered = 0
    /// A `manifest.json` (not only per-worker manifests) was found.
    public var complete = false
    public var ok: Bool { faults.isEmpty }
}

/// Checks a dataset folder: each manifest, each listed shard's size and SHA-256, every byte of
/// every shard (`verifyShard`), manifest counts against the shards, one set of settings, and that
/// the sample indices are distinct and (with `manifest.json`) cover 0 ..< samples.
public func verifyDataset(dir: String) -> DatasetCheck {
    var c = DatasetCheck(dir: dir)
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
        c.faults.append(DataError(file: dir, field: "folder", reason: "not a folder"))
        return c
    }
    let (paths, complete) = manifestPaths(in: dir)
    c.complete = complete
    if paths.isEmpty {
        c.faults.append(DataError(file: (dir as NSString).appendingPathComponent("manifest.json"), field: "manifest",
                                  reason: "missing: not a finished dataset (an interrupted synth-data run leaves .tmp shards: rerun it)"))
    }
    var listed: [String: String] = [:]   // shard file -> manifest
    var identity: (ShardHeader, String)? = nil
    var samples: Int? = nil
    for mpath in paths {
        let m: DatasetManifest
        do { m = try DatasetManifest.load(mpath) } catch let e as DataError { c.faults.append(e); continue } catch {
            c.faults.append(DataError(file: mpath, field: "manifest", reason: "\(error)")); continue
        }
        if let s = samples, s != m.samples {
            c.faults.append(DataError(file: mpath, field: "samples", reason: "\(m.samples), but another manifest says \(s)"))
        }
        samples = samples ?? m.samples
        for (k, e) in m.shards.enumerated() {
            let field = "shards[\(k)]"
            guard !e.file.isEmpty, !e.file.contains("/"), e.file != "..", e.file != "." else {
                c.faults.append(DataError(file: mpath, field: "\(field).file", reason: "\"\(e.file)\" is not a file name in the dataset folder")); continue
            }
            if let other = listed[e.file] {
                c.faults.append(DataError(file: mpath, field: "\(field).file", reason: "\(e.file) is listed twice (also in \((other as NSString).lastPathComponent))")); continue
            }
            listed[e.file] = mpath
            let path = (dir as NSString).appendingPathComponent(e.file)
            guard fm.fileExists(atPath: path) else {
                c.faults.append(DataError(file: mpath, field: "\(field).file", reason: "\(e.file) is listed but missing")); continue
            }
            let size = (try? fm.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? -1
            if size != e.bytes {
                c.faults.append(DataError(file: mpath, field: "\(field).bytes", reason: "\(e.bytes), but \(e.file) has \(size) bytes"))
            }
            if let sha = try? SHA256.hexOfFile(path), sha != e.sha256 {
                c.faults.append(DataError(file: mpath, field: "\(field).sha256", reason: "\(e.sha256), but \(e.file) hashes to \(sha)"))
            }
            let check = verifyShard(path: path)
            c.faults += check.faults
            if let h = check.header {
                if h.samples != m.samples {
                    c.faults.append(DataError(file: mpath, field: "samples", reason: "\(m.samples), but \(e.file)'s header says \(h.samples)"))
                }
                if h.shard != e.shard {
                    c.faults.append(DataError(file: mpath, field: "\(field).shard", reason: "\(e.shard), but \(e.file)'s header says \(h.shard)"))
                }
                if let (first, from) = identity {
                    let diff = h.datasetIdentity.differences(from: first.datasetIdentity)
                    if !diff.isEmpty {
                        c.faults.append(DataError(file: path, field: "header", reason: "a different dataset than \((from as NSString).lastPathComponent) (\(diff.joined(separator: ", ")) differ)"))
                    }
                } else {
                    identity = (h, path)
                }
                if check.faults.isEmpty {
                    let tokens = check.entries.reduce(0) { $0 + $1.tokenCount }
                    let answers = check.entries.reduce(0) { $0 + $1.answerTokens }
                    for (name, claimed, actual) in [("records", e.records, check.entries.count), ("tokens", e.tokens, tokens),
                                                    ("answer_tokens", e.answerTokens, answers),
                                                    ("raw_fp16_hidden_bytes", e.rawFp16HiddenBytes, tokens * h.model.width * 2)] where claimed != actual {
                        c.faults.append(DataError(file: mpath, field: "\(field).\(name)", reason: "\(claimed), but \(e.file) holds \(actual)"))
                    }
                }
            }
            c.shards.append(CheckedShard(path: path, entry: e, check: check))
        }
    }
    c.samples = samples ?? 0
    let names = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    for n in names where n.hasSuffix(".sds") && listed[n] == nil {
        c.faults.append(DataError(file: (dir as NSString).appendingPathComponent(n), field: "manifest", reason: "a shard that no manifest lists"))
    }
    for n in names where n.hasSuffix(".sds.tmp") {
        c.notes.append("\(n): an unfinished shard (rerun its synth-data command to finish it)")
    }
    // Coverage.
    var seen: [Int: String] = [:]
    var duplicates: [String] = []
    for s in c.shards {
        for e in s.check.entries {
            if let other = seen[e.sampleIndex] {
                duplicates.append("sample \(e.sampleIndex) in \(other) and \((s.path as NSString).lastPathComponent)")
            } else {
                seen[e.sampleIndex] = (s.path as NSString).lastPathComponent
            }
        }
    }
    if !duplicates.isEmpty {
        c.faults.append(DataError(file: dir, field: "samples", reason: "\(duplicates.count) duplicated: \(duplicates.prefix(3).joined(separator: "; "))\(duplicates.count > 3 ? "; …" : "")"))
    }
    c.covered = seen.count
    let missing = (0..<c.samples).filter { seen[$0] == nil }
    if !missing.isEmpty {
        let list = missing.prefix(8).map(String.init).joined(separator: ", ") + (missing.count > 8 ? ", …" : "")
        if complete {
            c.faults.append(DataError(file: dir, field: "samples", reason: "\(missing.count) of \(c.samples) samples missing: \(list)"))
        } else {
            c.notes.append("partial: \(c.covered) of \(c.samples) samples present (per-worker manifests only; join the workers' folders with specdec data merge)")
        }
    }
    return c
}

/// `data inspect`: counts, sizes and one sample.
public struct DatasetSummary: Codable, Sendable {
    public var dir: String
    public var shards: Int
    public var samples: Int
    public var records: Int
    public var tokens: Int
    public var promptTokens: Int
    public var answerTokens: Int
    public var bytes: Int
    public var bytesPerSample: Double
    public var rawFp16HiddenBytes: Int
    public var compressionRatio: Double
    public var hiddenEncoding: String
    public var hiddenWidth: Int
    public var model: ModelInfo?
    public var tower: TowerInfo?
    public var source: SourceInfo?
    public var generation: GenerationSettings?
    public var zstdLevel: Int?
    public var stopReasons: [String: Int]
    public var faults: [String]
    public var sample: SampleView?

    public struct SampleView: Codable, Sendable {
        public var index: Int
        public var id: String
        public var tokens: Int
        public var answerTokens: Int
        public var imageTokens: Int
        public var stopReasons: [String]
        public var messages: [Message]
    }
}

public func summarizeDataset(dir: String, sample wanted: Int? = nil) throws -> DatasetSummary {
    let check = verifyDataset(dir: dir)
    let header = check.shards.lazy.compactMap { $0.check.header }.first
    var s = DatasetSummary(dir: dir, shards: check.shards.count, samples: check.samples, records: 0, tokens: 0, promptTokens: 0,
                           answerTokens: 0, bytes: 0, bytesPerSample: 0, rawFp16HiddenBytes: 0, compressionRatio: 0,
                           hiddenEncoding: header?.hidden.encoding.rawValue ?? "?", hiddenWidth: header?.hidden.width ?? 0,
                           model: header?.model, tower: header?.tower, source: header?.source, generation: header?.generation, zstdLevel: header?.zstdLevel,
                           stopReasons: [:], faults: check.faults.map(\.description), sample: nil)
    if check.shards.isEmpty, let f = check.faults.first { throw f }
    for sh in check.shards {
        s.records += sh.check.entries.count
        let t = sh.check.entries.reduce(0) { $0 + $1.tokenCount }
        let a = sh.check.entries.reduce(0) { $0 + $1.answerTokens }
        s.tokens += t; s.answerTokens += a
        s.bytes += sh.check.bytes
        s.rawFp16HiddenBytes += t * (sh.check.header?.model.width ?? 0) * 2
        for (k, v) in sh.check.stopReasons { s.stopReasons[k, default: 0] += v }
    }
    s.promptTokens = s.tokens - s.answerTokens
    s.bytesPerSample = s.records > 0 ? Double(s.bytes) / Double(s.records) : 0
    s.compressionRatio = s.bytes > 0 ? Double(s.rawFp16HiddenBytes) / Double(s.bytes) : 0
    // The sample to show: the wanted index, else the lowest present.
    var best: (ShardReader, Int)? = nil
    var bestIndex = Int.max
    for sh in check.shards where sh.check.header != nil {
        guard let reader = try? ShardReader(path: sh.path) else { continue }
        for (k, e) in reader.entries.enumerated() where (wanted.map { e.sampleIndex == $0 } ?? (e.sampleIndex < bestIndex)) {
            best = (reader, k); bestIndex = e.sampleIndex
        }
    }
    if let w = wanted, best == nil {
        throw DataError(file: dir, field: "--sample", reason: "no sample \(w) in the dataset")
    }
    if let (reader, k) = best, let r = try? reader.record(k) {
        s.sample = .init(index: r.index, id: r.id, tokens: r.tokens.count, answerTokens: r.answerTokenCount,
                         imageTokens: r.imageMask.reduce(0) { $0 + Int($1) }, stopReasons: r.stopReasons, messages: r.messages)
    }
    return s
}

/// What `data merge` did.
public struct MergeSummary: Codable, Sendable {
    public var out: String
    public var shards: [String]
    public var samples: Int
    public var copied: Int
    public var linked: Int
}

/// Joins the shards of one dataset, made by several workers into one or more folders, into `out`
/// with one `manifest.json`: every input must verify, all must share settings, and the sample
/// indices must be distinct and cover the dataset.
public func mergeDatasets(_ dirs: [String], out: String) throws -> MergeSummary {
    guard !dirs.isEmpty else { throw DataError(file: out, field: "inputs", reason: "no dataset folder to merge") }
    var shards: [(path: String, entry: DatasetManifest.Entry, header: ShardHeader)] = []
    var seenDirs = Set<String>()
    for dir in dirs {
        let real = (dir as NSString).standardizingPath
        guard seenDirs.insert(real).inserted else { throw DataError(file: dir, field: "inputs", reason: "given twice") }
        let c = verifyDataset(dir: dir)
        if let f = c.faults.first(where: { !($0.field == "samples" && $0.reason.contains("missing")) }) {
            throw DataError(file: f.file, field: f.field, offset: f.offset,
                            reason: "\(f.reason) — \(dir) does not verify (see specdec data verify \(dir)); merge refuses damaged input")
        }
        for s in c.shards { shards.append((s.path, s.entry, s.check.header!)) }
    }
    guard let first = shards.first else { throw DataError(file: dirs[0], field: "manifest", reason: "no shards") }
    for s in shards.dropFirst() {
        let diff = s.header.datasetIdentity.differences(from: first.header.datasetIdentity)
        guard diff.isEmpty else {
            throw DataError(file: s.path, field: "header", reason: "not the same dataset as \(first.path) (\(diff.joined(separator: ", ")) differ): merge joins the shards of one synth-data run; give several datasets to training instead")
        }
    }
    let samples = first.header.samples
    var owner: [Int: String] = [:]
    for s in shards {
        let reader = try ShardReader(path: s.path)
        for e in reader.entries {
            if let o = owner[e.sampleIndex] {
                throw DataError(file: s.path, field: "samples", reason: "sample \(e.sampleIndex) is also in \(o) (shard \(s.header.shard) given twice, or shards of different --shard counts)")
            }
            owner[e.sampleIndex] = s.path
        }
    }
    let missing = (0..<samples).filter { owner[$0] == nil }
    if !missing.isEmpty {
        let specs = Set(shards.map { $0.header.shard })
        var hint = ""
        if let n = shards.first?.header.shard.count, Set(shards.map { $0.header.shard.count }).count == 1 {
            let absent = (0..<n).filter { !specs.contains(ShardSpec(index: $0, count: n)) }
            if !absent.isEmpty { hint = " (no shard \(absent.prefix(5).map { "\($0)/\(n)" }.joined(separator: ", "))\(absent.count > 5 ? ", …" : ""))" }
        }
        throw DataError(file: out, field: "samples", reason: "\(missing.count) of \(samples) samples missing, e.g. \(missing.prefix(5).map(String.init).joined(separator: ", "))\(hint)")
    }
    let fm = FileManager.default
    do { try fm.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
        throw DataError(file: out, field: "--out", reason: "cannot create the folder: \(error.localizedDescription)")
    }
    var names = Set<String>()
    var entries: [DatasetManifest.Entry] = []
    var copied = 0, linked = 0
    for s in shards {
        let name = s.entry.file
        guard names.insert(name).inserted else { throw DataError(file: s.path, field: "file", reason: "two inputs have a shard named \(name)") }
        let dest = (out as NSString).appendingPathComponent(name)
        let same = (dest as NSString).standardizingPath == (s.path as NSString).standardizingPath
        if !same {
            if fm.fileExists(atPath: dest) {
                guard (try? SHA256.hexOfFile(dest)) == s.entry.sha256 else {
                    throw DataError(file: dest, field: "file", reason: "exists and differs from \(s.path): choose an empty --out")
                }
            } else {
                let tmp = dest + ".tmp-merge-\(getpid())"
                unlink(tmp)
                if link(s.path, tmp) == 0 {
                    linked += 1
                } else {
                    do { try fm.copyItem(atPath: s.path, toPath: tmp) } catch {
                        throw DataError(file: dest, field: "file", reason: "cannot copy \(s.path): \(error.localizedDescription)")
                    }
                    copied += 1
                }
                guard rename(tmp, dest) == 0 else { throw DataError(file: dest, field: "file", reason: "cannot rename into place: \(String(cString: strerror(errno)))") }
            }
        }
        entries.append(s.entry)
    }
    entries.sort { $0.file < $1.file }
    try DatasetManifest(samples: samples, shards: entries).write(to: (out as NSString).appendingPathComponent("manifest.json"))
    return MergeSummary(out: out, shards: entries.map(\.file), samples: samples, copied: copied, linked: linked)
}

/// Every record of a dataset in sample order (for training and tests).
public func readAllRecords(dir: String) throws -> [SampleRecord] {
    let (paths, _) = manifestPaths(in: dir)
    var out: [SampleRecord] = []
    for m in paths {
        let man = try DatasetManifest.load(m)
        for e in man.shards {
            let r = try ShardReader(path: (dir as NSString).appendingPathComponent(e.file))
            for k in 0..<r.recordCount { out.append(try r.record(k)) }
        }
    }
    return out.sorted { $0.index < $1.index }
}

/// What `data snapshot` wrote.
public struct SnapshotSummary: Codable, Sendable {
    public var source: String
    public var out: String
    public var records: Int
    public var samples: Int
}

/// A finished dataset from the complete records a running (or killed) `synth-data` has written so
/// far in `dir` (its one `.sds.tmp`, or a finished `.sds`): the same records and header except
/// `samples`, cut to what the records cover, so training can start before generation ends. The
/// source is only read; the running job goes on undisturbed.
/// `records`: keep only the first that many complete records (nested subsets of one synthesis,
/// for a data-scaling curve); nil: all of them.
public func snapshotDataset(_ dir: String, out: String, records limit: Int? = nil) throws -> SnapshotSummary {
    let fm = FileManager.default
    let names = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".sds") || $0.hasSuffix(".sds.tmp") }.sorted()
    guard names.count == 1 else {
        throw DataError(file: dir, field: "shards", reason: names.isEmpty ? "no shard (.sds or .sds.tmp) here" : "\(names.count) shards here; snapshot takes a folder of one synth-data worker")
    }
    let path = (dir as NSString).appendingPathComponent(names[0])
    let bytes = try readWholeFile(path)
    let reader = names[0].hasSuffix(".tmp") ? try ShardReader(unfinishedBytes: bytes, path: path) : try ShardReader(bytes: bytes, path: path)
    let kept = reader.entries.prefix(limit ?? reader.entries.count)
    guard let last = kept.last else { throw DataError(file: path, field: "records", reason: "no complete record yet") }
    if let limit, limit > kept.count {
        throw DataError(file: path, field: "records", reason: "\(limit) records asked for, \(kept.count) complete so far")
    }
    var header = reader.header
    header.samples = last.sampleIndex + 1
    try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
    let outPath = (out as NSString).appendingPathComponent(header.shard.shardFileName)
    guard (out as NSString).standardizingPath != (dir as NSString).standardizingPath else {
        throw DataError(file: out, field: "--out", reason: "must differ from the source folder")
    }
    if fm.fileExists(atPath: outPath) { try fm.removeItem(atPath: outPath) }
    try? fm.removeItem(atPath: outPath + ".tmp")
    let writer = try ShardWriter(path: outPath, header: header)
    for k in kept.indices { try writer.append(try reader.record(k)) }
    try writer.finish()
    let done = try ShardReader(path: outPath)
    try DatasetManifest(samples: header.samples, shards: [try DatasetManifest.Entry(reader: done, path: outPath)])
        .write(to: (out as NSString).appendingPathComponent(header.shard.manifestFileName))
    return SnapshotSummary(source: path, out: out, records: done.recordCount, samples: header.samples)
}
