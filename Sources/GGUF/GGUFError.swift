/// Every way a GGUF file can be unusable. Each names the file and the field so that a user
/// can tell which of several inputs is broken and where.
public struct GGUFError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var field: String
    public var reason: String

    public init(file: String, field: String, reason: String) {
        self.file = file; self.field = field; self.reason = reason
    }

    public var description: String { "\(file): \(field): \(reason)" }
}
