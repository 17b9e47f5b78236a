@_exported import Diagnostics

/// Every way a GGUF file can be unusable, naming the file and the field.
public enum GGUFFault {}
public typealias GGUFError = FieldError<GGUFFault>
