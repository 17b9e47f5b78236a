import Foundation
import Llama
import SafeTensors

/// A draft checkpoint (docs/draft-design.md) read and checked: the one reader that inference
/// (`DraftWeights.load`) and training (`Checkpoint.load` in DraftTraining) both use.
///
/// Checks the format and version keys, the config (alone, and against the target when one is
/// given), every tensor of `config.tensors` (present, the table's shape, a float dtype, finite),
/// no `lm_head` beside a tied head, and `d2t` (present exactly when the draft vocabulary is cut,
/// target ids in range; the identity may be stored). Faults are `DraftError`s naming the file
/// and the key or tensor; unreadable files are `SafeTensorsError`s.
public struct DraftCheckpoint {
    public static let format = "specdec-draft"
    public static let version = "1"

    public let file: SafeTensorsFile
    public let config: DraftConfig
    /// Every tensor of `config.tensors`, by name, as float32.
    public let tensors: [String: [Float]]
    /// Draft row → target token id; nil when the draft has the full vocabulary (the identity).
    public let d2t: [Int32]?
    /// Every `__metadata__` entry (format, version and config included).
    public var metadata: [String: String] { file.metadata }

    /// The metadata keys every checkpoint starts with.
    public static func header(_ c: DraftConfig) -> [String: String] {
        ["format": format, "version": version, "config": c.json()]
    }

    public init(path: String, target: LlamaConfig?) throws {
        try self.init(try SafeTensorsFile(path: path), target: target)
    }

    public init(_ f: SafeTensorsFile, target: LlamaConfig?) throws {
        let file = f.file
        func err(_ field: String, _ r: String) -> DraftError { DraftError(file: file, field: field, reason: r) }
        if let fmt = f.metadata["format"], fmt != Self.format {
            throw err("__metadata__.format", "is \"\(fmt)\", not \"\(Self.format)\"")
        }
        if let v = f.metadata["version"], v != Self.version {
            throw err("__metadata__.version", "version \(v) is not supported (\(Self.version) is)")
        }
        guard let cj = f.metadata["config"] else { throw err("__metadata__.config", "missing: not a specdec draft checkpoint") }
        let c: DraftConfig
        let decoder = JSONDecoder()
        decoder.userInfo[DraftConfig.legacyTarget] = target
        do { c = try decoder.decode(DraftConfig.self, from: Data(cj.utf8)) } catch {
            throw err("__metadata__.config", "not a valid draft config: \(error)")
        }
        if let t = target { try c.validate(target: t, file: file) } else { try c.validate(file: file) }

        var t: [String: [Float]] = [:]
        for tensor in c.tensors {
            let name = tensor.name, shape = tensor.shape
            guard f.contains(name) else { throw err(name, "missing (the config needs it, shape \(shape))") }
            let info = try f.info(name)
            guard info.shape == shape else {
                throw err(name, "has shape \(info.shape), the config (width \(c.width), ffn \(c.ffn), vocab \(c.vocab)) needs \(shape)")
            }
            guard info.dtype == .F32 || info.dtype == .F16 || info.dtype == .BF16 else {
                throw err(name, "dtype \(info.dtype) is not F32, F16 or BF16")
            }
            let v = try f.floats(name)
            if let bad = v.firstIndex(where: { !$0.isFinite }) {
                throw err(name, "element \(bad) is \(v[bad]): the checkpoint is broken")
            }
            t[name] = v
        }
        typealias Name = DraftWeights.Name
        if c.headTied && f.contains(Name.lmHead) { throw err(Name.lmHead, "present although head_tied is true") }
        var d2t: [Int32]? = nil
        if c.vocab != c.targetVocab {
            guard f.contains(Name.d2t) else { throw err(Name.d2t, "missing (vocab \(c.vocab) < target_vocab \(c.targetVocab))") }
            let info = try f.info(Name.d2t)
            guard info.shape == [c.vocab], info.dtype == .I32 || info.dtype == .I64 else {
                throw err(Name.d2t, "is \(info.dtype) \(info.shape), needs I32 [\(c.vocab)]")
            }
            let m = try f.int32s(Name.d2t)
            if let bad = m.firstIndex(where: { $0 < 0 || Int($0) >= c.targetVocab }) {
                throw err(Name.d2t, "entry \(bad) = \(m[bad]) is not a target token id (0..<\(c.targetVocab))")
            }
            d2t = m
        } else if f.contains(Name.d2t) {
            // The identity map may be stored; anything else with the full vocabulary is a mistake.
            let m = try f.int32s(Name.d2t)
            guard m.count == c.vocab, m.enumerated().allSatisfy({ Int($1) == $0 }) else {
                throw err(Name.d2t, "vocab = target_vocab, so d2t must be absent or the identity")
            }
        }
        self.file = f; self.config = c; self.tensors = t; self.d2t = d2t
    }
}
