import ArgumentParser
import DataSynth
import Shards
import Evaluation
import Foundation
import Generation
import GGUF
import Llama
import Sampling
import Tokenizer
import Verify
import Vision

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

    @Option(name: [.short, .customLong("threads")], help: "Worker threads (default: all cores).")
    var threads: Int = defaultThreadCount

    @Option(name: .customLong("tree-sweep"), help: ArgumentHelp(
        "Evaluate each draft at each of these node budgets (comma-separated counts and 'auto'), a row per (draft, budget), instead of the single --tree-tokens.",
        valueName: "N,N,auto"))
    var treeSweep: String?

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
        guard threads >= 1 else { throw ValidationError("--threads must be ≥ 1") }
        guard limit >= 0 else { throw ValidationError("--limit must be ≥ 0") }
        _ = try temperatures()
        _ = try budgets()
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

    struct Output: Encodable {
        var model: String
        var tower: String
        var set: String
        var n_predict: Int
        var threads: Int
        var tree: String
        var date: String
        var cells: [Comparison.Cell]
        var runs: [Comparison.Run]
    }

    func run() throws {
        if let dir = writeSet {
            try EvaluationSet.write(to: dir)
            printErr("wrote \(dir)/prompts.jsonl and \(dir)/images")
            return
        }
        guard !drafts.isEmpty else { throw CLIError("give at least one --draft to evaluate (plain decoding is always the baseline)") }
        let (modelPath, _, model, tokenizer) = try modelOption.load(threads: threads, precision: precisionOption)
        let promptsPath = (set as NSString).appendingPathComponent("prompts.jsonl")
        var prompts = try PromptSet.load(path: promptsPath, towerPath: mmproj, model: model, tokenizer: tokenizer)
        if limit > 0 {
            var seen: [String: Int] = [:]
            prompts = prompts.filter { p in
                seen[p.kind, default: 0] += 1
                return seen[p.kind]! <= limit
            }
        }
        let loaded = try drafts.map {
            try LoadedDraft.load(path: $0, target: model, targetPath: modelPath, contextSize: min(model.config.contextLength, 4096), threads: threads)
        }
        let eog = tokenizer.endOfGenerationTokens
        let budgets = try budgets()
        // The systems: each draft at each budget (a fixed tree, or with auto the budget chosen on
        // the first prompt's first step).
        var systems: [(name: String, draft: Int, budget: String, shape: TreeShape)] = []
        for (d, draft) in loaded.enumerated() {
            let file = (drafts[d] as NSString).lastPathComponent
            for b in budgets {
                var options = tree
                options.treeTokens = b
                var shape = try options.shape()
                if let chooser = try options.budgetChooser(model: model, modelPath: modelPath, metadata: draft.metadata, shape: shape, log: printErr),
                   let first = prompts.first {
                    let r = try Generation.speculative(model: model, drafter: draft.drafter, prompt: first.prompt,
                                                       contextSize: min(model.config.contextLength, first.prompt.count + 16),
                                                       params: SamplingParameters(), shape: shape, maxTokens: 4, eog: eog, budget: chooser)
                    shape = r.tree ?? shape
                }
                let name = treeSweep == nil ? file : "\(file) (\(b == "auto" ? "auto: \(shape.tokens)" : b) nodes)"
                systems.append((name, d, b, shape))
            }
        }
        let names = systems.map(\.name)
        var shapes: [String] = []   // in the systems' order (a sweep's budgets ascending)
        for d in systems.map(\.shape.description) where !shapes.contains(d) { shapes.append(d) }
        let shapeText = shapes.joined(separator: "; ")
        printErr("eval: \(prompts.count) prompts, \(n) tokens each, tree \(shapeText), systems: \(names.joined(separator: ", "))")

        let runs = try Comparison.run(model: model, prompts: prompts,
                                      systems: systems.map { Comparison.System(name: $0.name, drafter: loaded[$0.draft].drafter, shape: $0.shape,
                                                                               fallback: $0.budget == "auto" ? tree.fallback : nil) },
                                      temperatures: try temperatures(), maxTokens: n, eog: eog, seedBase: 7000, log: printErr)
        let cells = Comparison.cells(runs, systems: ["plain"] + names)
        let date = ISO8601DateFormatter().string(from: Date()).prefix(10)
        let out = Output(model: (modelPath as NSString).lastPathComponent, tower: (mmproj as NSString).lastPathComponent, set: set,
                         n_predict: n, threads: threads, tree: shapeText, date: String(date), cells: cells, runs: runs)
        let table = markdownTable(out, temperatures: try temperatures(), systems: ["plain"] + names)
        if let m = markdown { try writeAtomically(Array(table.utf8), to: m) }
        if let dir = plots {
            // The speedup curve takes the fixed budgets; an auto row repeats one of them.
            try writePlots(out, systems: systems.filter { $0.budget != "auto" }.map { ($0.name, $0.draft, $0.shape.tokens) }, into: dir)
        }
        if json { try printJSON(out) } else { print(table) }
    }

    /// acceptance-by-depth.svg and, over a sweep, speedup-vs-tree.svg (image and text prompts at
    /// the lowest temperature).
    func writePlots(_ o: Output, systems: [(name: String, draft: Int, nodes: Int)], into dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let t = try temperatures().min() ?? 0
        var depthSeries: [LinePlot.Series] = []
        for kind in ["image", "text"] {
            for c in o.cells where c.system != "plain" && c.kind == kind && c.temperature == t && !c.acceptance_by_depth.isEmpty {
                depthSeries.append(.init(name: "\(c.system), \(kind)",
                                         points: c.acceptance_by_depth.enumerated().map { (Double($0.offset + 1), $0.element) }))
            }
        }
        let depthPlot = LinePlot.svg(title: "Acceptance rate by tree depth (T=\(fmt(t)))", xLabel: "depth", yLabel: "accepted / tried",
                                     series: depthSeries, yRange: (0, 1))
        try writeAtomically(Array(depthPlot.utf8), to: (dir as NSString).appendingPathComponent("acceptance-by-depth.svg"))
        guard treeSweep != nil else { return }
        var speedSeries: [LinePlot.Series] = []
        for d in Set(systems.map(\.draft)).sorted() {
            for kind in ["image", "text"] {
                let pts = systems.filter { $0.draft == d }.compactMap { s -> (Double, Double)? in
                    guard let c = o.cells.first(where: { $0.system == s.name && $0.kind == kind && $0.temperature == t }) else { return nil }
                    return (Double(s.nodes), c.speedup)
                }
                if !pts.isEmpty { speedSeries.append(.init(name: "\((drafts[d] as NSString).lastPathComponent), \(kind)", points: pts)) }
            }
        }
        let speedPlot = LinePlot.svg(title: "Speedup over plain decoding against tree size (T=\(fmt(t)))", xLabel: "draft nodes verified per step",
                                     yLabel: "speedup (median over prompts)", series: speedSeries, logX: true, referenceY: 1)
        try writeAtomically(Array(speedPlot.utf8), to: (dir as NSString).appendingPathComponent("speedup-vs-tree.svg"))
    }

    /// ViSpec's layout: a row per system, a column per (prompt kind, temperature), cells τ / speedup.
    func markdownTable(_ o: Output, temperatures: [Float], systems: [String]) -> String {
        func cell(_ s: String, _ k: String, _ t: Float) -> Comparison.Cell? { o.cells.first { $0.system == s && $0.kind == k && $0.temperature == t } }
        let columns = ["image", "text"].flatMap { k in temperatures.map { (k, $0) } }.filter { c in o.cells.contains { $0.kind == c.0 && $0.temperature == c.1 } }
        var t = "| system | " + columns.map { "\($0.0) T=\(fmt($0.1))" }.joined(separator: " | ") + " | draft share of step time |\n"
        t += "|---|" + columns.map { _ in "---|" }.joined() + "---|\n"
        for s in systems {
            t += "| \(s) | " + columns.map { c in
                guard let x = cell(s, c.0, c.1) else { return "–" }
                if s == "plain" { return String(format: "%.1f tok/s", x.tokens_per_s) }
                let same = x.identical.map { $0 == x.prompts ? "" : " (\(x.prompts - $0) differ!)" } ?? ""
                let context = x.context_tokens_per_step > 0 ? String(format: " + %.2f", x.context_tokens_per_step) : ""
                return String(format: "%.2f%@ / %.2f×", x.tau, context, x.speedup) + same
            }.joined(separator: " | ")
            let shares = o.cells.filter { $0.system == s }.map(\.draft_share)
            t += " | " + (s == "plain" ? "–" : String(format: "%.0f%%", 100 * median(shares))) + " |\n"
        }
        t += "\nτ / speedup: medians over prompts (\(o.n_predict) tokens each, tree \(o.tree), \(o.threads) threads; plain row: its tokens/s; "
        t += "τ + c: c context-matched tokens accepted per step, not counted in τ). "
        t += "\(o.model) + \(o.tower), \(o.date).\n\nAcceptance rate by depth (mean over prompts):\n\n"
        t += "| system | prompts | T | " + (1...max(1, o.cells.map(\.acceptance_by_depth.count).max() ?? 1)).map { "d\($0)" }.joined(separator: " | ") + " |\n"
        let depth = max(1, o.cells.map(\.acceptance_by_depth.count).max() ?? 1)
        t += "|---|---|---|" + String(repeating: "---|", count: depth) + "\n"
        for c in o.cells where c.system != "plain" {
            t += "| \(c.system) | \(c.kind) | \(fmt(c.temperature)) | "
                + (0..<depth).map { $0 < c.acceptance_by_depth.count ? String(format: "%.2f", c.acceptance_by_depth[$0]) : "–" }.joined(separator: " | ") + " |\n"
        }
        return t
    }

    private func fmt(_ t: Float) -> String { String(format: "%g", t) }
}
