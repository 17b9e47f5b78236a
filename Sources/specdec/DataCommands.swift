import ArgumentParser
import DataSynth
import Shards
import Foundation

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Inspect, verify and merge synth-data datasets.",
        subcommands: [DataInspect.self, DataVerify.self, DataMerge.self, DataSnapshot.self]
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
