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
        cross-entropy). --loss-weights l1=…,rank=…,reg=…,ce=…,sc=… overrides single weights.

        Training-time test (EAGLE-3's, for every arch): --ttt-steps K trains K unrolled chain \
        steps. Step 0 reads the target's features; step k ≥ 1 reads the draft's own output of \
        step k − 1 as its feature, as the draft feeds itself at inference, and attends to the \
        prefix and the earlier steps of its own chain. Default K = 2 for eagle2/ViSpec (one \
        self-fed step, the former self-correction pass; --no-self-correct is K = 1); self-fed \
        step k weighs sc · 0.8^(k−1) (sc = 1 unless --loss-weights sets it), so K = 2 trains \
        exactly as before. More steps cost about K/2 of the default's time and train the deeper \
        chain nodes; the report prints the top-1 agreement of every step.

        Outputs next to --out: the resumable f32 checkpoint DRAFT.train.safetensors (weights, AdamW \
        moments, step, data cursor; written every --save-every steps and at the end), the shipped \
        draft --out itself (--save-dtype, no optimizer state), metrics.csv, DRAFT.loss.svg and \
        DRAFT.report.json (validation: top-1 agreement with the target and the expected acceptance \
        length τ of simulated greedy chain drafting, depth 5). --resume continues the run from \
        DRAFT.train.safetensors with the same loss curve as an uninterrupted run at the same -t \
        (each thread count adds the threads' gradients in its own fixed order); it refuses a \
        checkpoint made with other data, seed, model or arguments. Repeat the command that \
        started the run and add --resume: --init is then not read again.

        --arch eagle3 trains an EAGLE-3 draft instead: fc fuses the residual streams entering the \
        target layers --aux-layers (default 2, L/2, L−3; the data must come from synth-data \
        --hidden-layers with the same ids), attention reads [norm(embedding) ; norm(state)], and the \
        loss is EAGLE-3's training-time test: cross-entropy to the target's distribution over \
        --ttt-steps K unrolled chain steps (default 3; each fed the previous step's output state), \
        weighted 0.8^k (--loss and --loss-weights other than ce do not apply).
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

    @Flag(name: .customLong("with-text"), help: "Stage 2: train on the --data folders' text samples too, mixed with the image samples (the draft also serves text prompts, and training on images alone wears down what stage 1 taught it).")
    var withText = false

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

    @Option(name: .customLong("ttt-steps"), help: "Training-time-test steps K: step 0 on the target's features, then K−1 steps each fed the draft's own previous output (default: 2 for eagle2/ViSpec, 3 for eagle3; EAGLE-3 uses 7).")
    var tttSteps: Int?

    @Option(name: .customLong("aux-layers"), help: ArgumentHelp("eagle3: target layers whose input states feed fc, comma-separated (default 2, L/2, L−3).", valueName: "IDS"))
    var auxLayers: String?

    @Option(name: .customLong("loss-weights"), help: "Override weights: l1=…,rank=…,reg=…,ce=…,sc=… (sc: the self-fed steps against the first; step k weighs sc·0.8^(k−1)).")
    var lossWeights: String?

    @Flag(name: .customLong("self-correct"), inversion: .prefixedNo, help: "eagle2/ViSpec, the older spelling of --ttt-steps: --self-correct is K = 2 (the default), --no-self-correct K = 1 (no self-fed step).")
    var selfCorrect: Bool?

    @Option(name: .customLong("save-dtype"), help: "Weights of --out: f32, f16 or bf16 (the .train checkpoint is always f32).")
    var saveDType: String = "f16"

    @Option(name: .customLong("val-fraction"), help: "Share of samples held out for validation.")
    var valFraction: Double = 0.05

    @Option(name: .customLong("val-split"), help: "How samples are held out: id (a hash of the sample id, the default and the split of every documented run) or prompt (a hash of the prompt tokens and images, so repeated prompts never straddle training and validation; use it on data from a generator that repeats).")
    var valSplit: String = "id"

    @Option(name: .customLong("val-samples"), help: "Validation samples evaluated (at most).")
    var valSamples: Int = 40

    @Option(name: .customLong("eval-every"), help: "Validate every N steps (default: 8 times a run).")
    var evalEvery: Int = 0

    @Option(name: [.short, .customLong("threads")], help: "Threads: a training step runs its sequences side by side (one BLAS thread each); loading and validation use them as BLAS threads.")
    var threads: Int = 1

    @Flag(help: "Print the final report as one JSON object on stdout.")
    var json = false

    /// The options as the library takes them; `validate` checks them before the model is resolved.
    func request(modelPath: String = "") -> TrainRequest {
        var r = TrainRequest(modelPath: modelPath, dataDirs: data, out: out)
        r.towerPath = mmproj; r.stage = stage; r.initPath = initPath; r.initFromTargetLayer = initFromTargetLayer
        r.epochs = epochs; r.steps = steps; r.lr = lr; r.warmup = warmup; r.weightDecay = weightDecay; r.clip = clip; r.noise = noise
        r.batchTokens = batchTokens; r.maxLen = maxLen; r.numQ = numQ; r.globalFeature = !noGlobalFeature; r.withText = withText; r.draftVocab = draftVocab
        r.saveEvery = saveEvery; r.allowUnfinished = allowUnfinished; r.resume = resume; r.seed = seed; r.loss = loss; r.arch = arch
        r.tttSteps = tttSteps; r.auxLayers = auxLayers; r.lossWeights = lossWeights; r.selfCorrect = selfCorrect; r.saveDType = saveDType
        r.valFraction = valFraction; r.valSplit = valSplit; r.valSamples = valSamples; r.evalEvery = evalEvery; r.threads = threads
        return r
    }

    func validate() throws { try asValidation(request().validate) }

    func run() throws {
        let report = try request(modelPath: try modelOption.resolvedPath()).run()
        if json {
            let e = JSONEncoder(); e.outputFormatting = [.sortedKeys]
            print(String(decoding: try e.encode(report), as: UTF8.self))
        } else {
            report.lines.forEach { print($0) }
        }
    }
}

extension DraftArch: ExpressibleByArgument {}
