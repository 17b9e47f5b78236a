import Diagnostics
import Foundation
import GGUF
import Kernels
import Llama
import SafeTensors

/// `export-draft`: an EAGLE-3 draft written in the format another engine loads.
public enum Eagle3Export {
    public enum Format: String, CaseIterable, Sendable {
        case llamaCpp = "llama.cpp", hfEagle3 = "hf-eagle3"
    }

    /// Reads `draft` (a specdec checkpoint or an eagle3 GGUF) for the target at `modelPath` and
    /// writes it to `out`: one .gguf (llama.cpp; `dtype` f16 or f32, default f16) or a folder
    /// (hf-eagle3; bf16, f16 or f32, default bf16). Returns the weights written.
    public static func export(draft: String, modelPath: String, format: Format, out: String, dtype: String?) throws -> DraftWeights {
        let file = try GGUFFile(path: modelPath)
        let config = try LlamaConfig(gguf: file)
        let weights = try loadWeights(path: draft, target: config)
        switch format {
        case .llamaCpp:
            let t: QuantType
            switch dtype ?? "f16" {
            case "f16": t = .f16
            case "f32": t = .f32
            case let other: throw SettingError("--dtype", "--dtype \(other): llama.cpp export writes f16 or f32")
            }
            guard out.hasSuffix(".gguf") else { throw SettingError("--out", "--out \(out): a llama.cpp draft is one .gguf file") }
            try Eagle3Formats.writeGGUF(weights, targetFile: file, target: config, to: out, matrixType: t)
        case .hfEagle3:
            let t: SafeTensorsDType
            switch dtype ?? "bf16" {
            case "bf16": t = .BF16
            case "f16": t = .F16
            case "f32": t = .F32
            case let other: throw SettingError("--dtype", "--dtype \(other): hf-eagle3 export writes bf16, f16 or f32")
            }
            try Eagle3Formats.writeHF(weights, target: config, folder: out, dtype: t)
        }
        return weights
    }

    /// An EAGLE-3 draft's weights from a specdec checkpoint or an eagle3 GGUF.
    public static func loadWeights(path: String, target: LlamaConfig) throws -> DraftWeights {
        guard FileManager.default.fileExists(atPath: path) else { throw SettingError("DRAFT", "\(path): no such draft file") }
        let w: DraftWeights
        if path.hasSuffix(".gguf") {
            w = try Eagle3Formats.readGGUF(try GGUFFile(path: path), target: target)
        } else {
            w = try DraftWeights.load(path: path, target: target)
        }
        guard w.config.isEagle3 else {
            throw SettingError("DRAFT", "\(path): an \(w.config.arch) draft; only eagle3 drafts (train-adapter --arch eagle3) can be exported")
        }
        return w
    }
}
