import Foundation
import Kernels

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
