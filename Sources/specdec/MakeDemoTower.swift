import ArgumentParser
import Foundation
import GGUF
import Tokenizer
import Vision

struct MakeDemoTower: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-demo-tower",
        abstract: "Build the stand-in vision tower for a language model that has none (and example images).",
        discussion: """
        Writes a llama.cpp mmproj GGUF (projector mlp) whose weights are set by hand, not trained: \
        each 32×32 quadrant of the 64×64 input becomes the language model's own token embedding of \
        the colour word whose palette colour is nearest the patch's mean colour in CIELAB (D65, \
        sRGB gamma expanded): red, orange, yellow, green, blue, cyan, \
        purple, pink, brown, black, white, gray. Deterministic: the same model gives the same \
        bytes. With --images DIR it also writes the example pictures (64×64 PNG).
        """)

    @OptionGroup var modelOption: ModelOption

    @Option(help: "Where to write the tower.")
    var out = "checkpoints/demo-tower.gguf"

    @Option(help: ArgumentHelp("Also write the example images into this folder.", valueName: "DIR"))
    var images: String?

    @Option(help: ArgumentHelp("Patch size in pixels, a divisor of 64: 32 gives 4 image positions (the shipped tower), 16 gives 16, 8 gives 64.", valueName: "P"))
    var patchSize = DemoTower.patchSize

    func run() throws {
        let gguf = try GGUFFile(path: try modelOption.resolvedPath())
        let tokenizer = try BPETokenizer(gguf: gguf)
        let writer = try DemoTower.build(model: gguf, tokenizer: tokenizer, patchSize: patchSize)
        try writer.write(to: out)
        printErr("wrote \(out) (\(writer.tensors.count) tensors)")
        if let dir = images {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for (name, image) in DemoTower.exampleImages() {
                let path = (dir as NSString).appendingPathComponent(name + ".png")
                try writeAtomically(ImageEncoder.png(image), to: path)
                printErr("wrote \(path)")
            }
        }
    }
}
