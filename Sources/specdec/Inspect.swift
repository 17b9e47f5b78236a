import ArgumentParser
import Evaluation
import GGUF

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a GGUF file's metadata and a table of its tensors.")

    @Argument(help: "GGUF file (default: the model scripts/setup.sh fetched).")
    var file: String?

    @Option(help: "Array items to show per metadata value.")
    var maxItems = 8

    func run() throws {
        let path = try ModelOption(model: file).resolvedPath()
        let f = try GGUFFile(path: path)
        print("\(path): GGUF v\(f.version), \(f.metadata.count) metadata keys, \(f.tensors.count) tensors, alignment \(f.alignment), data at \(f.dataOffset)")
        print("\nmetadata:")
        let keyWidth = f.metadata.map(\.key.count).max() ?? 0
        for (k, v) in f.metadata {
            let type = v.type == .array ? "\(v.type)" : "\(v.type)"
            print("  \(k.padding(keyWidth))  \(type.padding(6))  \(v.summary(maxItems: maxItems))")
        }
        print("\ntensors:")
        let nameWidth = max(4, f.tensors.map(\.name.count).max() ?? 0)
        print("  \("name".padding(nameWidth))  \("type".padding(7))  \("shape".padding(16))  bytes")
        var total = 0
        for t in f.tensors {
            let shape = "[" + t.shape.map(String.init).joined(separator: ", ") + "]"
            print("  \(t.name.padding(nameWidth))  \(t.type.name.padding(7))  \(shape.padding(16))  \(t.byteCount)")
            total += t.byteCount
        }
        print("\n\(f.tensors.count) tensors, \(total) bytes")
    }
}

extension ModelOption {
    init(model: String?) { self.init(); self.model = model }
}
