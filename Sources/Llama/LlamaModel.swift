#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GGUF
import Kernels

public enum LlamaError: Error, CustomStringConvertible, Equatable {
    case contextFull(needed: Int, capacity: Int)
    case tokenOutOfRange(Int32, vocabSize: Int)
    case emptyInput
    case badMask(String)
    case badEarlyExit(layers: Int, of: Int)

    public var description: String {
        switch self {
        case .contextFull(let n, let c): return "the sequence needs \(n) positions but the context holds \(c) (raise --ctx or shorten the prompt)"
        case .tokenOutOfRange(let t, let v): return "token id \(t) is outside the vocabulary (0..<\(v))"
        case .emptyInput: return "nothing to evaluate: the input is empty"
        case .badMask(let why): return "bad attention mask: \(why)"
        case .badEarlyExit(let k, let total): return "an early exit needs 1...\(total - 1) of the model's \(total) layers, not \(k)"
        }
    }
}

/// Which positions of a batch get output logits (the LM head is a large share of a step's cost).
public enum LogitRows: Sendable, Equatable {
    case none, last, all
}

/// A LLaMA-family GGUF model: configuration and packed weights, immutable and shareable.
public final class LlamaModel: @unchecked Sendable {
    public let file: GGUFFile
    public let config: LlamaConfig
    public let weights: LlamaWeights
    /// Worker threads for matrix work.
    public var threads: Int
    /// Activation format of the matrix products (`SPECDEC_ACT`, default `.none`: float32, the
    /// reference-accurate path). `.q8` quantizes activations to int8 per 32-block (llama.cpp's
    /// Q8_0 style) and uses integer dot products, for every batch size (prefill included):
    /// faster, batch-invariant, but not within the float path's golden tolerance.
    public var activationQuant: ActivationQuant = .environment

    public init(file: GGUFFile, threads: Int = defaultThreadCount) throws {
        self.file = file
        config = try LlamaConfig(gguf: file)
        weights = try LlamaWeights(gguf: file, config: config)
        self.threads = max(1, threads)
    }

    /// The first `layers` layers of `base` with its final norm and LM head: an early-exit
    /// self-draft (LayerSkip, Draft & Verify). Shares every weight with `base`.
    public init(earlyExitOf base: LlamaModel, layers: Int) throws {
        guard layers >= 1, layers < base.config.layerCount else {
            throw LlamaError.badEarlyExit(layers: layers, of: base.config.layerCount)
        }
        file = base.file
        var c = base.config
        c.layerCount = layers
        config = c
        var w = base.weights
        w.layers = Array(w.layers.prefix(layers))
        weights = w
        threads = base.threads
        activationQuant = base.activationQuant
    }

    public convenience init(path: String, threads: Int = defaultThreadCount) throws {
        try self.init(file: GGUFFile(path: path), threads: threads)
    }

    public func makeSession(contextSize: Int) -> LlamaSession {
        LlamaSession(model: self, contextSize: min(contextSize, config.contextLength))
    }
}

extension LlamaModel {
    /// The LM head on `rows` final-norm hidden states (`ForwardOutput.hidden` rows, contiguous):
    /// bit for bit the logits a forward returns for them, since the batched head computes every
    /// row as a single row. Lets the verifier pay the head (a fifth of a token's work on
    /// SmolLM2-135M) only for the tree nodes its walk is likely to visit.
    public func logits(hidden: UnsafePointer<Float>, rows: Int = 1, into out: UnsafeMutablePointer<Float>) {
        weights.output.multiply(hidden, n: rows, into: out, threads: threads, activations: activationQuant)
    }
}

public var defaultThreadCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
