/// Every way a tokenizer or chat template description can be unusable. Like `GGUFError`, it
/// names the file and the metadata field so that a user can tell which input is broken and where.
public struct TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String
    public var field: String
    public var reason: String

    public init(file: String, field: String, reason: String) {
        self.file = file; self.field = field; self.reason = reason
    }

    public var description: String { "\(file): \(field): \(reason)" }
}
