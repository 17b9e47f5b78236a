import Draft
import Foundation
import Generation
import GGUF
import Llama
import Sampling
import Testing
import TestSupport
import Tokenizer
import Verify
import Vision

/// The real target (SmolLM2-135M), loaded once for the whole target.
enum Target {
    static let threads = 2
    /// The default (q8) precision.
    static let model: LlamaModel = { try! LlamaModel(path: TestPaths.model, threads: threads) }()
    /// The same weights in the exact (f32) precision.
    static let f32Model: LlamaModel = {
        let m = try! LlamaModel(path: TestPaths.model, threads: threads)
        m.activationQuant = .none
        return m
    }()
    static let gguf: GGUFFile = { model.file }()
    static let tokenizer: BPETokenizer = { try! BPETokenizer(gguf: gguf) }()
    static var vocab: Int { model.config.vocabSize }
    static var width: Int { model.config.width }
    static let eog: Set<Int32> = { tokenizer.endOfGenerationTokens }()
}

/// A test prompt: its name and the model input the library's `UserInputProcessor` makes of it,
/// exactly as `specdec decode` and `serve` prepare theirs.
struct TestPrompt {
    var name: String
    var input: LMInput

    var tokens: [Int32] { input.tokens }
    var sequence: MultimodalSequence? { input.sequence }
    var history: [Int32] { input.history }
    var images: [DraftImageSpan] { input.draftImageSpans }

    /// The library's prefill (`specdec decode`'s).
    func prefill(_ session: any TargetSession, captureLayers: [Int] = []) throws -> ForwardOutput {
        try input.prefill(session, captureLayers: captureLayers)
    }

    static let tower: VisionTower = { try! VisionTower(path: TestPaths.repoRoot.appendingPathComponent("checkpoints/demo-tower.gguf").path) }()
    static let processor: UserInputProcessor = {
        try! UserInputProcessor(model: Target.model, tokenizer: Target.tokenizer, gguf: Target.gguf, tower: tower)
    }()

    static func chat(_ text: String) -> TestPrompt {
        TestPrompt(name: text, input: try! processor.prepare(messages: [UserMessage(role: "user", text: text)]))
    }

    static func raw(_ text: String) -> TestPrompt {
        TestPrompt(name: text, input: try! processor.prepare(raw: text))
    }

    static func image(_ file: String, question: String) throws -> TestPrompt {
        let picture = try ImageDecoder.load(path: TestPaths.repoRoot.appendingPathComponent("checkpoints/images/\(file)").path)
        return TestPrompt(name: "\(file): \(question)",
                          input: try processor.prepare(messages: [UserMessage(role: "user", text: question, images: [picture])]))
    }

    /// 44 text prompts (chat and raw) and 8 image prompts.
    static let all: [TestPrompt] = {
        let chats = [
            "What is the capital of France?", "Write a haiku about the sea.", "Explain photosynthesis in one sentence.",
            "List three prime numbers.", "What is 12 times 7?", "Give me a synonym for happy.", "Who wrote Hamlet?",
            "Describe a cat.", "How do airplanes fly?", "Tell me a joke.", "What colour is the sky at noon?",
            "Translate 'good morning' into Spanish.", "Name a planet in our solar system.", "Why do leaves change colour?",
            "What is the boiling point of water?", "Write one sentence about dogs.", "Summarise the water cycle.",
            "What is a noun?", "Suggest a name for a goldfish.", "How many days are in a week?",
            "What does a bee make?", "Give an example of a fruit.", "What is gravity?", "Say hello in French.",
        ]
        let raws = [
            "Once upon a time", "The quick brown fox", "In the beginning", "def fibonacci(n):", "1, 2, 3, 4,",
            "The weather today is", "My favourite food is", "Dear Sir or Madam,", "The history of Rome", "import numpy as np\n",
            "Q: What is 2+2?\nA:", "Roses are red,", "The meaning of life is", "Step 1:", "Hello, my name is",
            "The cat sat on the", "In 1969, humans", "Water is made of", "The best way to learn is", "Chapter 1\n\n",
        ]
        var out = chats.map(chat) + raws.map(raw)
        let images: [(String, String)] = [
            ("green.png", "What is the main color of this picture?"), ("red-blue.png", "Describe the colours."),
            ("yellow.png", "What do you see?"), ("red-square.png", "Which colours are in the image?"),
            ("purple.png", "Name the colour."), ("white.png", "Is this picture bright or dark?"),
            ("blue.png", "What color is this?"), ("orange.png", "Describe this image."),
        ]
        out += images.map { try! image($0.0, question: $0.1) }
        return out
    }()
}

/// Plain greedy (or sampled) decoding: the library loop `specdec decode` runs.
func plainDecode(_ p: TestPrompt, n: Int, params: SamplingParameters = SamplingParameters(),
                 model: LlamaModel = Target.model) throws -> [Int32] {
    try Generation.plain(model: model, prompt: p.input, contextSize: p.tokens.count + n + 8, params: params,
                         maxTokens: n, eog: Target.eog).tokens
}

/// Speculative decoding of up to n tokens (stopping at end of generation, like `plainDecode`):
/// the library loop `specdec decode --draft` runs.
func speculativeDecode(_ p: TestPrompt, n: Int, drafter: Drafter, shape: TreeShape,
                       params: SamplingParameters = SamplingParameters(), extraContext: Int = 80,
                       fallback: FallbackPolicy? = nil, pMin: PMinBandit? = nil,
                       model: LlamaModel = Target.model) throws -> (tokens: [Int32], stats: SpeculativeStats) {
    let r = try Generation.speculative(model: model, drafter: drafter, prompt: p.input, contextSize: p.tokens.count + n + extraContext,
                                       params: params, shape: shape, maxTokens: n, eog: Target.eog, fallback: fallback, pMin: pMin)
    #expect(r.stop != .context, "the test context was too small")
    return (r.tokens, r.speculative!)
}

/// A bad draft: seeded random distinct tokens with made-up, decreasing log-probabilities.
final class RandomDrafter: Drafter {
    private var rng: SeededGenerator
    private let vocab: Int, width: Int
    private(set) var acceptedPositions = 0
    init(seed: UInt64, vocab: Int = Target.vocab, width: Int = Target.width) {
        rng = SeededGenerator(seed: seed); self.vocab = vocab; self.width = width
    }

    private func candidates(_ k: Int) -> [DraftCandidate] {
        var seen = Set<Int32>(), out: [DraftCandidate] = []
        while out.count < k {
            let t = Int32(rng.next() % UInt64(vocab))
            if seen.insert(t).inserted { out.append(DraftCandidate(token: t, logProb: -Float(out.count + 1) * 0.5 - rng.nextUnitFloat() * 0.1)) }
        }
        return out
    }

    func accept(features: [Float], nextTokens: [Int32], images: [DraftImageSpan], topK: Int) throws -> [DraftCandidate] {
        precondition(features.count == nextTokens.count * width, "features must be one target row per accepted position")
        acceptedPositions += nextTokens.count
        return candidates(topK)
    }

    func expand(tokens: [Int32], parents: [Int], topK: Int) throws -> [[DraftCandidate]] {
        tokens.map { _ in candidates(topK) }
    }

    func reset() { acceptedPositions = 0 }
}

/// The perfect greedy draft: the target itself in its own session.
func perfectDrafter(contextSize: Int = 512, model: LlamaModel = Target.model) -> LlamaDrafter {
    LlamaDrafter(model: model, contextSize: contextSize, prefillBatchInvariant: Generation.prefillBatchInvariant)
}

func shape(_ k: Int, _ d: Int, _ n: Int) -> TreeShape { try! TreeShape(topK: k, depth: d, tokens: n) }
