import ArgumentParser

/// `--mmproj` / `--image`: pictures for a vision-language prompt.
struct ImageOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Vision tower: a llama.cpp mmproj GGUF (with --image).", valueName: "TOWER.gguf"))
    var mmproj: String?

    @Option(name: .customLong("image"), help: ArgumentHelp(
        "Image (PNG, JPEG, binary PPM/PGM); repeat for several, in prompt order. Each goes where the prompt says <image>, else all go before the text.",
        valueName: "FILE"))
    var images: [String] = []

    func validate() throws {
        if !images.isEmpty && mmproj == nil { throw ValidationError("--image needs a vision tower: --mmproj TOWER.gguf") }
        if mmproj != nil && images.isEmpty { throw ValidationError("--mmproj needs at least one --image FILE") }
    }
}
