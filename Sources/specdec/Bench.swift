import ArgumentParser
import Evaluation
import Foundation
import GGUF
import Llama

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prompt processing, decoding, verification cost and memory bandwidth.",
        discussion: """
        ppN: one batched forward of N pseudo-random tokens from an empty cache (on the OpenBLAS \
        prompt path decode uses, unless --pp-exact), in tokens/s. tgN: N single-token forwards \
        after a short prompt, in tokens/s. Each is the median (and min/max) of --reps runs after \
        one warm-up run. verify_cost: the time of one batch-invariant forward of N new tokens with \
        logits for the last row (as llama-bench's ppN; the verifier runs the LM head only for the rows its walk visits) at each context of --verify-ctx, and its ratio to N=1. \
        head_cost: the LM head alone on 1, 2, 4 and 8 rows (measured with --verify), and its ratio to one row. \
        bandwidth_gbs: the best of several multi-threaded read passes over a buffer of \
        --bandwidth-mib MiB (1 GB = 10^9 bytes); floor_tokens_per_s is that bandwidth divided by \
        the weight bytes one decoded token reads. Progress goes to stderr; stdout holds one table, \
        or with --json one JSON object. With --mmproj TOWER --image FILE, image_prefill: the time \
        to encode the image (decoding, resizing, ViT, projector) plus the prefill of a question \
        about it, in ms.

        With --draft DRAFT --prompts FILE.jsonl it instead compares speculative with plain \
        decoding over the prompts (one JSON object per line: "prompt" or "text", optional \
        "image"; image prompts need --vision-tower), at T=0 and T=1: medians over prompts.
        """
    )

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var precisionOption: PrecisionOption
    @OptionGroup var imageOptions: ImageOptions

    @OptionGroup var threadsOption: ThreadsOption

    @Option(help: "Timed runs per measurement (after one warm-up run).")
    var reps = 5

    @Option(help: "Prompt-processing batch sizes, comma-separated.")
    var pp = "64,512"

    @Option(help: "Decode lengths (single-token forwards), comma-separated.")
    var tg = "128"

    @Option(name: .customLong("tg-prompt"), help: "Prompt tokens before the timed decode forwards.")
    var tgPrompt = 16

    @Option(help: "Verification batch sizes N, comma-separated; the first is the ratio's base.")
    var verify = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,32,64"

    @Option(name: .customLong("verify-ctx"), help: "Cached contexts before each verification forward, comma-separated (one curve each).")
    var verifyCtxList = "256,1024"

    @Option(name: .customLong("bandwidth-mib"), help: "Size of the bandwidth test buffer in MiB (0 = skip).")
    var bandwidthMiB = 1024

    @Option(name: .customLong("bandwidth-passes"), help: "Read passes over the bandwidth buffer.")
    var bandwidthPasses = 5

    @Flag(name: .customLong("pp-exact"), help: "Measure prompt processing on the batch-invariant path instead of OpenBLAS.")
    var ppExact = false

    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    @OptionGroup var draftOptions: DraftOptions

    @Option(help: ArgumentHelp("With --draft: JSONL prompts for the speculative-vs-plain bench.", valueName: "FILE"))
    var prompts: String?

    @Option(name: .customLong("vision-tower"), help: ArgumentHelp("With --prompts: the mmproj tower for image prompts.", valueName: "TOWER.gguf"))
    var visionTower: String?

    @Option(name: [.short, .customLong("n-predict")], help: "With --prompts: tokens generated per prompt.")
    var nPredict = 64

    /// The parsed lists (checked in `validate`).
    var ppSizes: [Int] { parseList(pp) ?? [] }
    var tgSizes: [Int] { parseList(tg) ?? [] }
    var verifySizes: [Int] { parseList(verify) ?? [] }
    var verifyContexts: [Int] { parseList(verifyCtxList) ?? [] }

    func validate() throws {
        for (name, list) in [("--pp", pp), ("--tg", tg), ("--verify", verify)] {
            guard parseList(list) != nil else {
                throw ValidationError("\(name) '\(list)' is not a comma-separated list of positive integers")
            }
        }
        guard reps >= 1 else { throw ValidationError("--reps must be ≥ 1") }
        guard tgPrompt >= 1 else { throw ValidationError("--tg-prompt must be ≥ 1") }
        guard let vc = parseList(verifyCtxList), !vc.isEmpty, vc.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--verify-ctx must be a comma-separated list of contexts ≥ 1")
        }
        guard bandwidthMiB >= 0 else { throw ValidationError("--bandwidth-mib must be ≥ 0") }
        guard bandwidthPasses >= 1 else { throw ValidationError("--bandwidth-passes must be ≥ 1") }
    }

    func run() throws {
        let threads = threadsOption.threads
        if draftOptions.draft != nil || prompts != nil {
            guard let p = prompts, let draft = draftOptions.draft else { throw CLIError("the speculative bench needs both --draft and --prompts") }
            let target = try modelOption.load(threads: threads, precision: precisionOption)
            let out = try SpeculativeBench.run(target: target, draft: draft, promptsPath: p, towerPath: visionTower, maxTokens: nPredict,
                                               tree: draftOptions.tree.request(), threads: threads, log: printErr)
            if json { try printJSON(out) } else { print(out.table) }
            return
        }
        let path = try modelOption.resolvedPath()
        let gguf = try GGUFFile(path: path)
        let model = try LlamaModel(file: gguf, threads: threads)
        model.activationQuant = precisionOption.activations
        var st = ModelBench.Settings()
        st.ppSizes = ppSizes; st.tgSizes = tgSizes; st.tgPrompt = tgPrompt; st.verifySizes = verifySizes
        st.verifyContexts = verifyContexts; st.reps = reps; st.ppExact = ppExact; st.threads = threads
        st.bandwidthMiB = bandwidthMiB; st.bandwidthPasses = bandwidthPasses
        let out = try ModelBench.run(model: model, path: path, settings: st, imagePrefill: {
            guard let tower = imageOptions.mmproj, !imageOptions.images.isEmpty else { return nil }
            return try ImagePrefillBench.measure(towerPath: tower, images: imageOptions.images, model: model, gguf: gguf,
                                                 reps: reps, log: printErr)
        }, log: printErr)
        if json { try printJSON(out) } else { print(out.table(ppExact: ppExact)) }
    }
}

/// "64,512" → [64, 512]; nil unless every entry is a positive integer. "" is the empty list.
private func parseList(_ s: String) -> [Int]? {
    if s.isEmpty { return [] }
    var out: [Int] = []
    for part in s.split(separator: ",", omittingEmptySubsequences: false) {
        guard let v = Int(part.trimmingCharacters(in: .whitespaces)), v >= 1 else { return nil }
        out.append(v)
    }
    return out
}
