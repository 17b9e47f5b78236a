import Draft
import Foundation
import SafeTensors

/// Where training stands: enough to continue exactly.
public struct DataCursor: Codable, Equatable, Sendable {
    /// Epoch being read and the next position in its permutation.
    public var epoch: Int
    public var position: Int
    public init(epoch: Int = 0, position: Int = 0) { self.epoch = epoch; self.position = position }
}

/// The `__metadata__` of a draft checkpoint (docs/draft-design.md).
public struct CheckpointMeta: Equatable, Sendable {
    public var config: DraftConfig
    public var targetSHA256: String
    public var towerSHA256: String?
    public var step: Int
    public var seed: UInt64
    public var dataManifestSHA256: String
    /// JSON of the arguments that shape the loss curve (a resumed run must match them).
    public var trainArgs: String
    /// Resumable checkpoints only.
    public var rngState: String?
    public var dataCursor: DataCursor?
    /// Shipped drafts: `{"first", "decay"}` fitted to the validation chains, which
    /// `--tree-tokens auto` reads (Verify's `AcceptanceModel`).
    public var acceptance: String?

    public init(config: DraftConfig, targetSHA256: String, towerSHA256: String?, step: Int, seed: UInt64,
                dataManifestSHA256: String, trainArgs: String, rngState: String? = nil, dataCursor: DataCursor? = nil) {
        self.config = config; self.targetSHA256 = targetSHA256; self.towerSHA256 = towerSHA256; self.step = step; self.seed = seed
        self.dataManifestSHA256 = dataManifestSHA256; self.trainArgs = trainArgs; self.rngState = rngState; self.dataCursor = dataCursor
    }
}

public struct LoadedCheckpoint {
    public var params: DraftParameters
    public var d2t: [Int32]
    public var meta: CheckpointMeta
    /// AdamW moments (nil in a shipped draft).
    public var m: [Float]?
    public var v: [Float]?
    /// Every tensor name of the file (for `--init`: which ones match).
    public var names: [String]
}

public enum Checkpoint {
    static func json<T: Encodable>(_ v: T) -> String {
        let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]
        return String(decoding: try! e.encode(v), as: UTF8.self)
    }

    /// Writes atomically (temporary file, then rename). `optimizer`: the moments, for resumable
    /// checkpoints; `dtype`: F32, F16 or BF16 for the weights (moments always F32).
    public static func save(to path: String, params: DraftParameters, d2t: [Int32], meta: CheckpointMeta,
                            optimizer: (m: [Float], v: [Float])?, dtype: SafeTensorsDType = .F32) throws {
        var md = DraftCheckpoint.header(meta.config)
        md.merge([
            "target_sha256": meta.targetSHA256, "step": String(meta.step), "seed": String(meta.seed),
            "data_manifest_sha256": meta.dataManifestSHA256, "train_args": meta.trainArgs,
        ]) { $1 }
        if let t = meta.towerSHA256 { md["tower_sha256"] = t }
        if let r = meta.rngState { md["rng_state"] = r }
        if let c = meta.dataCursor { md["data_cursor"] = json(c) }
        if let a = meta.acceptance { md["acceptance"] = a }
        var w = SafeTensorsWriter(metadata: md)
        for s in params.slots {
            let v = Array(params.values[s.offset..<(s.offset + s.count)])
            try w.add(s.name, floats: v, shape: s.shape, as: dtype)
            if let o = optimizer, s.trainable {
                try w.add("optimizer.m." + s.name, floats: Array(o.m[s.offset..<(s.offset + s.count)]), shape: s.shape, as: .F32)
                try w.add("optimizer.v." + s.name, floats: Array(o.v[s.offset..<(s.offset + s.count)]), shape: s.shape, as: .F32)
            }
        }
        if params.config.vocab != params.config.targetVocab { try w.add("d2t", int32s: d2t, shape: [d2t.count]) }
        try w.write(to: path)
    }

    /// Reads and checks a checkpoint with the one draft reader (`DraftCheckpoint`: format,
    /// version, config, every tensor's presence, shape, dtype and values, d2t), then the training
    /// metadata and, when present, complete optimizer state.
    public static func load(_ path: String) throws -> LoadedCheckpoint {
        let ck = try DraftCheckpoint(path: path, target: nil)
        let f = ck.file, config = ck.config
        func fail(_ field: String, _ why: String) -> TrainingError { TrainingError(file: path, field: field, reason: why) }
        func meta(_ k: String) throws -> String {
            guard let v = f.metadata[k] else { throw fail("__metadata__.\(k)", "missing (not a specdec training checkpoint?)") }
            return v
        }
        guard let step = Int(try meta("step")), step >= 0 else { throw fail("__metadata__.step", "not a step count") }
        guard let seed = UInt64(try meta("seed")) else { throw fail("__metadata__.seed", "not an unsigned integer") }
        var cursor: DataCursor? = nil
        if let c = f.metadata["data_cursor"] {
            guard let v = try? JSONDecoder().decode(DataCursor.self, from: Data(c.utf8)) else { throw fail("__metadata__.data_cursor", "unreadable") }
            cursor = v
        }
        let m = CheckpointMeta(config: config, targetSHA256: try meta("target_sha256"), towerSHA256: f.metadata["tower_sha256"],
                               step: step, seed: seed, dataManifestSHA256: try meta("data_manifest_sha256"),
                               trainArgs: f.metadata["train_args"] ?? "{}", rngState: f.metadata["rng_state"], dataCursor: cursor)
        var params = DraftParameters(config: config)
        var mom: [Float]? = nil, vel: [Float]? = nil
        let hasOptimizer = f.names.contains { $0.hasPrefix("optimizer.") }
        if hasOptimizer { mom = [Float](repeating: 0, count: params.count); vel = mom }
        for s in params.slots {
            params.set(s.name, ck.tensors[s.name]!)
            if hasOptimizer && s.trainable {
                for (prefix, isM) in [("optimizer.m.", true), ("optimizer.v.", false)] {
                    let n = prefix + s.name
                    guard f.contains(n) else { throw fail(n, "tensor missing (the optimizer state is incomplete)") }
                    guard try f.shape(n) == s.shape, try f.dtype(n) == .F32 else { throw fail(n, "expected F32 \(s.shape)") }
                    let vals = try f.floats(n)
                    for i in 0..<s.count { if isM { mom![s.offset + i] = vals[i] } else { vel![s.offset + i] = vals[i] } }
                }
            }
        }
        let d2t = ck.d2t ?? (0..<config.vocab).map { Int32($0) }
        return LoadedCheckpoint(params: params, d2t: d2t, meta: m, m: mom, v: vel, names: f.names)
    }
}
