/// One prompt for the target to answer while writing training data.
public struct SynthPrompt: Sendable, Equatable {
    public var id: String
    /// User turns of the conversation, in order.
    public var userTurns: [String]
    /// Image files referenced by `<image>` markers, in prompt order.
    public var imagePaths: [String]
    public init(id: String, userTurns: [String], imagePaths: [String] = []) {
        self.id = id; self.userTurns = userTurns; self.imagePaths = imagePaths
    }
}

/// Where `specdec synth-data` takes its prompts from (LLaVA JSON, JSONL, the built-in generator).
/// Filled in by the data-synthesis issue.
public protocol DataSource {
    /// Total number of prompts, when known, for progress and sharding.
    var count: Int? { get }
    mutating func next() throws -> SynthPrompt?
}
