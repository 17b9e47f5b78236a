/// The one shape of an input error: which file (or buffer, or request), which field of it, and
/// what is wrong, so that a user can tell which of several inputs is broken and where. `Source`
/// only tells the kinds apart (`GGUFError`, `SafeTensorsError`, `TokenizerError`, `DraftError`),
/// so that a caller can catch one kind and let the others pass.
public struct FieldError<Source>: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String
    public var field: String
    public var reason: String

    public init(file: String, field: String, reason: String) {
        self.file = file; self.field = field; self.reason = reason
    }

    public var description: String { "\(file): \(field): \(reason)" }
}
