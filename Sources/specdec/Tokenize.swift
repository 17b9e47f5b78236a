import ArgumentParser
import Foundation
import GGUF
import Tokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a prompt (with the chat template unless --raw).")

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var promptOptions: PromptOptions

    @Flag(help: "Print {\"ids\": [...]} only.")
    var json = false

    struct Output: Encodable { var ids: [Int32] }

    func run() throws {
        let gguf = try GGUFFile(path: try modelOption.resolvedPath())
        let tokenizer = try BPETokenizer(gguf: gguf)
        let ids = try promptOptions.tokens(gguf: gguf, tokenizer: tokenizer)
        if json {
            try printJSON(Output(ids: ids))
        } else {
            for id in ids {
                let piece = String(decoding: tokenizer.decode([id]), as: UTF8.self)
                print(String(format: "%6d  ", id) + piece.debugDescription)
            }
            print("\(ids.count) tokens")
        }
    }
}
