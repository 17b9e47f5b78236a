import Diagnostics
import Draft
import Foundation
import SafeTensors

/// `train-adapter`'s options as plain values: `validate()` checks them, `run()` turns them into a
/// `TrainRunConfig` (parsing the loss, its weights, the aux layers and the save type) and trains.
/// Errors name the option (`SettingError`).
public struct TrainRequest {
    public var modelPath: String
    public var dataDirs: [String]
    public var out: String
    public var towerPath: String?
    public var stage = 1
    public var initPath: String?
    /// A target layer index, or "last".
    public var initFromTargetLayer: String?
    public var epochs: Double?
    public var steps: Int?
    public var lr: Float = 5e-4
    /// nil: 5 % of the steps.
    public var warmup: Int?
    public var weightDecay: Float = 0.01
    public var clip: Float = 0.5
    public var noise: Float = 0.1
    public var batchTokens = 2048
    public var maxLen = 2048
    public var numQ = 2
    public var globalFeature = true
    /// Stage 2: train on the folders' text samples too.
    public var withText = false
    public var draftVocab = 8192
    public var saveEvery = 0
    public var allowUnfinished = false
    public var resume = false
    public var seed: UInt64 = 0
    /// vispec or eagle.
    public var loss = "vispec"
    public var arch = DraftArch.eagle2
    /// Unrolled training steps K (nil: 3 for eagle3, 2 for eagle2/ViSpec: one self-fed step).
    public var tttSteps: Int?
    /// Comma-separated target layer ids (eagle3).
    public var auxLayers: String?
    /// "l1=…,rank=…,reg=…,ce=…,sc=…" over the loss's preset.
    public var lossWeights: String?
    /// The older spelling of K for eagle2/ViSpec: true is K = 2, false K = 1 (nil: not given).
    public var selfCorrect: Bool?
    /// f32, f16 or bf16.
    public var saveDType = "f16"
    public var valFraction = 0.05
    /// id or prompt (`ValidationSplit`).
    public var valSplit = "id"
    public var valSamples = 40
    public var evalEvery = 0
    public var threads = 1

    public init(modelPath: String, dataDirs: [String], out: String) {
        self.modelPath = modelPath; self.dataDirs = dataDirs; self.out = out
    }

    /// The checks that need no file.
    public func validate() throws {
        func bad(_ option: String, _ why: String) -> SettingError { SettingError(option, why) }
        guard !dataDirs.isEmpty else { throw bad("--data", "--data DIR is required") }
        guard stage == 1 || stage == 2 else { throw bad("--stage", "--stage must be 1 or 2") }
        if epochs != nil && steps != nil { throw bad("--epochs", "give --epochs or --steps, not both") }
        if let e = epochs, !(e > 0) { throw bad("--epochs", "--epochs must be > 0") }
        if let s = steps, s < 1 { throw bad("--steps", "--steps must be ≥ 1") }
        guard lr > 0, lr.isFinite else { throw bad("--lr", "--lr must be > 0") }
        guard batchTokens >= 1 else { throw bad("--batch-tokens", "--batch-tokens must be ≥ 1") }
        guard maxLen >= 3 else { throw bad("--max-len", "--max-len must be ≥ 3") }
        guard draftVocab >= 0 else { throw bad("--draft-vocab", "--draft-vocab must be ≥ 0") }
        guard threads >= 1 else { throw bad("--threads", "--threads must be ≥ 1") }
        guard saveEvery >= 0, evalEvery >= 0 else { throw bad("--save-every", "--save-every and --eval-every must be ≥ 0") }
        guard valFraction >= 0 && valFraction < 1 else { throw bad("--val-fraction", "--val-fraction must be in [0, 1)") }
        guard ValidationSplit(rawValue: valSplit) != nil else { throw bad("--val-split", "--val-split must be id or prompt, not \(valSplit)") }
        guard noise >= 0, clip >= 0, weightDecay >= 0 else { throw bad("--noise", "--noise, --clip and --weight-decay must be ≥ 0") }
        if numQ < 0 { throw bad("--num-q", "--num-q must be 0 (no adapter) or a positive query count") }
        if !globalFeature && (stage != 2 || numQ == 0) { throw bad("--no-global-feature", "--no-global-feature needs stage 2 with an adapter (--num-q ≥ 1)") }
        if withText && stage != 2 { throw bad("--with-text", "--with-text is for stage 2 (stage 1 trains on the text samples already)") }
        if stage == 2 && towerPath == nil { throw bad("--mmproj", "stage 2 needs the vision tower: --mmproj TOWER.gguf") }
        guard arch != .vispec else { throw bad("--arch", "--arch takes eagle2 or eagle3: a ViSpec draft is --arch eagle2 with --num-q in stage 2") }
        if let k = tttSteps, k < 1 { throw bad("--ttt-steps", "--ttt-steps must be ≥ 1") }
        if arch == .eagle3 {
            if stage == 2 && numQ != 0 { throw bad("--num-q", "--arch eagle3 has no visual adapter: stage 2 takes --num-q 0") }
            if selfCorrect != nil { throw bad("--self-correct", "--self-correct/--no-self-correct are eagle2/ViSpec spellings; --arch eagle3 takes --ttt-steps K") }
        } else {
            if auxLayers != nil { throw bad("--aux-layers", "--aux-layers goes with --arch eagle3") }
            // The older flag is K = 2 (or 1 with --no-): both at once must say the same.
            if let sc = selfCorrect, let k = tttSteps, (k > 1) != sc {
                throw bad("--ttt-steps", sc ? "--self-correct asks for a self-fed step, --ttt-steps 1 for none: give one"
                                           : "--no-self-correct is --ttt-steps 1, which contradicts --ttt-steps \(k): give one")
            }
        }
        _ = try targetLayer()
    }

    /// `initFromTargetLayer` as `TrainRunConfig` takes it ("last" because "-1" would read as an
    /// option to a command-line parser).
    func targetLayer() throws -> Int? {
        guard let l = initFromTargetLayer else { return nil }
        guard let layer = l == "last" ? -1 : Int(l) else {
            throw SettingError("--init-from-target-layer", "--init-from-target-layer \(l): a layer index or last")
        }
        return layer
    }

    /// Creates the outputs' folder (it must exist before hours of training, not after), then trains.
    public func run() throws -> TrainReport {
        let dtype: SafeTensorsDType
        switch saveDType.lowercased() {
        case "f32": dtype = .F32
        case "f16": dtype = .F16
        case "bf16": dtype = .BF16
        default: throw SettingError("--save-dtype", "--save-dtype must be f32, f16 or bf16, not \(saveDType)")
        }
        let outDir = (out as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        if !outDir.isEmpty && !(FileManager.default.fileExists(atPath: outDir, isDirectory: &isDir) && isDir.boolValue) {
            do { try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true) } catch {
                throw SettingError("--out", "--out \(out): cannot create the folder \(outDir): \(error.localizedDescription)")
            }
        }
        var rc = TrainRunConfig(modelPath: modelPath, dataDirs: dataDirs, out: out)
        rc.towerPath = towerPath; rc.initPath = initPath; rc.initFromTargetLayer = try targetLayer()
        rc.epochs = epochs; rc.steps = steps; rc.resume = resume; rc.allowUnfinished = allowUnfinished
        rc.saveEvery = saveEvery; rc.saveDType = dtype; rc.threads = threads
        rc.evalEvery = evalEvery; rc.validationSamples = valSamples; rc.options = try options()
        return try runTraining(rc)
    }

    func options() throws -> TrainOptions {
        var o = TrainOptions()
        o.stage = stage; o.lr = lr; o.warmupSteps = warmup ?? -1; o.batchTokens = batchTokens
        o.weightDecay = weightDecay; o.clipNorm = clip; o.noise = noise; o.seed = seed
        o.loss = try lossConfig(); o.maxLength = maxLen; o.validationFraction = valFraction
        o.numQ = stage == 2 ? numQ : 0
        if !globalFeature { o.globalFeature = false }
        if withText { o.withText = true }
        if let rule = ValidationSplit(rawValue: valSplit), rule != .id { o.validationSplit = rule }
        o.draftVocab = draftVocab
        guard arch == .eagle3 else { return o }
        o.arch = .eagle3
        var ce: Float = 1
        for part in (lossWeights ?? "").split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, kv[0] == "ce", let v = Float(kv[1]), v > 0, v.isFinite else {
                throw SettingError("--loss-weights", "--loss-weights with --arch eagle3: only ce=… (> 0) applies, not \"\(part)\"")
            }
            ce = v
        }
        o.loss = .eagle3(tttSteps: tttSteps ?? 3)
        o.loss.ce = ce
        if let a = auxLayers {
            let ids = a.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !ids.isEmpty, ids.allSatisfy({ $0 != nil }) else {
                throw SettingError("--aux-layers", "--aux-layers must be comma-separated layer ids (e.g. 2,15,27), not \(a)")
            }
            o.auxLayers = ids.map { $0! }
        }
        return o
    }

    /// `loss`'s preset with `lossWeights` over it.
    func lossConfig() throws -> LossConfig {
        var c: LossConfig
        switch loss {
        case "vispec": c = .vispec
        case "eagle": c = .eagle
        default: throw SettingError("--loss", "--loss must be vispec or eagle, not \(loss)")
        }
        for part in (lossWeights ?? "").split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, let v = Float(kv[1]), v >= 0, v.isFinite else {
                throw SettingError("--loss-weights", "--loss-weights: \"\(part)\" is not name=value with a value ≥ 0")
            }
            switch kv[0] {
            case "l1": c.l1 = v
            case "rank": c.rank = v
            case "reg": c.reg = v
            case "ce": c.ce = v
            case "sc": c.selfCorrect = v
            default: throw SettingError("--loss-weights", "--loss-weights: unknown weight \(kv[0]) (l1, rank, reg, ce, sc)")
            }
        }
        guard c.l1 + c.rank + c.reg + c.ce > 0 else { throw SettingError("--loss-weights", "--loss-weights: every loss weight is 0") }
        // K: K = 1 is the weight 0 of the self-fed steps (as --no-self-correct always was); K = 2
        // stays implicit and only K ≥ 3 is written (LossConfig.tttSteps), so the default run's
        // train_args and checkpoint bytes are those of the runs before --ttt-steps applied here.
        let k = tttSteps ?? (selfCorrect == false ? 1 : 2)
        if k == 1 {
            c.selfCorrect = 0
        } else if c.selfCorrect == 0 {
            guard tttSteps == nil else {
                throw SettingError("--loss-weights", "--loss-weights sc=0 weighs the self-fed steps 0: that is --ttt-steps 1, not \(k)")
            }
        } else if k > 2 {
            c.tttSteps = k
        }
        return c
    }
}

extension TrainReport {
    /// What `train-adapter` prints at the end: speed, validation, the per-step agreement
    /// (EAGLE-3) and the files written.
    public var lines: [String] {
        let v = validation
        var lines = [
            String(format: "stage %d: %d steps in %.1f s (%.2f steps/s, %.0f tokens/s, %d threads)", stage, steps - resumedFrom,
                   seconds, stepsPerSecond, tokensPerSecond, threads),
            String(format: "validation (%d samples, %d positions): loss %.4f, top-1 agreement %.3f, τ %.3f (depth %d chains over %d starts)",
                   v.samples, v.positions, v.loss, v.top1, v.tau, 5, v.chainStarts)]
        if let st = v.stepTop1 {
            // Step k: the draft fed its own outputs k times, as at depth k + 1 of a chain.
            lines.append("top-1 per training-time-test step (step k: fed its own output k times): " + st.enumerated().map { String(format: "step %d %.3f", $0.offset, $0.element) }.joined(separator: ", "))
        }
        lines.append("draft: \(out) (\(outBytes) bytes); resumable: \(checkpoint); metrics: \(metrics); plot: \(plot)")
        return lines
    }
}
