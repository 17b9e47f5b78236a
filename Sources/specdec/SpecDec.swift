import ArgumentParser
import Kernels

@main
struct SpecDec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "specdec",
        abstract: "Fast, lossless speculative decoding of vision-language models on the CPU.",
        discussion: """
        Models are GGUF files. Without -m, commands use the model that scripts/setup.sh fetched \
        (SmolLM2-135M-Instruct Q4_1): $SPECDEC_MODEL, else $SPECDEC_CACHE or ~/.cache/specdec.
        """,
        subcommands: [Decode.self, ServeCommand.self, Tokenize.self, Inspect.self, Bench.self, BLASCheckCommand.self, MakeDemoTower.self, SynthData.self, DataCommand.self, TrainAdapter.self, ExportDraft.self, Eval.self]
    )

    static func main() {
        OpenBLASCore.reexecIfNeeded()
        main(nil)
    }
}
