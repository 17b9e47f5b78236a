import GGUF
import Kernels
import Llama
import Tokenizer

/// The target as every generating front end loads it: file, model (in `activations`), tokenizer.
public struct LoadedTarget {
    public var path: String
    public var gguf: GGUFFile
    public var model: LlamaModel
    public var tokenizer: BPETokenizer

    public init(path: String, threads: Int, activations: ActivationQuant) throws {
        self.path = path
        gguf = try GGUFFile(path: path)
        model = try LlamaModel(file: gguf, threads: threads)
        model.activationQuant = activations
        tokenizer = try BPETokenizer(gguf: gguf)
    }
}

extension LlamaConfig {
    /// The context a generation gets: `requested` (`--ctx`), else the model's but at most 4096
    /// (a bigger cache costs memory for prompts that rarely need it); never more than the model's.
    public func contextSize(requested: Int?) -> Int {
        min(requested ?? min(contextLength, 4096), contextLength)
    }
}
