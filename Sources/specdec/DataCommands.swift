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
        let s: DatasetSummary
        do { s = try summarizeDataset(dir: dir, sample: sample) } catch let e as DataError { throw CLIError(e.description) }
        if json { try printJSON(s, snakeCase: true); return }
        func mb(_ b: Int) -> String { String(format: "%.2f MB", Double(b) / 1e6) }
        print("\(dir): \(s.records) of \(s.samples) samples in \(s.shards) shard\(s.shards == 1 ? "" : "s")")
        if let m = s.model { print("model:  \(m.file) (sha256 \(m.sha256.prefix(16))…, \(m.architecture), width \(m.width), vocab \(m.vocabSize))") }
        if let t = s.tower { print("tower:  \(t.file) (sha256 \(t.sha256.prefix(16))…)") }
        if let src = s.source {
            print("source: \(src.kind)" + (src.file.map { " \($0)" } ?? "") + (src.seed.map { " seed \($0)" } ?? "")
                  + (src.sha256.map { " (sha256 \($0.prefix(16))…)" } ?? ""))
        }
        if let g = s.generation {
            print("generation: max_new \(g.maxNew), " + (g.temperature == 0 ? "greedy" : "temp \(g.temperature) top_k \(g.topK) top_p \(g.topP) min_p \(g.minP)")
                  + ", seed \(g.seed), context \(g.contextSize), long answer: " + (g.longAnswer.map { "\"\($0)\"" } ?? "off"))
        }
        let per = s.records > 0 ? Double(s.tokens) / Double(s.records) : 0
        print(String(format: "tokens: %d (prompt %d, answer %d; %.1f per sample)", s.tokens, s.promptTokens, s.answerTokens, per))
        print("stops:  " + s.stopReasons.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print("hidden: \(s.hiddenEncoding)" + (s.hiddenWidth > 0 ? ", width \(s.hiddenWidth)" : "") + (s.zstdLevel.map { ", zstd level \($0)" } ?? ""))
        print(String(format: "size:   %@ (%.0f bytes per sample); raw fp16 hidden states %@: %.2fx smaller",
                     mb(s.bytes), s.bytesPerSample, mb(s.rawFp16HiddenBytes), s.compressionRatio))
        if !s.faults.isEmpty { print("FAULTS: \(s.faults.count) (run specdec data verify \(dir))") }
        if let v = s.sample {
            print("\nsample \(v.index) (\(v.id)): \(v.tokens) tokens, \(v.answerTokens) answer, \(v.imageTokens) image; stop: \(v.stopReasons.joined(separator: ", "))")
            for m in v.messages {
                print("[\(m.role)]")
                print(m.content)
            }
        }
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

    struct Output: Encodable {
        var dir: String
        var ok: Bool
        var shards: Int
        var samples: Int
        var covered: Int
        var records: Int
        var faults: [String]
        var notes: [String]
    }

    func run() throws {
        let c = verifyDataset(dir: dir)
        let records = c.shards.reduce(0) { $0 + $1.check.entries.count }
        if json {
            try printJSON(Output(dir: dir, ok: c.ok, shards: c.shards.count, samples: c.samples, covered: c.covered, records: records,
                                 faults: c.faults.map(\.description), notes: c.notes), snakeCase: true)
        } else {
            for f in c.faults { print("FAULT \(f)") }
            for n in c.notes { print("note: \(n)") }
            if c.ok {
                print("\(dir): OK: \(c.shards.count) shard\(c.shards.count == 1 ? "" : "s"), \(records) records, \(c.covered) of \(c.samples) samples")
            } else {
                print("\(dir): \(c.faults.count) fault\(c.faults.count == 1 ? "" : "s")")
            }
        }
        if !c.ok { throw ExitCode(1) }
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
        let m: MergeSummary
        do { m = try mergeDatasets(dirs, out: out) } catch let e as DataError { throw CLIError(e.description) }
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
        let s: SnapshotSummary
        do { s = try snapshotDataset(dir, out: out, records: records) } catch let e as DataError { throw CLIError(e.description) }
        if json { try printJSON(s, snakeCase: true) } else { print("\(out): \(s.records) records of samples 0..<\(s.samples) from \(s.source)") }
    }
}
