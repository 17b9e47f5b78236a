import ArgumentParser
import DataSynth
import Shards
import Foundation

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Inspect, verify, merge and snapshot synth-data datasets, or recompute their hidden states.",
        subcommands: [DataInspect.self, DataVerify.self, DataMerge.self, DataSnapshot.self, DataFeatures.self]
    )
}

struct DataInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Counts, tokens, sizes, compression ratio and one sample as text.")

    @Argument(help: "Dataset folder.")
    var dir: String

    @Option(help: "Sample index to show (default: the first).")
    var sample: Int?

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let s = try summarizeDataset(dir: dir, sample: sample)
        if json { try printJSON(s, snakeCase: true) } else { s.lines(dir: dir).forEach { print($0) } }
    }
}

struct DataVerify: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every checksum and every record of a dataset; exit status 0 only if all pass.")

    @Argument(help: "Dataset folder.")
    var dir: String

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let report = DatasetVerifyReport(dir: dir, check: verifyDataset(dir: dir))
        if json { try printJSON(report, snakeCase: true) } else { report.lines.forEach { print($0) } }
        if !report.ok { throw ExitCode(1) }
    }
}

struct DataMerge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Join the shards of one dataset (e.g. from --shard i/N workers) into one folder with one manifest.",
        discussion: "Every input must verify; the sample indices must be distinct and cover the dataset. Shards are hard-linked when possible, else copied.")

    @Argument(help: "Dataset folders.")
    var dirs: [String]

    @Option(help: "Output folder (may be one of the inputs).")
    var out: String

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        let m = try mergeDatasets(dirs, out: out)
        if json { try printJSON(m, snakeCase: true) } else {
            print("\(out): \(m.shards.count) shards, \(m.samples) samples (\(m.linked) linked, \(m.copied) copied)")
        }
    }
}

struct DataSnapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Copy the complete records a running or killed synth-data has written so far into a finished dataset.",
        discussion: "Reads the one shard of a synth-data worker's folder (finished or still being written) and writes its complete records, with the header's sample count cut to what they cover, as a finished, verifiable dataset in --out. The running job is not disturbed; rerun later for a bigger snapshot.")

    @Argument(help: "A synth-data output folder.")
    var dir: String

    @Option(help: "Output folder (replaced).")
    var out: String

    @Option(help: "Keep only the first N complete records (nested subsets for a data-scaling curve).")
    var records: Int?

    @Flag(help: "Print one JSON object.")
    var json = false

    func run() throws {
        if let r = records, r < 1 { throw ValidationError("--records must be ≥ 1") }
        let s = try snapshotDataset(dir, out: out, records: records)
        if json { try printJSON(s, snakeCase: true) } else { print("\(out): \(s.records) records of samples 0..<\(s.samples) from \(s.source)") }
    }
}

struct DataFeatures: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "Recompute a dataset's hidden states from its tokens (teacher forcing), e.g. to add EAGLE-3's layer states.",
        discussion: """
        Each record's tokens go through the target in one batched forward, as a prefill does, and \
        the record is written again with the target's final-norm states and, with --hidden-layers, \
        the residual stream entering those layers: the dataset synth-data would have written with \
        these options, for the cost of a prefill instead of a generation. The kernels are \
        batch-invariant, so on the machine class that generated the data the final states come out \
        bit for bit the stored ones; the closing line counts the records where they do. Give the \
        model that wrote the dataset (checked by SHA-256), and its tower for image samples. The \
        source must be a finished dataset (`data snapshot` makes one of a running synth-data); a \
        killed run, rerun with the same arguments, keeps its complete records and continues.

        Example: specdec data features /work/data/text --out /work/data/text-e3 --hidden-layers eagle3 --hidden int8
        """)

    @Argument(help: "A finished dataset folder.")
    var source: String

    @Option(help: "Output folder.")
    var out: String

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: ArgumentHelp("The vision tower that made the dataset's image samples.", valueName: "TOWER.gguf"))
    var mmproj: String?

    @Option(help: "Hidden states: fp16 or int8 (default: the source's encoding).")
    var hidden: String?

    @Option(name: .customLong("hidden-layers"),
            help: ArgumentHelp("Also store the residual stream entering these target layers, comma-separated, or `eagle3` for 2, L/2, L−3.", valueName: "IDS"))
    var hiddenLayers: String?

    @Option(name: .customLong("zstd-level"), help: "zstd compression level (1–22; default: the source's).")
    var zstdLevel: Int32?

    @OptionGroup var threadsOption: ThreadsOption

    @Flag(help: "Print a JSON summary on stdout at the end.")
    var json = false

    func run() throws {
        var r = FeatureRequest(source: source, out: out, modelPath: try modelOption.resolvedPath())
        r.activations = precisionOption.activations
        r.towerPath = mmproj; r.hidden = hidden; r.hiddenLayers = hiddenLayers; r.zstdLevel = zstdLevel
        r.threads = threadsOption.threads
        let bar = ProgressBar()
        let summary: FeatureSummary
        do {
            summary = try r.run { p in
                let rate = p.seconds > 0 ? Double(p.positions) / p.seconds : 0
                bar.update(String(format: "data features %d/%d records | %.0f positions/s", p.done, p.total, rate), final: p.done == p.total, seconds: p.seconds)
            }
        } catch {
            bar.clear()
            throw error
        }
        bar.finish()
        if json { try printJSON(summary, snakeCase: true) } else { printErr(summary.line) }
    }
}
