import Foundation
import Generation
import GGUF
import Llama
import Sampling
import Verify

/// The harness `eval` and `bench --prompts` share: each draft at each tree request becomes a
/// `Comparison.System`, its tree fixed before the comparison (with auto, the budget chosen once,
/// on the first prompt's first step, and kept for every prompt).
public enum DraftEvaluation {
    /// A system of the comparison and where it came from.
    public struct Entry {
        public var system: Comparison.System
        /// Index into the drafts given to `systems`.
        public var draft: Int
        public var request: TreeRequest
    }

    /// `names[d]` names draft d's rows; with `labelBudgets` each row adds its node budget, with
    /// `labelPMin` its `--draft-p-min`.
    public static func systems(drafts: [LoadedDraft], names: [String], requests: [TreeRequest], labelBudgets: Bool, labelPMin: Bool = false,
                               target: LoadedTarget, log: @escaping (String) -> Void) throws -> [Entry] {
        let model = target.model
        var entries: [Entry] = []
        for (d, draft) in drafts.enumerated() {
            for request in requests {
                var shape = try request.shape()
                let auto = try request.autoTree(model: model, modelPath: target.path, draft: draft, shape: shape, log: log)
                if let n = auto?.nodes { shape.tokens = n }
                let budget = request.tokens.map(String.init) ?? "auto: \(shape.tokens)"
                let labels = (labelBudgets ? ["\(budget) nodes"] : []) + (labelPMin ? ["p-min \(request.pMin)"] : [])
                let name = labels.isEmpty ? names[d] : "\(names[d]) (\(labels.joined(separator: ", ")))"
                entries.append(Entry(system: Comparison.System(name: name, drafter: draft.drafter, shape: shape, fallback: request.fallback,
                                                               pMin: request.pMinBandit(), verifyCost: auto?.curve),
                                     draft: d, request: request))
            }
        }
        return entries
    }

    /// Loads each draft against the target (as decode does, with the target's default context).
    public static func load(_ paths: [String], target: LoadedTarget, threads: Int) throws -> [LoadedDraft] {
        try paths.map {
            try LoadedDraft.load(path: $0, target: target.model, targetPath: target.path,
                                 contextSize: target.model.config.contextSize(requested: nil), threads: threads)
        }
    }
}

/// `specdec eval`: ViSpec's results table on the held-out evaluation set (the object `--json`
/// prints): plain decoding and each draft, image and text prompts, at each temperature.
public struct EvalReport: Encodable {
    public var model: String
    public var tower: String
    public var set: String
    public var n_predict: Int
    public var threads: Int
    public var tree: String
    public var date: String
    public var cells: [Comparison.Cell]
    public var runs: [Comparison.Run]
    /// Systems with a `--draft-p-min`: steps and mean tokens/s per threshold over the whole run
    /// (what the bandit learned; one arm for a fixed threshold).
    public var p_min: [PMinReport]

    public struct PMinReport: Encodable {
        public var system: String
        public var p_min: String
        public var arms: [PMinBandit.Arm]
    }
    /// The table's rows ("plain" first) and columns' temperatures, as asked for.
    var systems: [String]
    var temperatures: [Float]
    /// With a sweep: the systems of fixed budgets (the speedup curve's points) and their drafts' files.
    var sweep: [(name: String, draft: Int, nodes: Int)]?
    var draftFiles: [String]

    enum CodingKeys: String, CodingKey { case model, tower, set, n_predict, threads, tree, date, cells, runs, p_min }

    /// Runs every prompt of the set in `setDir` (at most `limit` of each kind; 0: all) plainly and
    /// with each draft at each of `requests`, at each temperature. `sweep`: the requests are a
    /// sweep of node budgets (rows named by budget, and the speedup plot); `pMinSweep`: they
    /// differ in `--draft-p-min` (rows named by it).
    public static func run(target: LoadedTarget, setDir: String, towerPath: String, drafts: [String], requests: [TreeRequest],
                           sweep: Bool, pMinSweep: Bool = false, temperatures: [Float], maxTokens: Int, limit: Int, threads: Int,
                           log: @escaping (String) -> Void) throws -> EvalReport {
        let promptsPath = (setDir as NSString).appendingPathComponent("prompts.jsonl")
        var prompts = try PromptSet.load(path: promptsPath, towerPath: towerPath, model: target.model, tokenizer: target.tokenizer)
        if limit > 0 {
            var seen: [String: Int] = [:]
            prompts = prompts.filter { p in
                seen[p.kind, default: 0] += 1
                return seen[p.kind]! <= limit
            }
        }
        let files = drafts.map { ($0 as NSString).lastPathComponent }
        let entries = try DraftEvaluation.systems(drafts: try DraftEvaluation.load(drafts, target: target, threads: threads), names: files,
                                                  requests: requests, labelBudgets: sweep, labelPMin: pMinSweep, target: target, log: log)
        let names = entries.map(\.system.name)
        var shapes: [String] = []   // in the systems' order (a sweep's budgets ascending)
        for d in entries.map(\.system.shape.description) where !shapes.contains(d) { shapes.append(d) }
        let shapeText = shapes.joined(separator: "; ")
        log("eval: \(prompts.count) prompts, \(maxTokens) tokens each, tree \(shapeText), systems: \(names.joined(separator: ", "))")
        let runs = try Comparison.run(model: target.model, prompts: prompts, systems: entries.map(\.system), temperatures: temperatures,
                                      maxTokens: maxTokens, eog: target.tokenizer.endOfGenerationTokens, seedBase: 7000, log: log)
        let date = ISO8601DateFormatter().string(from: Date()).prefix(10)
        return EvalReport(model: (target.path as NSString).lastPathComponent, tower: (towerPath as NSString).lastPathComponent, set: setDir,
                          n_predict: maxTokens, threads: threads, tree: shapeText, date: String(date),
                          cells: Comparison.cells(runs, systems: ["plain"] + names), runs: runs,
                          p_min: entries.compactMap { e in
                              e.system.pMin.map { PMinReport(system: e.system.name, p_min: e.request.pMin.description, arms: $0.arms) }
                          },
                          systems: ["plain"] + names, temperatures: temperatures,
                          // The speedup curve takes the fixed budgets; an auto row repeats one of them.
                          sweep: sweep ? entries.filter { !$0.request.isAuto }.map { ($0.system.name, $0.draft, $0.system.shape.tokens) } : nil,
                          draftFiles: files)
    }

    /// ViSpec's layout: a row per system, a column per (prompt kind, temperature), cells τ / speedup;
    /// then acceptance by depth.
    public var markdown: String {
        func cell(_ s: String, _ k: String, _ t: Float) -> Comparison.Cell? { cells.first { $0.system == s && $0.kind == k && $0.temperature == t } }
        let columns = ["image", "text"].flatMap { k in temperatures.map { (k, $0) } }.filter { c in cells.contains { $0.kind == c.0 && $0.temperature == c.1 } }
        var t = "| system | " + columns.map { "\($0.0) T=\(Self.format($0.1))" }.joined(separator: " | ") + " | draft share of step time |\n"
        t += "|---|" + columns.map { _ in "---|" }.joined() + "---|\n"
        for s in systems {
            t += "| \(s) | " + columns.map { c in
                guard let x = cell(s, c.0, c.1) else { return "–" }
                if s == "plain" { return String(format: "%.1f tok/s", x.tokens_per_s) }
                let same = x.identical.map { $0 == x.prompts ? "" : " (\(x.prompts - $0) differ!)" } ?? ""
                let context = x.context_tokens_per_step > 0 ? String(format: " + %.2f", x.context_tokens_per_step) : ""
                return String(format: "%.2f%@ / %.2f×", x.tau, context, x.speedup) + same
            }.joined(separator: " | ")
            let shares = cells.filter { $0.system == s }.map(\.draft_share)
            t += " | " + (s == "plain" ? "–" : String(format: "%.0f%%", 100 * median(shares))) + " |\n"
        }
        t += "\nτ / speedup: medians over prompts (\(n_predict) tokens each, tree \(tree), \(threads) threads; plain row: its tokens/s; "
        t += "τ + c: c context-matched tokens accepted per step, not counted in τ). "
        t += "\(model) + \(tower), \(date).\n"
        if !p_min.isEmpty {
            // What each threshold gave over the whole run: steps, and mean tokens/s of a drafting step.
            t += "\n--draft-p-min (steps, mean tokens/s of a drafting step, per threshold):\n\n"
            for r in p_min {
                let arms = r.arms.map { String(format: "%g: %d, %.1f", $0.p_min, $0.steps, $0.mean_tokens_per_s) }.joined(separator: "; ")
                // A --p-min-sweep row's name says its value already.
                t += "- \(r.system)\(r.system.contains("p-min") ? "" : " (p-min \(r.p_min))"): \(arms)\n"
            }
        }
        t += "\nAcceptance rate by depth (mean over prompts):\n\n"
        let depth = max(1, cells.map(\.acceptance_by_depth.count).max() ?? 1)
        t += "| system | prompts | T | " + (1...depth).map { "d\($0)" }.joined(separator: " | ") + " |\n"
        t += "|---|---|---|" + String(repeating: "---|", count: depth) + "\n"
        for c in cells where c.system != "plain" {
            t += "| \(c.system) | \(c.kind) | \(Self.format(c.temperature)) | "
                + (0..<depth).map { $0 < c.acceptance_by_depth.count ? String(format: "%.2f", c.acceptance_by_depth[$0]) : "–" }.joined(separator: " | ") + " |\n"
        }
        return t
    }

    /// acceptance-by-depth.svg and, over a sweep, speedup-vs-tree.svg (image and text prompts at
    /// the lowest temperature).
    public func writePlots(into dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let t = temperatures.min() ?? 0
        var depthSeries: [LinePlot.Series] = []
        for kind in ["image", "text"] {
            for c in cells where c.system != "plain" && c.kind == kind && c.temperature == t && !c.acceptance_by_depth.isEmpty {
                depthSeries.append(.init(name: "\(c.system), \(kind)",
                                         points: c.acceptance_by_depth.enumerated().map { (Double($0.offset + 1), $0.element) }))
            }
        }
        let depthPlot = LinePlot.svg(title: "Acceptance rate by tree depth (T=\(Self.format(t)))", xLabel: "depth", yLabel: "accepted / tried",
                                     series: depthSeries, yRange: (0, 1))
        try writeAtomically(Array(depthPlot.utf8), to: (dir as NSString).appendingPathComponent("acceptance-by-depth.svg"))
        guard let sweep else { return }
        var speedSeries: [LinePlot.Series] = []
        for d in Set(sweep.map(\.draft)).sorted() {
            for kind in ["image", "text"] {
                let pts = sweep.filter { $0.draft == d }.compactMap { s -> (Double, Double)? in
                    guard let c = cells.first(where: { $0.system == s.name && $0.kind == kind && $0.temperature == t }) else { return nil }
                    return (Double(s.nodes), c.speedup)
                }
                if !pts.isEmpty { speedSeries.append(.init(name: "\(draftFiles[d]), \(kind)", points: pts)) }
            }
        }
        let speedPlot = LinePlot.svg(title: "Speedup over plain decoding against tree size (T=\(Self.format(t)))", xLabel: "draft nodes verified per step",
                                     yLabel: "speedup (median over prompts)", series: speedSeries, logX: true, referenceY: 1)
        try writeAtomically(Array(speedPlot.utf8), to: (dir as NSString).appendingPathComponent("speedup-vs-tree.svg"))
    }

    static func format(_ t: Float) -> String { String(format: "%g", t) }
}
