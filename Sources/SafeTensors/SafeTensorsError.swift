/// A fault in a safetensors file or in a request to it: `file` is the path (or the name given to
/// an in-memory buffer), `field` the part at fault (`header`, a tensor name, `name.dtype`, ...).
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String
    public var field: String
    public var reason: String

    public init(file: String, field: String, reason: String) {
        self.file = file; self.field = field; self.reason = reason
    }

    public var description: String { "\(file): \(field): \(reason)" }
}
