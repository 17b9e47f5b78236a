import Diagnostics
import Draft
import COpenBLAS
import Shards
import Foundation
import Kernels
import Llama
import SafeTensors
import Vision

/// `specdec train-adapter`'s settings (the command line, parsed).
public struct TrainRunConfig: Sendable {
    public var modelPath: String
    public var towerPath: String?
    public var dataDirs: [String]
    public var out: String
    public var initPath: String?
    /// Start the draft's decoder layer from this target layer (its attention and MLP weights,
    /// dequantized; negative counts from the last), as "Try initializing the draft layer from the
    /// target's last layer" asks. Applied after `initPath`, so it wins for the layer's tensors.
    public var initFromTargetLayer: Int?
    public var epochs: Double?
    public var steps: Int?
    public var resume = false
    /// Train on the complete records of `.sds.tmp` shards of folders without a manifest.
    public var allowUnfinished = false
    public var saveEvery = 0
    public var saveDType: SafeTensorsDType = .F16
    public var threads = 1
    public var evalEvery = 0
    public var validationSamples = 40
    public var validationPositions = 1500
    public var chainDepth = 5
    public var warmupFraction = 0.05
    public var progress = true
    public var options = TrainOptions()

    public init(modelPath: String, dataDirs: [String], out: String) {
        self.modelPath = modelPath; self.dataDirs = dataDirs; self.out = out
    }

    /// The resumable f32 checkpoint kept next to `--out`: DRAFT.train.safetensors.
    public var trainCheckpointPath: String {
        let stem = out.hasSuffix(".safetensors") ? String(out.dropLast(".safetensors".count)) : out
        return stem + ".train.safetensors"
    }
    var stem: String { out.hasSuffix(".safetensors") ? String(out.dropLast(".safetensors".count)) : out }
    public var metricsPath: String { ((out as NSString).deletingLastPathComponent as NSString).appendingPathComponent("metrics.csv") }
    public var plotPath: String { stem + ".loss.svg" }
    public var reportPath: String { stem + ".report.json" }
}

/// What `--json` prints and `DRAFT.report.json` holds.
public struct TrainReport: Codable, Sendable {
    public var out: String
    public var checkpoint: String
    public var metrics: String
    public var plot: String
    public var stage: Int
    public var steps: Int
    public var resumedFrom: Int
    public var trainSamples: Int
    public var validationSamples: Int
    public var tokens: Int
    public var seconds: Double
    public var tokensPerSecond: Double
    public var stepsPerSecond: Double
    public var threads: Int
    public var finalTrainLoss: Double
    public var finalTrainTop1: Double
    public var validation: ValidationResult
    public var config: DraftConfig
    public var outBytes: Int
    public var trainArgs: TrainOptions

    enum CodingKeys: String, CodingKey {
        case out, checkpoint, metrics, plot, stage, steps, resumedFrom = "resumed_from", trainSamples = "train_samples"
        case validationSamples = "validation_samples", tokens, seconds, tokensPerSecond = "tokens_per_second"
        case stepsPerSecond = "steps_per_second", threads, finalTrainLoss = "final_train_loss", finalTrainTop1 = "final_train_top1"
        case validation, config, outBytes = "out_bytes", trainArgs = "train_args"
    }
}

func stderrLine(_ s: String) { FileHandle.standardError.write(Data((s).utf8)) }

/// Runs a whole training (or its continuation): loads the target and data, builds or restores
/// the draft, trains with progress, metrics and checkpoints, validates, writes the outputs.
public func runTraining(_ rc: TrainRunConfig) throws -> TrainReport {
    var opts = rc.options
    openblas_set_num_threads(Int32(max(rc.threads, 1)))
    let model = try LlamaModel(path: rc.modelPath, threads: rc.threads)
    let mc = model.config
    guard mc.ropeDim == mc.headDim, mc.ropeScale == 1 else {
        throw TrainingError(file: rc.modelPath, field: "rope", reason: "the draft supports full-head RoPE without scaling (rope dim \(mc.ropeDim) of \(mc.headDim), scale \(mc.ropeScale))")
    }
    let data = try TrainingData(dirs: rc.dataDirs, allowUnfinished: rc.allowUnfinished)
    // EAGLE-3 reads the states entering its aux layers: every shard must hold exactly those.
    if opts.arch == .eagle3 {
        let want = opts.auxLayers ?? DraftConfig.defaultAuxLayers(layerCount: mc.layerCount)
        for r in data.readers.joined() where r.header.hidden.auxLayers != want {
            throw TrainingError(file: r.path, field: "hidden.aux_layers",
                                reason: r.header.hidden.auxLayers.map { "the shard holds the inputs of target layers \($0), but the draft reads layers \(want) (--aux-layers; or synthesize with --hidden-layers \(want.map(String.init).joined(separator: ",")))" }
                                    ?? "the shard has no aux layer states (format version 1), but an eagle3 draft reads layers \(want): synthesize with --hidden-layers \(want.map(String.init).joined(separator: ","))")
        }
    } else if let a = opts.arch, a != .eagle2 {
        throw TrainingError(file: "--arch", field: "arch", reason: "\(a) is chosen by its options (vispec: --num-q in stage 2); the arch option takes eagle2 or eagle3")
    }
    guard data.width == mc.width else {
        throw TrainingError(file: rc.dataDirs[0], field: "hidden.width", reason: "\(data.width), but the model's width is \(mc.width)")
    }
    let targetSHA = try Checksum.SHA256.hexOfFile(rc.modelPath)
    guard targetSHA == data.modelSHA256 else {
        throw TrainingError(file: rc.dataDirs[0], field: "model.sha256", reason: "the data was made with another model than \(rc.modelPath)")
    }
    var tower: VisionTower? = nil
    var towerSHA: String? = nil
    if let t = rc.towerPath {
        tower = try VisionTower(path: t)
        try tower!.check(compatibleWith: model)
        towerSHA = try Checksum.SHA256.hexOfFile(t)
    }
    if opts.stage == 1 { opts.numQ = 0 }
    if opts.globalFeature == false && opts.numQ == 0 {
        throw TrainingError(file: "--no-global-feature", field: "global_feature", reason: "only a stage-2 draft with an adapter (--num-q ≥ 1) has a global feature to leave out")
    }
    let split = data.split(for: opts)
    if rc.progress && !split.validation.isEmpty {
        let repeated = data.repeatedPrompts(train: split.train, validation: split.validation)
        let hint = repeated > 0 && (opts.validationSplit ?? .id) == .id ? " (--val-split prompt holds out whole prompts)" : ""
        stderrLine(String(format: "validation: %d samples, %d (%.1f%%) with a prompt that a training sample has too",
                          split.validation.count, repeated, 100 * Double(repeated) / Double(split.validation.count)) + hint + "\n")
    }

    // The starting point: a resumable checkpoint, an --init checkpoint, or fresh.
    var resumed: LoadedCheckpoint? = nil
    if rc.resume {
        guard FileManager.default.fileExists(atPath: rc.trainCheckpointPath) else {
            throw TrainingError(file: rc.trainCheckpointPath, field: "file", reason: "--resume: no checkpoint to continue from")
        }
        let ck = try Checkpoint.load(rc.trainCheckpointPath)
        guard ck.m != nil, ck.meta.dataCursor != nil else {
            throw TrainingError(file: rc.trainCheckpointPath, field: "optimizer", reason: "not a resumable checkpoint (no optimizer state or data cursor)")
        }
        resumed = ck
        // The command that started the run, repeated with --resume, must continue it: the
        // starting weights it named are already inside the checkpoint.
        if rc.initPath != nil || rc.initFromTargetLayer != nil {
            stderrLine("--resume: continuing from \(rc.trainCheckpointPath); --init and --init-from-target-layer only shaped its first step and are not read again\n")
        }
    }
    var initCk: LoadedCheckpoint? = nil
    if let ip = rc.initPath, resumed == nil { initCk = try Checkpoint.load(ip) }

    let d2t: [Int32]
    if let r = resumed { d2t = r.d2t } else if let i = initCk { d2t = i.d2t } else if opts.draftVocab <= 0 || opts.draftVocab >= mc.vocabSize {
        d2t = (0..<mc.vocabSize).map { Int32($0) }
    } else {
        d2t = try data.draftVocabulary(size: opts.draftVocab, sampleIndices: split.train)
    }
    // From the draft actually used (an --init or resumed draft's own), so that the command
    // that started a run matches its checkpoint's arguments when repeated with --resume.
    opts.draftVocab = d2t.count == mc.vocabSize ? 0 : d2t.count
    if rc.progress && d2t.count < mc.vocabSize && !split.validation.isEmpty {
        // What --draft-vocab costs in acceptance: validation answer tokens the head cannot propose.
        let cover = try data.vocabularyCoverage(d2t, sampleIndices: split.validation)
        stderrLine(String(format: "draft vocabulary: %d tokens, covering %.2f%% of the validation answers' tokens\n", d2t.count, 100 * cover))
    }
    let eagle3 = opts.arch == .eagle3
    // An EAGLE-3 draft always has its own head (its input is its own state, not the target's).
    let tied = !eagle3 && d2t.count == mc.vocabSize && (resumed?.meta.config.headTied ?? initCk?.meta.config.headTied ?? true)
    var config = DraftConfig(target: mc, vocab: d2t.count, headTied: tied, numQ: opts.numQ)
    if opts.globalFeature == false { config.globalFeature = false }
    if eagle3 {
        config = DraftConfig.eagle3(target: mc, vocab: d2t.count, auxLayers: opts.auxLayers)
        opts.auxLayers = config.auxLayers
        do { try config.validate(target: mc, file: "--aux-layers") } catch { throw TrainingError(file: "--aux-layers", field: "aux_layers", reason: "\(error)") }
    }
    // The target's head rows of the draft vocabulary: V × d floats (not a copy of the model).
    let d = mc.width
    var headRows = [Float](repeating: 0, count: d2t.count * d)
    headRows.withUnsafeMutableBufferPointer { hp in
        let base = hp.baseAddress!
        parallelChunks(d2t.count, threads: rc.threads, minChunk: 64) { r in
            for i in r { model.weights.output.dequantize(row: Int(d2t[i]), into: base + i * d) }
        }
    }
    let head = TargetHead(rows: d2t.count, width: d, weights: headRows, d2t: d2t)
    var layout = DraftParameters(config: config)
    layout.initialise(seed: opts.seed)
    layout.set("norm.weight", model.weights.outputNorm)
    if !tied { layout.set("lm_head.weight", headRows) }
    if let i = initCk {
        // Copy every tensor the layouts share by name and shape (stage 1 → stage 2: all but the adapter).
        for s in layout.slots where s.name != "norm.weight" {
            if let t = i.params.slot(s.name), t.shape == s.shape { layout.set(s.name, i.params.tensor(s.name)!) }
        }
    }

    if let l = rc.initFromTargetLayer, resumed == nil {
        try copyTargetLayer(l, of: model, into: &layout, file: "--init-from-target-layer")
    }

    // Total steps and warm-up.
    let trainTokens = split.train.map { min(data.samples[$0].tokens, opts.maxLength) }
    if let s = rc.steps { opts.totalSteps = s } else {
        opts.totalSteps = Trainer.steps(forEpochs: rc.epochs ?? 1, trainTokens: trainTokens, batchTokens: opts.batchTokens)
    }
    if opts.warmupSteps < 0 { opts.warmupSteps = Int((Double(opts.totalSteps) * rc.warmupFraction).rounded()) }

    let dm = DraftModel(layout: layout, head: head)
    let images = tower.map { TowerImageEmbedder(tower: $0) }
    let trainer = try Trainer(model: dm, params: layout.values, options: opts, data: data, embedder: model.weights.tokenEmbedding, images: images)
    trainer.threads = max(rc.threads, 1)
    var history: [MetricsRow] = []
    if let r = resumed {
        var mismatches: [String] = []
        if r.meta.config != config { mismatches.append("config (\(Checkpoint.json(r.meta.config)) vs \(Checkpoint.json(config)))") }
        if r.meta.seed != opts.seed { mismatches.append("seed (\(r.meta.seed) vs \(opts.seed))") }
        if r.meta.dataManifestSHA256 != data.manifestSHA256 { mismatches.append("data (the --data folders' manifests differ from the ones it was trained on)") }
        if r.meta.targetSHA256 != targetSHA { mismatches.append("target model") }
        if r.meta.trainArgs != opts.json { mismatches.append("training arguments (\(r.meta.trainArgs) vs \(opts.json))") }
        guard mismatches.isEmpty else {
            throw TrainingError(file: rc.trainCheckpointPath, field: "resume", reason: "cannot continue exactly, these differ: \(mismatches.joined(separator: "; "))")
        }
        guard r.meta.step <= opts.totalSteps else {
            throw TrainingError(file: rc.trainCheckpointPath, field: "step", reason: "\(r.meta.step) is past the run's \(opts.totalSteps) steps")
        }
        trainer.restore(params: r.params.values, m: r.m!, v: r.v!, step: r.meta.step, cursor: r.meta.dataCursor!)
        if let text = try? String(contentsOfFile: rc.metricsPath, encoding: .utf8) {
            history = text.split(separator: "\n").dropFirst().compactMap { MetricsRow(csv: String($0)) }.filter { $0.step <= r.meta.step }
        }
    }
    let resumedFrom = trainer.step

    func meta(final: Bool) -> CheckpointMeta {
        CheckpointMeta(config: config, targetSHA256: targetSHA, towerSHA256: towerSHA, step: trainer.step, seed: opts.seed,
                       dataManifestSHA256: data.manifestSHA256, trainArgs: opts.json,
                       rngState: final ? nil : "splitmix64 derived from (seed, step, sample); nothing else to store",
                       dataCursor: final ? nil : trainer.cursor)
    }
    func saveResumable() throws {
        var p = layout; p.values = trainer.params
        try Checkpoint.save(to: rc.trainCheckpointPath, params: p, d2t: d2t, meta: meta(final: false), optimizer: (trainer.m, trainer.v), dtype: .F32)
    }
    func writeMetrics() throws {
        let text = ([MetricsRow.header] + history.map { $0.csv }).joined(separator: "\n") + "\n"
        try text.write(toFile: rc.metricsPath, atomically: true, encoding: .utf8)
        try MetricsPlot.svg(history, title: "specdec train-adapter stage \(opts.stage): \((rc.out as NSString).lastPathComponent)")
            .write(toFile: rc.plotPath, atomically: true, encoding: .utf8)
    }

    let evalEvery = rc.evalEvery > 0 ? rc.evalEvery : max(opts.totalSteps / 8, 1)
    let tty = isatty(2) != 0
    let t0 = monotonicSeconds()
    var tokens = 0
    var last = LossStats()
    // Time spent validating and saving inside the loop: not training, so left out of the
    // reported throughput.
    var asideSeconds = 0.0
    var rates = RateWindow()
    _ = rates.add(t: 0, items: 0, tokens: 0)
    while trainer.step < opts.totalSteps {
        let r = try trainer.trainStep()
        tokens += r.stats.tokens
        let st = r.stats
        var row = MetricsRow(step: r.step, lr: r.lr, loss: st.meanLoss, l1: st.rows > 0 ? st.l1 / Double(st.rows) : 0,
                             rank: st.rows > 0 ? st.rank / Double(st.rows) : 0, reg: st.rows > 0 ? st.reg / Double(st.rows) : 0,
                             ce: st.rows > 0 ? st.ce / Double(st.rows) : 0, top1: st.top1,
                             top1SelfCorrect: st.rows2 > 0 ? Double(st.correct2) / Double(st.rows2) : 0, gradNorm: r.gradNorm, tokens: st.tokens)
        last = st
        let aside0 = monotonicSeconds()
        defer { asideSeconds += monotonicSeconds() - aside0 }
        if r.step % evalEvery == 0 || r.step == opts.totalSteps {
            let v = try trainer.validate(maxSamples: rc.validationSamples, chainDepth: rc.chainDepth, maxChainStarts: min(rc.validationPositions, 300))
            row.valLoss = v.loss; row.valTop1 = v.top1; row.valTau = v.tau
        }
        history.append(row)
        if rc.saveEvery > 0 && r.step % rc.saveEvery == 0 && r.step < opts.totalSteps {
            try saveResumable(); try writeMetrics()
        }
        if rc.progress {
            let el = monotonicSeconds() - t0 - asideSeconds - (monotonicSeconds() - aside0)
            let done = r.step - resumedFrom
            // The last minute's rates: the whole run's average would lag a pause for hours.
            let recent = rates.add(t: el, items: done, tokens: tokens)
            let sps = recent?.itemsPerSecond ?? Double(done) / max(el, 1e-9)
            let tps = recent?.tokensPerSecond ?? Double(tokens) / max(el, 1e-9)
            let eta = Double(opts.totalSteps - r.step) / max(sps, 1e-9)
            let frac = Double(r.step) / Double(opts.totalSteps)
            let bar = String(repeating: "=", count: Int(frac * 24)) + String(repeating: " ", count: 24 - Int(frac * 24))
            let val = row.valLoss.map { String(format: " | val %.3f top1 %.3f τ %.2f", $0, row.valTop1!, row.valTau!) } ?? ""
            let line = "step \(r.step)/\(opts.totalSteps) [\(bar)] " + String(format: "loss %.4f top1 %.3f | %.2f steps/s %.0f tok/s | ETA %d:%02d",
                              st.meanLoss, st.top1, sps, tps, Int(eta) / 60, Int(eta) % 60) + val
            if tty { stderrLine("\r" + line + "   ") } else if r.step % 10 == 0 || row.valLoss != nil || r.step == opts.totalSteps { stderrLine(line + "\n") }
        }
    }
    if rc.progress && tty { stderrLine("\n") }
    let seconds = monotonicSeconds() - t0 - asideSeconds
    // The final validation with the full chain budget (the in-loop ones use a smaller one).
    let validation = try trainer.validate(maxSamples: rc.validationSamples, chainDepth: rc.chainDepth, maxChainStarts: rc.validationPositions)
    if let lastRow = history.last, lastRow.step == trainer.step {
        history[history.count - 1].valLoss = validation.loss
        history[history.count - 1].valTop1 = validation.top1
        history[history.count - 1].valTau = validation.tau
    }
    try saveResumable()
    var p = layout; p.values = trainer.params
    var shipped = meta(final: true)
    if let a = validation.acceptance {
        shipped.acceptance = String(format: "{\"first\": %.4f, \"decay\": %.4f}", a.first, a.decay)
    }
    try Checkpoint.save(to: rc.out, params: p, d2t: d2t, meta: shipped, optimizer: nil, dtype: rc.saveDType)
    try writeMetrics()
    let outBytes = (try? FileManager.default.attributesOfItem(atPath: rc.out)[.size] as? NSNumber)?.intValue ?? 0
    let report = TrainReport(out: rc.out, checkpoint: rc.trainCheckpointPath, metrics: rc.metricsPath, plot: rc.plotPath, stage: opts.stage,
                             steps: trainer.step, resumedFrom: resumedFrom, trainSamples: trainer.trainIndices.count,
                             validationSamples: trainer.validationIndices.count, tokens: tokens, seconds: seconds,
                             tokensPerSecond: Double(tokens) / max(seconds, 1e-9), stepsPerSecond: Double(trainer.step - resumedFrom) / max(seconds, 1e-9),
                             threads: rc.threads, finalTrainLoss: last.meanLoss, finalTrainTop1: last.top1, validation: validation, config: config,
                             outBytes: outBytes, trainArgs: opts)
    let e = JSONEncoder(); e.outputFormatting = [.sortedKeys, .prettyPrinted]
    try (String(decoding: try e.encode(report), as: UTF8.self) + "\n").write(toFile: rc.reportPath, atomically: true, encoding: .utf8)
    return report
}

/// Copies target layer `index` (negative: from the end) into the draft's decoder layer: q/k/v/o,
/// gate/up/down dequantized row by row (both use llama.cpp's adjacent-pair RoPE layout, so rows
/// map one to one) and the MLP's norm. Only a draft whose layer has the target's shapes (EAGLE-2,
/// ViSpec) qualifies.
func copyTargetLayer(_ index: Int, of model: LlamaModel, into layout: inout DraftParameters, file: String) throws {
    let n = model.config.layerCount
    let l = index < 0 ? n + index : index
    guard (0..<n).contains(l) else {
        throw TrainingError(file: file, field: "layer", reason: "\(index) is not a layer of the target (0..<\(n), or −1 for the last)")
    }
    let layer = model.weights.layers[l]
    let matrices: [(String, PackedMatrix)] = [("self_attn.q_proj", layer.wq), ("self_attn.k_proj", layer.wk), ("self_attn.v_proj", layer.wv),
                                              ("self_attn.o_proj", layer.wo), ("mlp.gate_proj", layer.gate), ("mlp.up_proj", layer.up),
                                              ("mlp.down_proj", layer.down)]
    for (name, m) in matrices {
        let full = "layers.0.\(name).weight"
        guard let slot = layout.slot(full), slot.shape == [m.rows, m.cols] else {
            throw TrainingError(file: file, field: full, reason: "the draft's layer does not have the target's shapes (an EAGLE-3 draft reads 2·width inputs): only EAGLE-2/ViSpec drafts start from a target layer")
        }
        var values = [Float](repeating: 0, count: m.rows * m.cols)
        values.withUnsafeMutableBufferPointer { v in
            for r in 0..<m.rows { m.dequantize(row: r, into: v.baseAddress! + r * m.cols) }
        }
        layout.set(full, values)
    }
    layout.set("layers.0.post_attention_layernorm.weight", layer.ffnNorm)
}
