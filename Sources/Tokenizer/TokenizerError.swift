import Diagnostics

/// Every way a tokenizer or chat template description can be unusable. Like `GGUFError`, it
/// names the file and the metadata field so that a user can tell which input is broken and where.
public enum TokenizerFault {}
public typealias TokenizerError = FieldError<TokenizerFault>
