/// A setting that cannot be used (a command-line option, or the same value given by a Swift
/// caller): `option` names it as the command line spells it, `description` is the whole sentence
/// for the user, so that a front end prints it as is.
public struct SettingError: Error, CustomStringConvertible, Equatable, Sendable {
    public var option: String
    public var description: String

    public init(_ option: String, _ description: String) {
        self.option = option; self.description = description
    }
}
