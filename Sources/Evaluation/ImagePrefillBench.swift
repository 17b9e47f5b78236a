import Foundation
import Generation
import GGUF
import Kernels
import Llama
import Tokenizer
import Vision

/// `specdec bench --mmproj TOWER --image FILE`: the cost of an image prompt, split into the
/// image's encoding (file decoding, preprocessing, ViT and projector) and the language model's
/// prefill of the whole prompt (chat template, question and image rows, one batched forward).
public struct ImagePrefillBench: Encodable, Sendable {
    public var tower: String
    public var images: [String]
    public var image_rows: Int
    public var prompt_positions: Int
    public var encode_ms: Double
    public var prefill_ms: Double
    public var total_ms: Double
    public var total_min_ms: Double
    public var total_max_ms: Double

    static let question = "Describe this image."

    /// Median (and min/max of the total) over `reps` runs after one warm-up run.
    public static func measure(towerPath: String, images: [String], model: LlamaModel, gguf: GGUFFile, reps: Int,
                               log: (String) -> Void) throws -> ImagePrefillBench {
        let processor = try UserInputProcessor(model: model, tokenizer: try BPETokenizer(gguf: gguf), gguf: gguf,
                                               tower: try VisionTower(path: towerPath))
        var session: LlamaSession?
        var encode: [Double] = [], prefill: [Double] = [], total: [Double] = []
        var rows = 0, positions = 0
        for r in 0...reps {
            // The prompt as `decode` prepares it; the encoding is the files' decoding plus the
            // tower's time, the prefill everything else (laying out the prompt, the forward).
            let t0 = monotonicSeconds()
            let pictures = try images.map { try ImageDecoder.load(path: $0) }
            let loaded = monotonicSeconds()
            let input = try processor.prepare(messages: [UserMessage(role: "user", text: question, images: pictures)])
            let seq = input.sequence!
            if session == nil { session = model.makeSession(contextSize: seq.count + 1) }
            session!.truncate(to: 0)
            _ = try session!.forward(embeddings: seq.embeddings, logits: .last, batchInvariant: false)
            let t2 = monotonicSeconds()
            let encodeSeconds = (loaded - t0) + input.imageSeconds
            rows = seq.imageMask.filter { $0 }.count
            positions = seq.count
            guard r > 0 else { continue }  // warm-up
            encode.append(encodeSeconds * 1000); prefill.append((t2 - t0 - encodeSeconds) * 1000); total.append((t2 - t0) * 1000)
            log("  image prefill \(r)/\(reps): \(String(format: "%.2f", total.last!)) ms (encode \(String(format: "%.2f", encode.last!)))")
        }
        return ImagePrefillBench(tower: towerPath, images: images, image_rows: rows, prompt_positions: positions,
                                 encode_ms: median(encode), prefill_ms: median(prefill), total_ms: median(total),
                                 total_min_ms: total.min()!, total_max_ms: total.max()!)
    }

    /// One line for the bench table.
    public var tableLine: String {
        String(format: "image prefill: %.2f ms median (%.2f–%.2f): encode %.2f ms (decode, resize, ViT, projector) + LM prefill %.2f ms of %d positions (%d image rows)",
               total_ms, total_min_ms, total_max_ms, encode_ms, prefill_ms, prompt_positions, image_rows)
    }
}
