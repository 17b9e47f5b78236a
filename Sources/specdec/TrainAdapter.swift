import ArgumentParser
import Draft
import DraftTraining
import Foundation
import Kernels
import SafeTensors

/// `specdec train-adapter`: trains the EAGLE draft (stage 1) or the ViSpec draft with its visual
/// adapter (stage 2) on the CPU from `synth-data` shards.
struct TrainAdapter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-adapter",
        abstract: "Train the draft model (and the ViSpec visual adapter) on synth-data shards, on the CPU.",
        discussion: """
        Stage 1 trains a one-layer EAGLE draft on the text samples of --data; stage 2 adds the \
        visual adapter (--num-q K learned queries) and trains on the image samples, starting from \
        a stage-1 draft (--init). The model, losses and checkpoint layout are those of \
        docs/draft-design.md.

        Losses: --loss vispec (10 × L1 between the draft's and the target's probabilities + 0.1 × \
        Plackett–Luce over the target's top 10) or eagle (SmoothL1 on the next feature + 0.1 × \
        cross-entropy), each with the self-correction pass (the draft's own features fed back for \
        one more step, weight 1) unless --no-self-correct. --loss-weights l1=…,rank=…,reg=…,ce=…,sc=… \
        overrides single weights.

        Outputs next to --out: the resumable f32 checkpoint DRAFT.train.safetensors (weights, AdamW \
        moments, step, data cursor; written every --save-every steps and at the end), the shipped \
        draft --out itself (--save-dtype, no optimizer state), metrics.csv, DRAFT.loss.svg and \
        DRAFT.report.json (validation: top-1 agreement with the target and the expected acceptance \
        length τ of simulated greedy chain drafting, depth 5). --resume continues the run from \
        DRAFT.train.safetensors with the same loss curve as an uninterrupted run; it refuses a \
        checkpoint made with other data, seed, model or arguments.

        --arch eagle3 trains an EAGLE-3 draft instead: fc fuses the residual streams entering the \
        target layers --aux-layers (default 2, L/2, L−3; the data must come from synth-data \
        --hidden-layers with the same ids), attention reads [norm(embedding) ; norm(state)], and the \
        loss is EAGLE-3's training-time test: cross-entropy to the target's distribution over \
        --ttt-steps K unrolled chain steps (each fed the previous step's output state), weighted \
        0.8^k (--loss and --loss-weights other than ce do not apply). The report adds the top-1 \
        agreement of every step.
        """)

    @OptionGroup var modelOption: ModelOption

    @Option(help: ArgumentHelp("Vision tower (llama.cpp mmproj GGUF) that computes the image embeddings of stage-2 samples.", valueName: "TOWER.gguf"))
    var mmproj: String?

    @Option(name: .customLong("data"), help: ArgumentHelp("Dataset folder from synth-data (repeat for several).", valueName: "DIR"))
    var data: [String] = []

    @Option(help: ArgumentHelp("The trained draft (safetensors).", valueName: "DRAFT.safetensors"))
    var out: String

    @Option(help: "1: text samples, no adapter; 2: image samples with the visual adapter.")
    var stage: Int = 1

    @Option(name: .customLong("init"), help: ArgumentHelp("Start from this checkpoint (stage 2: a stage-1 draft); tensors with the same name and shape are copied, its draft vocabulary is kept.", valueName: "CKPT"))
    var initPath: String?

    @Option(name: .customLong("init-from-target-layer"), help: ArgumentHelp("Start the draft's decoder layer from this target layer's attention and MLP weights (dequantized): a layer index, or last; EAGLE-2/ViSpec drafts. With --init, the other tensors come from the checkpoint.", valueName: "L|last"))
    var initFromTargetLayer: String?

    @Option(help: "Passes over the training samples (default 1 unless --steps).")
    var epochs: Double?

    @Option(help: "Optimizer steps (instead of --epochs).")
    var steps: Int?

    @Option(help: "Peak learning rate (AdamW, β 0.9/0.95).")
    var lr: Float = 5e-4

    @Option(help: "Warm-up steps (default: 5 % of the steps), then linear decay to 0.")
    var warmup: Int?

    @Option(name: .customLong("weight-decay"), help: "AdamW decoupled weight decay (matrices only).")
    var weightDecay: Float = 0.01

    @Option(name: .customLong("clip"), help: "Gradient-norm clipping threshold (0: off).")
    var clip: Float = 0.5

    @Option(name: .customLong("noise"), help: "Uniform noise on the input features, U(−a·s, a·s) with s the row's RMS (0: off).")
    var noise: Float = 0.1

    @Option(name: .customLong("batch-tokens"), help: "Tokens per optimizer step (whole samples are added until reached).")
    var batchTokens: Int = 2048

    @Option(name: .customLong("max-len"), help: "Positions kept per sample (longer samples are cut).")
    var maxLen: Int = 2048

    @Option(name: .customLong("num-q"), help: "Adapter queries K (stage 2): K−1 compressed tokens and one global feature (K = 1: the global feature only; 0: no adapter, the EAGLE baseline).")
    var numQ: Int = 2

    @Flag(name: .customLong("no-global-feature"), help: "Stage 2 ablation: the adapter's compressed tokens only; the global feature is not injected into the text positions.")
    var noGlobalFeature = false

    @Option(name: .customLong("draft-vocab"), help: "Draft head rows: the V most frequent answer tokens (0: the target's full vocabulary, tied to its head).")
    var draftVocab: Int = 8192

    @Option(name: .customLong("save-every"), help: "Write the resumable checkpoint every N steps (0: only at the end).")
    var saveEvery: Int = 0

    @Flag(name: .customLong("allow-unfinished"), help: "Read folders that synth-data is still writing: the complete records of their .sds.tmp shards (a resumed run then needs the same records).")
    var allowUnfinished = false

    @Flag(help: "Continue from DRAFT.train.safetensors next to --out.")
    var resume = false

    @Option(help: "Seed: initialisation, data order and feature noise.")
    var seed: UInt64 = 0

    @Option(help: "vispec or eagle.")
    var loss: String = "vispec"

    @Option(help: "Draft architecture: eagle2 (EAGLE-2, or ViSpec with --num-q in stage 2) or eagle3.")
    var arch: DraftArch = .eagle2

    @Option(name: .customLong("ttt-steps"), help: "eagle3: training-time-test steps K (EAGLE-3 uses 7).")
    var tttSteps: Int = 3

    @Option(name: .customLong("aux-layers"), help: ArgumentHelp("eagle3: target layers whose input states feed fc, comma-separated (default 2, L/2, L−3).", valueName: "IDS"))
    var auxLayers: String?

    @Option(name: .customLong("loss-weights"), help: "Override weights: l1=…,rank=…,reg=…,ce=…,sc=… (sc: the self-correction pass).")
    var lossWeights: String?

    @Flag(name: .customLong("self-correct"), inversion: .prefixedNo, help: "The self-correction pass (the draft's own features fed back for one more step).")
    var selfCorrect = true

    @Option(name: .customLong("save-dtype"), help: "Weights of --out: f32, f16 or bf16 (the .train checkpoint is always f32).")
    var saveDType: String = "f16"

    @Option(name: .customLong("val-fraction"), help: "Share of samples held out for validation (by a hash of the sample id).")
    var valFraction: Double = 0.05

    @Option(name: .customLong("val-samples"), help: "Validation samples evaluated (at most).")
    var valSamples: Int = 40

    @Option(name: .customLong("eval-every"), help: "Validate every N steps (default: 8 times a run).")
    var evalEvery: Int = 0

    @Option(name: [.short, .customLong("threads")], help: "Threads (OpenBLAS).")
    var threads: Int = 1

    @Flag(help: "Print the final report as one JSON object on stdout.")
    var json = false

    func validate() throws {
        guard !data.isEmpty else { throw ValidationError("--data DIR is required") }
        guard stage == 1 || stage == 2 else { throw ValidationError("--stage must be 1 or 2") }
        if epochs != nil && steps != nil { throw ValidationError("give --epochs or --steps, not both") }
        if let e = epochs, !(e > 0) { throw ValidationError("--epochs must be > 0") }
        if let s = steps, s < 1 { throw ValidationError("--steps must be ≥ 1") }
        guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be > 0") }
        guard batchTokens >= 1 else { throw ValidationError("--batch-tokens must be ≥ 1") }
        guard maxLen >= 3 else { throw ValidationError("--max-len must be ≥ 3") }
        guard draftVocab >= 0 else { throw ValidationError("--draft-vocab must be ≥ 0") }
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
        guard saveEvery >= 0, evalEvery >= 0 else { throw ValidationError("--save-every and --eval-every must be ≥ 0") }
        guard valFraction >= 0 && valFraction < 1 else { throw ValidationError("--val-fraction must be in [0, 1)") }
        guard noise >= 0, clip >= 0, weightDecay >= 0 else { throw ValidationError("--noise, --clip and --weight-decay must be ≥ 0") }
        if numQ < 0 { throw ValidationError("--num-q must be 0 (no adapter) or a positive query count") }
        if noGlobalFeature && (stage != 2 || numQ == 0) { throw ValidationError("--no-global-feature needs stage 2 with an adapter (--num-q ≥ 1)") }
        if stage == 2 && mmproj == nil { throw ValidationError("stage 2 needs the vision tower: --mmproj TOWER.gguf") }
        guard arch != .vispec else { throw ValidationError("--arch takes eagle2 or eagle3: a ViSpec draft is --arch eagle2 with --num-q in stage 2") }
        if arch == .eagle3 {
            guard tttSteps >= 1 else { throw ValidationError("--ttt-steps must be ≥ 1") }
            if stage == 2 && numQ != 0 { throw ValidationError("--arch eagle3 has no visual adapter: stage 2 takes --num-q 0") }
        } else if auxLayers != nil {
            throw ValidationError("--aux-layers goes with --arch eagle3")
        }
        if resume && initPath != nil { throw ValidationError("--resume continues its own checkpoint; --init starts a new run: give one") }
    }

    /// Parses `--loss-weights l1=10,rank=0.1,...` over the chosen preset.
    static func lossConfig(_ name: String, weights: String?, selfCorrect: Bool) throws -> LossConfig {
        var c: LossConfig
        switch name {
        case "vispec": c = .vispec
        case "eagle": c = .eagle
        default: throw CLIError("--loss must be vispec or eagle, not \(name)")
        }
        if !selfCorrect { c.selfCorrect = 0 }
        for part in (weights ?? "").split(separator: ",") {
            let kv = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, let v = Float(kv[1]), v >= 0, v.isFinite else {
                throw CLIError("--loss-weights: \"\(part)\" is not name=value with a value ≥ 0")
            }
            switch kv[0] {
            case "l1": c.l1 = v
            case "rank": c.rank = v
            case "reg": c.reg = v
            case "ce": c.ce = v
            case "sc": c.selfCorrect = v
            default: throw CLIError("--loss-weights: unknown weight \(kv[0]) (l1, rank, reg, ce, sc)")
            }
        }
        guard c.l1 + c.rank + c.reg + c.ce > 0 else { throw CLIError("--loss-weights: every loss weight is 0") }
        return c
    }

    func run() throws {
        let dtype: SafeTensorsDType
        switch saveDType.lowercased() {
        case "f32": dtype = .F32
        case "f16": dtype = .F16
        case "bf16": dtype = .BF16
        default: throw CLIError("--save-dtype must be f32, f16 or bf16, not \(saveDType)")
        }
        // The outputs' folder must exist before hours of training, not after.
        let outDir = (out as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        if !outDir.isEmpty && !(FileManager.default.fileExists(atPath: outDir, isDirectory: &isDir) && isDir.boolValue) {
            do { try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true) } catch {
                throw CLIError("--out \(out): cannot create the folder \(outDir): \(error.localizedDescription)")
            }
        }
        var rc = TrainRunConfig(modelPath: try modelOption.resolvedPath(), dataDirs: data, out: out)
        rc.towerPath = mmproj
        rc.initPath = initPath
        if let l = initFromTargetLayer {
            // "last" because "-1" would read as an option to the parser.
            guard let layer = l == "last" ? -1 : Int(l) else {
                throw ValidationError("--init-from-target-layer \(l): a layer index or last")
            }
            rc.initFromTargetLayer = layer
        }
        rc.epochs = epochs; rc.steps = steps
        rc.resume = resume
        rc.allowUnfinished = allowUnfinished
        rc.saveEvery = saveEvery
        rc.saveDType = dtype
        rc.threads = threads
        rc.evalEvery = evalEvery
        rc.validationSamples = valSamples
        var o = TrainOptions()
        o.stage = stage
        o.lr = lr
        o.warmupSteps = warmup ?? -1
        o.batchTokens = batchTokens
        o.weightDecay = weightDecay
        o.clipNorm = clip
        o.noise = noise
        o.seed = seed
        o.loss = try Self.lossConfig(loss, weights: lossWeights, selfCorrect: selfCorrect)
        o.maxLength = maxLen
        o.validationFraction = valFraction
        o.numQ = stage == 2 ? numQ : 0
        if noGlobalFeature { o.globalFeature = false }
        o.draftVocab = draftVocab
        if arch == .eagle3 {
            o.arch = .eagle3
            var ce: Float = 1
            for part in (lossWeights ?? "").split(separator: ",") {
                let kv = part.split(separator: "=", maxSplits: 1)
                guard kv.count == 2, kv[0] == "ce", let v = Float(kv[1]), v > 0, v.isFinite else {
                    throw CLIError("--loss-weights with --arch eagle3: only ce=… (> 0) applies, not \"\(part)\"")
                }
                ce = v
            }
            o.loss = .eagle3(tttSteps: tttSteps)
            o.loss.ce = ce
            if let a = auxLayers {
                let ids = a.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !ids.isEmpty, ids.allSatisfy({ $0 != nil }) else { throw CLIError("--aux-layers must be comma-separated layer ids (e.g. 2,15,27), not \(a)") }
                o.auxLayers = ids.map { $0! }
            }
        }
        rc.options = o
        let report: TrainReport
        do { report = try runTraining(rc) } catch let e as TrainingError { throw CLIError(e.description) }
        if json {
            let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]
            print(String(decoding: try e.encode(report), as: UTF8.self))
        } else {
            let v = report.validation
            print(String(format: "stage %d: %d steps in %.1f s (%.2f steps/s, %.0f tokens/s, %d threads)", report.stage, report.steps - report.resumedFrom,
                         report.seconds, report.stepsPerSecond, report.tokensPerSecond, report.threads))
            print(String(format: "validation (%d samples, %d positions): loss %.4f, top-1 agreement %.3f, τ %.3f (depth %d chains over %d starts)",
                         v.samples, v.positions, v.loss, v.top1, v.tau, 5, v.chainStarts))
            if let st = v.stepTop1 {
                print("top-1 per training-time-test step: " + st.enumerated().map { String(format: "step %d %.3f", $0.offset, $0.element) }.joined(separator: ", "))
            }
            print("draft: \(report.out) (\(report.outBytes) bytes); resumable: \(report.checkpoint); metrics: \(report.metrics); plot: \(report.plot)")
        }
    }
}

extension DraftArch: ExpressibleByArgument {}
