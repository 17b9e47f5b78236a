@_exported import Diagnostics

/// A fault in a safetensors file or in a request to it: `file` is the path (or the name given to
/// an in-memory buffer), `field` the part at fault (`header`, a tensor name, `name.dtype`, ...).
public enum SafeTensorsFault {}
public typealias SafeTensorsError = FieldError<SafeTensorsFault>
