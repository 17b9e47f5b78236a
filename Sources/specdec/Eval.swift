import ArgumentParser
import DataSynth
import Evaluation
import GGUF
import Generation

/// `specdec eval`: ViSpec's results table on the held-out evaluation set — plain decoding and each
/// draft, image and text prompts, at each temperature, measured side by side in one run.
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Speculative decoding with one or more drafts against plain decoding on the evaluation set: τ, speedup, identity.",
        discussion: """
        Runs every prompt of the set (default checkpoints/eval: held-out image questions from the \
        built-in generator, seed \(EvaluationSet.imageSeed), two per question template, plus text \
        prompts) with plain decoding and with each --draft, at each --temp, one after the other in \
        this process. Prints ViSpec's table (rows: plain and each draft; columns: image and text \
        prompts at each temperature; cells: τ = accepted draft tokens per target forward / speedup \
        over plain, medians over the prompts), then acceptance by depth and the draft's share of \
        step time. At T=0 every speculative output must equal plain decoding's; the table counts \
        those that do. --write-set DIR writes the evaluation set and exits.
        """)

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var precisionOption: PrecisionOption

    @Option(help: ArgumentHelp("Vision tower for the image prompts.", valueName: "TOWER.gguf"))
    var mmproj = "checkpoints/demo-tower.gguf"

    @Option(name: .customLong("draft"), help: ArgumentHelp("A draft to evaluate (repeat for several).", valueName: "DRAFT"))
    var drafts: [String] = []

    @Option(help: ArgumentHelp("Evaluation set folder (prompts.jsonl + images).", valueName: "DIR"))
    var set = "checkpoints/eval"

    @Option(help: ArgumentHelp("Temperatures, comma-separated.", valueName: "T,T"))
    var temp = "0,1"

    @Option(name: [.short, .customLong("n-predict")], help: "Tokens generated per prompt.")
    var n = 64

    @Option(help: "Use only the first N prompts of each kind (0 = all).")
    var limit = 0

    @OptionGroup var tree: TreeOptions

    @OptionGroup var threadsOption: ThreadsOption

    @Option(name: .customLong("tree-sweep"), help: ArgumentHelp(
        "Evaluate each draft at each of these node budgets (comma-separated counts and 'auto'), a row per (draft, budget), instead of the single --tree-tokens.",
        valueName: "N,N,auto"))
    var treeSweep: String?

    @Option(name: .customLong("p-min-sweep"), help: ArgumentHelp(
        "Evaluate each draft at each of these --draft-p-min values (comma-separated probabilities and 'auto'), a row per (draft, value), instead of the single --draft-p-min: e.g. 0,auto compares the full tree with the adaptive threshold. Each 'auto' row has its own bandit, learning over all its prompts; the table's notes give its steps and mean tokens/s per threshold.",
        valueName: "P,auto"))
    var pMinSweep: String?

    @Option(help: ArgumentHelp("Also write the Markdown table to this file.", valueName: "FILE"))
    var markdown: String?

    @Option(help: ArgumentHelp("Write SVG plots into this folder: acceptance by depth per system (image and text prompts at the lowest temperature) and, with --tree-sweep, speedup against the node budget.", valueName: "DIR"))
    var plots: String?

    @Option(name: .customLong("write-set"), help: ArgumentHelp("Write the evaluation set into DIR and exit.", valueName: "DIR"))
    var writeSet: String?

    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    func validate() throws {
        guard n >= 1 else { throw ValidationError("-n must be ≥ 1") }
        guard limit >= 0 else { throw ValidationError("--limit must be ≥ 0") }
        _ = try temperatures()
        _ = try budgets()
        _ = try pMins()
    }

    /// The thresholds to evaluate: --p-min-sweep's list, or --draft-p-min alone.
    func pMins() throws -> [TreeRequest.PMin] {
        guard let sweep = pMinSweep else { return [try tree.pMin(tree.draftPMin)] }
        let items = sweep.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !items.isEmpty else { throw ValidationError("--p-min-sweep must list probabilities in [0, 1) or 'auto'") }
        return try items.map { s in
            guard let p = TreeRequest.PMin(s) else { throw ValidationError("--p-min-sweep must list probabilities in [0, 1) or 'auto', got '\(s)'") }
            return p
        }
    }

    /// The node budgets to evaluate: --tree-sweep's list, or --tree-tokens alone.
    func budgets() throws -> [String] {
        guard let sweep = treeSweep else { return [tree.treeTokens] }
        let items = sweep.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !items.isEmpty, items.allSatisfy({ $0 == "auto" || (Int($0) ?? 0) >= 1 }) else {
            throw ValidationError("--tree-sweep must list positive node counts or 'auto', got '\(sweep)'")
        }
        return items
    }

    func temperatures() throws -> [Float] {
        let ts = temp.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard !ts.isEmpty, ts.allSatisfy({ $0 != nil && $0! >= 0 }) else { throw ValidationError("--temp must be a comma-separated list of temperatures ≥ 0, got '\(temp)'") }
        return ts.map { $0! }
    }

    func run() throws {
        if let dir = writeSet {
            try EvaluationSet.write(to: dir)
            printErr("wrote \(dir)/prompts.jsonl and \(dir)/images")
            return
        }
        guard !drafts.isEmpty else { throw CLIError("give at least one --draft to evaluate (plain decoding is always the baseline)") }
        let target = try modelOption.load(threads: threadsOption.threads, precision: precisionOption)
        let report = try EvalReport.run(target: target, setDir: set, towerPath: mmproj, drafts: drafts,
                                        requests: try budgets().flatMap { b in try pMins().map { tree.request(budget: b, pMin: $0) } },
                                        sweep: treeSweep != nil, pMinSweep: pMinSweep != nil,
                                        temperatures: try temperatures(), maxTokens: n, limit: limit, threads: threadsOption.threads,
                                        log: printErr)
        let table = report.markdown
        if let m = markdown { try writeAtomically(Array(table.utf8), to: m) }
        if let dir = plots { try report.writePlots(into: dir) }
        if json { try printJSON(report) } else { print(table) }
    }
}
