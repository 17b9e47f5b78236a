import ArgumentParser

/// `--draft` and the tree flags (`TreeOptions`): what `decode`, `bench` and `serve` need for
/// speculative decoding.
struct DraftOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Speculative decoding with this draft: an EAGLE/ViSpec checkpoint (.safetensors) or a LLaMA-family GGUF sharing the target's vocabulary (the target's own file is a perfect, slow draft for testing), or early-exit:K (the target's first K layers with its own head: the training-free self-draft baseline), or ngram[:N] (prompt lookup: the tokens that followed the text's last 2–4 tokens where they occurred before, up to N a step, default 4: free to draft). DRAFT+ngram[:N] merges those context matches into DRAFT's trees (counted apart from tau).",
        valueName: "DRAFT"))
    var draft: String?

    @OptionGroup var tree: TreeOptions
}
