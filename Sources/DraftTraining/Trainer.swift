import Draft
import COpenBLAS
import Kernels
import Shards
import Foundation
import SafeTensors

/// Everything that shapes the loss curve (stored as `train_args`; `--resume` must match it).
public struct TrainOptions: Codable, Equatable, Sendable {
    public var stage = 1
    public var totalSteps = 100
    public var lr: Float = 5e-4
    public var warmupSteps = 20
    public var batchTokens = 2048
    public var weightDecay: Float = 0.01
    public var clipNorm: Float = 0.5
    public var noise: Float = 0.1
    public var seed: UInt64 = 0
    public var loss = LossConfig.vispec
    public var maxLength = 2048
    public var validationFraction = 0.05
    public var numQ = 0
    public var draftVocab = 8192
    /// `.eagle3` for an EAGLE-3 draft (nil: EAGLE-2, or ViSpec with num_q > 0; absent from the
    /// JSON then, so older runs resume unchanged).
    public var arch: DraftArch? = nil
    /// EAGLE-3: the target layers whose input states feed `fc` (the data must hold them).
    public var auxLayers: [Int]? = nil
    /// false: a ViSpec draft without the global feature (the ablation); nil: with it, and absent
    /// from the JSON so older runs resume unchanged.
    public var globalFeature: Bool? = nil
    /// true: stage 2 also trains on the text samples (the draft serves text prompts too, and
    /// image-only training wears down what stage 1 taught it); nil: images only, absent from the
    /// JSON so older runs resume unchanged.
    public var withText: Bool? = nil
    /// `.prompt`: validation by a hash of the prompt; nil: by the sample id, absent from the JSON
    /// so older runs resume unchanged.
    public var validationSplit: ValidationSplit? = nil

    public init() {}

    enum CodingKeys: String, CodingKey {
        case stage, totalSteps = "total_steps", lr, warmupSteps = "warmup_steps", batchTokens = "batch_tokens"
        case weightDecay = "weight_decay", clipNorm = "clip_norm", noise, seed, loss, maxLength = "max_length"
        case validationFraction = "validation_fraction", numQ = "num_q", draftVocab = "draft_vocab"
        case arch, auxLayers = "aux_layers", globalFeature = "global_feature", withText = "with_text"
        case validationSplit = "validation_split"
    }

    public var json: String { Checkpoint.json(self) }
}

/// Validation metrics over the held-out samples.
public struct ValidationResult: Codable, Equatable, Sendable {
    public var samples: Int
    public var loss: Double
    public var top1: Double
    public var positions: Int
    /// Mean accepted draft tokens per simulated greedy chain (ViSpec's τ: the target's own
    /// token not counted, as in `decode` and `eval`).
    public var tau: Double
    public var chainStarts: Int
    public var acceptedHistogram: [Int]
    /// Top-1 agreement of each unrolled (training-time-test) step (step 0 = `top1`; step k: the
    /// draft fed its own outputs k times); nil without self-fed steps.
    public var stepTop1: [Double]? = nil

    enum CodingKeys: String, CodingKey {
        case samples, loss, top1 = "top1_agreement", positions, tau, chainStarts = "chain_starts"
        case acceptedHistogram = "accepted_histogram", stepTop1 = "step_top1"
    }
}

/// One optimizer step's numbers.
public struct StepResult: Sendable {
    public var step: Int
    public var lr: Float
    public var stats: LossStats
    public var gradNorm: Float
    public var samples: Int
}

/// The training loop: data order, noise, AdamW and checkpoints. Data order and noise are pure
/// functions of (seed, epoch or step, sample), and the cursor is in the checkpoint, so a resumed
/// run repeats an uninterrupted one bit for bit (same thread count: BLAS sums in its own order).
public final class Trainer {
    public let model: DraftModel
    public let options: TrainOptions
    public let data: TrainingData
    public let trainIndices: [Int]
    public let validationIndices: [Int]
    let embedder: TokenEmbedder
    let images: ImageEmbedder?
    let builder: SequenceBuilder
    public let optimizer: AdamW
    public var params: [Float]
    public var m: [Float]
    public var v: [Float]
    /// Threads for a step's sequences and the optimizer (`-t`); results depend on it only
    /// through float summation order.
    public var threads = 1
    /// The step's gradient (thread 0's), and the other threads' buffers: kept between steps.
    var grads: [Float]
    var extraGrads: [Buf] = []
    public private(set) var step = 0
    public private(set) var cursor = DataCursor()
    private var permutationCache: (epoch: Int, order: [Int])? = nil

    public init(model: DraftModel, params: [Float], options: TrainOptions, data: TrainingData, embedder: TokenEmbedder,
                images: ImageEmbedder?) throws {
        self.model = model; self.options = options; self.data = data; self.embedder = embedder; self.images = images
        self.params = params
        m = [Float](repeating: 0, count: params.count); v = m; grads = m
        let sp = data.split(for: options)
        trainIndices = sp.train; validationIndices = sp.validation
        guard !trainIndices.isEmpty else {
            throw TrainingError(file: data.dirs.joined(separator: ", "), field: "samples",
                                reason: options.stage == 1 ? "no text samples to train on (stage 1 uses samples without images)" : "no image samples to train on (stage 2 uses samples with images)")
        }
        builder = SequenceBuilder(width: model.config.width, numQ: model.config.numQ, maxLength: options.maxLength, noise: options.noise,
                                  auxLayers: model.config.isEagle3 ? model.config.auxLayers : nil,
                                  globalFeature: model.config.usesGlobalFeature)
        optimizer = AdamW(lr: options.lr, weightDecay: options.weightDecay, warmupSteps: options.warmupSteps,
                          totalSteps: options.totalSteps, clipNorm: options.clipNorm)
    }

    /// Continues from a resumable checkpoint's weights, moments, step and data cursor.
    public func restore(params p: [Float], m: [Float], v: [Float], step: Int, cursor: DataCursor) {
        params = p; self.m = m; self.v = v; self.step = step; self.cursor = cursor
    }

    /// Epoch e's order of the training samples (Fisher–Yates driven by (seed, e)).
    func order(epoch: Int) -> [Int] {
        if let c = permutationCache, c.epoch == epoch { return c.order }
        var o = trainIndices
        var rng = SplitMix64.derive(options.seed, 0xE90C, UInt64(epoch))
        if o.count > 1 { for i in stride(from: o.count - 1, to: 0, by: -1) { o.swapAt(i, Int(rng.next() % UInt64(i + 1))) } }
        permutationCache = (epoch, o)
        return o
    }

    /// The next batch: samples in order until `batchTokens` tokens (at least one sample).
    func nextBatch(from c: inout DataCursor) -> [Int] {
        var batch: [Int] = [], tokens = 0
        while tokens < options.batchTokens {
            let o = order(epoch: c.epoch)
            if c.position >= o.count { c.epoch += 1; c.position = 0; continue }
            let s = o[c.position]
            c.position += 1
            batch.append(s)
            tokens += min(data.samples[s].tokens, options.maxLength)
        }
        return batch
    }

    /// Optimizer steps that `epochs` passes over the training samples take.
    public static func steps(forEpochs epochs: Double, trainTokens: [Int], batchTokens: Int) -> Int {
        let total = Int((Double(trainTokens.reduce(0, +)) * epochs).rounded(.up))
        return max(1, (total + batchTokens - 1) / batchTokens)
    }

    func sequence(_ index: Int, noiseStream: SplitMix64?) throws -> DraftSequence {
        let info = data.samples[index]
        let r = try data.record(info)
        return try builder.build(r, embedder: embedder, images: images, datasetDir: data.dirs[info.dir], rng: noiseStream,
                                 file: data.readers[info.dir][info.shard].path)
    }

    /// One optimizer step over the next batch.
    public func trainStep() throws -> StepResult {
        var c = cursor
        let batch = nextBatch(from: &c)
        let seqs = try batch.map { try sequence($0, noiseStream: options.noise > 0 ? SplitMix64.derive(options.seed, 0x0015E, UInt64(step), UInt64($0)) : nil) }
        let rows = seqs.reduce(0) { $0 + $1.lossCount }
        let scale = rows > 0 ? 1 / Float(rows) : 0
        let stats = accumulateGradients(seqs, scale: scale)
        let lr = optimizer.rate(step: step)
        let norm = optimizer.update(params: &params, grads: &grads, m: &m, v: &v, slots: model.layout.slots, step: step, threads: threads)
        let result = StepResult(step: step + 1, lr: lr, stats: stats, gradNorm: norm, samples: batch.count)
        step += 1
        cursor = c
        return result
    }

    /// The batch's sequences split over `threads` threads by length (longest first, each to the
    /// least loaded thread), each thread taking its sequences in batch order: a pure function
    /// of the lengths and the thread count.
    static func assign(_ lengths: [Int], threads: Int) -> [[Int]] {
        let t = max(1, min(threads, lengths.count))
        var groups = [[Int]](repeating: [], count: t), load = [Int](repeating: 0, count: t)
        for i in lengths.indices.sorted(by: { (lengths[$0], $1) > (lengths[$1], $0) }) {
            let g = load.indices.min { (load[$0], $0) < (load[$1], $1) }!
            groups[g].append(i); load[g] += lengths[i]
        }
        return groups.map { $0.sorted() }
    }

    /// Zeroes `grads` and adds every sequence's `scale`-weighted gradient into it. With several
    /// threads, whole sequences run side by side (BLAS single-threaded inside each: the draft's
    /// products are too small for BLAS threads to pay, and a loaded machine stalls them), each
    /// thread into its own gradient buffer; the buffers are then added to thread 0's in thread
    /// order. Deterministic for a given thread count; one thread adds in batch order.
    func accumulateGradients(_ seqs: [DraftSequence], scale: Float) -> LossStats {
        let groups = Trainer.assign(seqs.map(\.count), threads: threads)
        let count = params.count
        while extraGrads.count < groups.count - 1 { extraGrads.append(Buf(count)) }
        var groupStats = [LossStats](repeating: LossStats(), count: groups.count)
        if groups.count > 1 { openblas_set_num_threads(1) }
        params.withUnsafeBufferPointer { p in
            grads.withUnsafeMutableBufferPointer { g in
                groupStats.withUnsafeMutableBufferPointer { st in
                    let pp = p.baseAddress!, g0 = g.baseAddress!, stp = st.baseAddress!
                    parallelFor(groups.count, threads: groups.count) { k in
                        let dst = k == 0 ? g0 : extraGrads[k - 1].p
                        dst.update(repeating: 0, count: count)
                        for i in groups[k] { stp[k] += model.run(seqs[i], params: pp, grads: dst, loss: options.loss, gradScale: scale) }
                    }
                    if groups.count > 1 {
                        let extra = extraGrads.prefix(groups.count - 1).map(\.p)
                        parallelChunks(count, threads: groups.count, minChunk: 1 << 14) { r in
                            for e in extra { for i in r { g0[i] += e[i] } }
                        }
                    }
                }
            }
        }
        if groups.count > 1 { openblas_set_num_threads(Int32(threads)) }
        var stats = LossStats()
        for s in groupStats { stats += s }
        return stats
    }

    /// Loss and top-1 agreement over the validation samples (no noise), and the chain simulation.
    public func validate(maxSamples: Int, chainDepth: Int, maxChainStarts: Int) throws -> ValidationResult {
        var stats = LossStats()
        var chain = DraftModel.ChainResult(depth: chainDepth)
        let picked = Array(validationIndices.prefix(maxSamples))
        for i in picked {
            let s = try sequence(i, noiseStream: nil)
            stats += model.run(s, params: params, grads: nil, loss: options.loss)
            let left = maxChainStarts - chain.starts
            if left > 0 { chain += model.chain(s, params: params, depth: chainDepth, maxStarts: left) }
        }
        var r = ValidationResult(samples: picked.count, loss: stats.meanLoss, top1: stats.top1, positions: stats.rows, tau: chain.tau,
                                 chainStarts: chain.starts, acceptedHistogram: chain.histogram)
        // Every arch with self-fed steps reports each step's agreement: what the extra steps buy.
        if model.config.isEagle3 || stats.steps.rows.count > 1 { r.stepTop1 = (0..<stats.steps.rows.count).map { stats.steps.top1($0) ?? 0 } }
        return r
    }
}
