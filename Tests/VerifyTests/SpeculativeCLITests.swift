import Foundation
import Testing
import TestSupport
import Verify

/// `specdec decode --draft` through the built binary. The target's own GGUF is the draft here
/// (a perfect draft), until an EAGLE checkpoint exists.
@Suite(.serialized) struct SpeculativeCLITests {
    static func tempCache() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("specdec-verify-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func decodeDraftCompareJSONHasTheStatistics() throws {
        let r = try SpecdecCLI.run(["decode", "--draft", TestPaths.model, "--compare", "--json", "-t", "2", "-n", "20",
                              "--tree-top-k", "2", "--tree-depth", "4", "--tree-tokens", "6", "-p", "Name three colours."])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try SpecdecCLI.json(r.stdout)
        let s = try #require(o["stats"] as? [String: Any])
        for key in ["tau", "tokens_per_step", "acceptance_by_depth", "tokens_per_s", "plain_tokens_per_s", "speedup", "identical",
                    "draft_share", "verify_share", "steps"] {
            #expect(s[key] != nil, "stats.\(key) missing: \(s.keys.sorted())")
        }
        #expect(s["identical"] as? Bool == true)
        #expect(s["tree_tokens"] as? Int == 6)
        let tokens = try #require(o["tokens"] as? [Int])
        #expect(tokens == (s["plain_tokens"] as? [Int] ?? []))
        let tau = try #require(s["tau"] as? Double)
        #expect(tau > 1, "the target as its own draft accepts deep: tau \(tau)")
        let perStep = try #require(s["tokens_per_step"] as? Double)
        #expect(perStep > tau && perStep <= tau + 1 + 1e-9)
        #expect((s["acceptance_by_depth"] as? [Double] ?? []).allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    @Test func autoTreeTokensMeasuresOnceAndSaysWhatItChose() throws {
        let cache = Self.tempCache()
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let args = ["decode", "--draft", TestPaths.model, "-t", "2", "-n", "8", "--tree-top-k", "2", "--tree-depth", "3", "-p", "Hi"]
        // No wait allowed: whatever the suite's load, the curve is not cached and is measured again.
        let strict = ["SPECDEC_CACHE": cache, "SPECDEC_VERIFY_COST_MAX_WAIT": "0"]
        let refused = try SpecdecCLI.run(args, env: strict)
        #expect(refused.status == 0 && refused.stderr.contains("not cached"), "\(refused.stderr)")
        let again = try SpecdecCLI.run(args, env: strict)
        #expect(again.stderr.contains("measuring"), "nothing was cached: \(again.stderr)")
        // Any wait allowed (the suite runs tests side by side): measured once, then cached.
        let lenient = ["SPECDEC_CACHE": cache, "SPECDEC_VERIFY_COST_MAX_WAIT": "1000"]
        let first = try SpecdecCLI.run(args, env: lenient)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stderr.contains("measuring"), "\(first.stderr)")
        #expect(first.stderr.contains("tree budget:"), "\(first.stderr)")
        let second = try SpecdecCLI.run(args, env: lenient)
        #expect(second.status == 0)
        #expect(!second.stderr.contains("measuring"), "the curve and the draft's level cost are cached: \(second.stderr)")
        #expect(second.stderr.contains("tree budget:"))
        let draftCosts = try FileManager.default.contentsOfDirectory(atPath: cache + "/draft-cost")
        #expect(draftCosts.filter { $0.hasSuffix(".json") }.count == 1, "\(draftCosts)")
        // Another top-k is another level: measured once more.
        var widerArgs = args
        widerArgs[widerArgs.firstIndex(of: "--tree-top-k")! + 1] = "3"
        let wider = try SpecdecCLI.run(widerArgs, env: lenient)
        #expect(wider.stderr.contains("measuring the draft's cost") && !wider.stderr.contains("verify cost"), "\(wider.stderr)")
        let badCache = Self.tempCache()
        defer { try? FileManager.default.removeItem(atPath: badCache) }
        let bad = try SpecdecCLI.run(args, env: ["SPECDEC_CACHE": badCache, "SPECDEC_VERIFY_COST_MAX_WAIT": "lots"])
        #expect(bad.status != 0 && bad.stderr.contains("SPECDEC_VERIFY_COST_MAX_WAIT"), "\(bad.stderr)")
    }

    @Test func badTreeOptionsAreOneLineErrors() throws {
        let r = try SpecdecCLI.run(["decode", "--draft", TestPaths.model, "--tree-tokens", "lots", "-p", "Hi"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("--tree-tokens"))
        let c = try SpecdecCLI.run(["decode", "--compare", "-p", "Hi"])
        #expect(c.status != 0 && c.stderr.contains("--compare needs --draft"))
        let m = try SpecdecCLI.run(["decode", "--draft", "/nonexistent.safetensors", "-p", "Hi", "-n", "2"])
        #expect(m.status != 0 && m.stderr.contains("no such draft file"))
    }

    /// `eval` over a two-prompt slice of the shipped set (one image, one text question) with the
    /// target as its own draft at two budgets: every T=0 output equals plain decoding's, each
    /// (draft, budget) is a row, and both plots are written.
    @Test func evalSweepWritesTableRowsAndPlots() throws {
        let root = TestPaths.repoRoot.path
        let plots = Self.tempCache()
        let r = try SpecdecCLI.run(["eval", "--draft", TestPaths.model, "--set", root + "/checkpoints/eval", "--mmproj", root + "/checkpoints/demo-tower.gguf",
                              "--limit", "1", "-n", "4", "--temp", "0", "--tree-sweep", "1,2", "--plots", plots, "-t", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try SpecdecCLI.json(r.stdout)
        let cells = try #require(o["cells"] as? [[String: Any]])
        let systems = Set(cells.compactMap { $0["system"] as? String })
        let file = (TestPaths.model as NSString).lastPathComponent
        #expect(systems == ["plain", "\(file) (1 nodes)", "\(file) (2 nodes)"], "\(systems)")
        for c in cells where (c["system"] as? String) != "plain" {
            #expect(c["identical"] as? Int == c["prompts"] as? Int, "T=0 output differs from plain: \(c)")
            #expect((c["tau"] as? Double ?? 0) > 0.5, "the target drafting for itself is accepted: \(c)")
        }
        for name in ["acceptance-by-depth.svg", "speedup-vs-tree.svg"] {
            let svg = try String(contentsOfFile: (plots as NSString).appendingPathComponent(name), encoding: .utf8)
            #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n") && svg.contains("<polyline"), "\(name)")
        }
        let bad = try SpecdecCLI.run(["eval", "--draft", TestPaths.model, "--tree-sweep", "1,zero"])
        #expect(bad.status != 0 && bad.stderr.contains("--tree-sweep"))
    }

    /// The shipped ViSpec draft loads, runs on an image question through the demo tower, and
    /// speculative greedy decoding says exactly what plain decoding says.
    @Test func shippedViSpecDraftIsLossless() throws {
        let root = TestPaths.repoRoot.path
        let r = try SpecdecCLI.run(["decode", "--mmproj", root + "/checkpoints/demo-tower.gguf", "--image", root + "/checkpoints/images/green.png",
                                    "-p", "What colors can you see in this image? Please answer with at least 1000 words.", "-n", "32",
                                    "--draft", root + "/checkpoints/vispec-draft.safetensors", "--compare", "--json", "-t", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let s = try #require(try SpecdecCLI.json(r.stdout)["stats"] as? [String: Any])
        #expect(s["identical"] as? Bool == true)
        #expect(s["draft_kind"] as? String == "vispec")
        #expect((s["tau"] as? Double ?? 0) > 0, "a trained draft is accepted sometimes: \(s)")
    }

    /// `--draft ngram` and `DRAFT+ngram:N` through the binary: identical outputs on the README's
    /// image prompt, context-matched tokens reported apart from τ; bad specs are one-line errors.
    @Test func contextMatchDraftSpecs() throws {
        let root = TestPaths.repoRoot.path
        let base = ["decode", "--mmproj", root + "/checkpoints/demo-tower.gguf", "--image", root + "/checkpoints/images/green.png",
                    "-p", "What colors can you see in this image? Please answer with at least 1000 words.", "-n", "128",
                    "--compare", "--json", "-t", "2"]
        for draft in ["ngram", root + "/checkpoints/vispec-draft.safetensors+ngram:3"] {
            let r = try SpecdecCLI.run(base + ["--draft", draft])
            #expect(r.status == 0, "\(r.stderr)")
            let s = try #require(try SpecdecCLI.json(r.stdout)["stats"] as? [String: Any])
            #expect(s["identical"] as? Bool == true, "\(draft)")
            #expect((s["draft_kind"] as? String ?? "").contains("context match"), "\(s)")
            #expect((s["context_tokens_per_step"] as? Double ?? 0) > 0, "the answer repeats itself: \(s)")
            if draft == "ngram" { #expect(s["tau"] as? Double == 0) }
        }
        for bad in ["ngram:0", "ngram:x", "/nonexistent.safetensors+ngram"] {
            let r = try SpecdecCLI.run(["decode", "--draft", bad, "-p", "Hi", "-n", "2"])
            #expect(r.status != 0, "\(bad)")
            #expect(r.stderr.contains(bad.hasPrefix("/") ? "no such draft file" : "ngram:N needs N"), "\(bad): \(r.stderr)")
        }
    }

    /// `--draft early-exit:8 --draft-p-min auto` through the binary: identical to plain, and the
    /// bandit's steps per threshold in the JSON stats; `eval --p-min-sweep 0,auto` gives a row per
    /// value and the arms in its JSON; bad values are one-line errors.
    @Test func earlyExitWithAdaptivePMin() throws {
        let r = try SpecdecCLI.run(["decode", "--draft", "early-exit:8", "--draft-p-min", "auto", "--tree-tokens", "8", "--tree-top-k", "4",
                                    "--tree-depth", "4", "--compare", "--json", "-t", "2", "-n", "24", "-p", "Name three colours."])
        #expect(r.status == 0, "\(r.stderr)")
        let s = try #require(try SpecdecCLI.json(r.stdout)["stats"] as? [String: Any])
        #expect(s["identical"] as? Bool == true)
        #expect(s["draft_p_min"] as? String == "auto")
        let arms = try #require(s["draft_p_min_arms"] as? [[String: Any]])
        #expect(arms.compactMap { $0["p_min"] as? Double }.map { Float($0) } == PMinBandit.defaultArms)
        #expect(arms.compactMap { $0["steps"] as? Int }.reduce(0, +) == s["steps"] as? Int)

        let root = TestPaths.repoRoot.path
        let e = try SpecdecCLI.run(["eval", "--draft", "early-exit:8", "--set", root + "/checkpoints/eval", "--mmproj", root + "/checkpoints/demo-tower.gguf",
                                    "--limit", "1", "-n", "8", "--temp", "0", "--tree-tokens", "4", "--p-min-sweep", "0,auto", "-t", "2", "--json"])
        #expect(e.status == 0, "\(e.stderr)")
        let o = try SpecdecCLI.json(e.stdout)
        let cells = try #require(o["cells"] as? [[String: Any]])
        #expect(Set(cells.compactMap { $0["system"] as? String }) == ["plain", "early-exit:8 (p-min 0)", "early-exit:8 (p-min auto)"])
        for c in cells { #expect(c["identical"] as? Int == c["prompts"] as? Int, "T=0 output differs from plain: \(c)") }
        let pMin = try #require(o["p_min"] as? [[String: Any]])
        #expect(pMin.count == 1 && pMin.first?["p_min"] as? String == "auto", "only the adaptive row has a bandit: \(pMin)")

        for args in [["decode", "--draft", "early-exit:8", "--draft-p-min", "1.5", "-p", "Hi"], ["eval", "--draft", "early-exit:8", "--p-min-sweep", "0,most"]] {
            let bad = try SpecdecCLI.run(args)
            #expect(bad.status != 0 && bad.stderr.contains(args[3]), "\(bad.stderr)")
        }
    }

    /// scripts/data-scaling.py end to end on a tiny dataset (6 image samples of 8 tokens): nested
    /// snapshots of 3 and 6 records, a 2-step draft each, eval on one image and one text prompt;
    /// a rerun reuses the trained sizes; a bad --sizes is a one-line error.
    @Test func dataScalingScriptRunsOnATinyDataset() throws {
        let root = TestPaths.repoRoot.path
        let dir = Self.tempCache()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tower = root + "/checkpoints/demo-tower.gguf"
        let synth = try SpecdecCLI.run(["synth-data", "--generate", "images", "--mmproj", tower, "--samples", "6", "--seed", "9",
                                        "--max-new", "8", "-t", "1", "--out", dir + "/data"])
        #expect(synth.status == 0, "\(synth.stderr)")
        func script(_ sizes: String) throws -> (status: Int32, stdout: String, stderr: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["python3", root + "/scripts/data-scaling.py", "--data", dir + "/data", "--sizes", sizes, "--out", dir + "/scale",
                           "--specdec", TestPaths.specdecBinary.path,
                           "--eval-args", "--limit 1 -n 8 --temp 0 --tree-tokens 2 --tree-top-k 1 --tree-depth 2 -t 1",
                           "--", "--mmproj", tower, "--stage", "2", "--num-q", "2", "--steps", "2", "--seed", "1", "-t", "1",
                           "--init-from-target-layer", "last"]
            var env = ProcessInfo.processInfo.environment
            env["SPECDEC_MODEL"] = TestPaths.model
            p.environment = env
            let out = Pipe(), err = Pipe()
            p.standardOutput = out; p.standardError = err
            try p.run()
            let e = err.fileHandleForReading.readDataToEndOfFile()
            let o = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
        let r = try script("6,3")
        #expect(r.status == 0, "\(r.stderr)")
        let result = try SpecdecCLI.json(String(decoding: try Data(contentsOf: URL(fileURLWithPath: dir + "/scale/scaling.json")), as: UTF8.self))
        let rows = try #require(result["rows"] as? [[String: Any]])
        #expect(rows.map { $0["records"] as? Int } == [3, 6])
        for row in rows {
            #expect(row["image_identical"] as? Bool == true && row["text_identical"] as? Bool == true, "\(row)")
            #expect(row["image_tau"] is Double && row["validation_tau"] is Double, "\(row)")
        }
        #expect(FileManager.default.fileExists(atPath: dir + "/scale/scaling.svg"))
        #expect(r.stdout.contains("| 3 |") && r.stdout.contains("| 6 |"))
        let again = try script("3,6")
        #expect(again.status == 0 && !again.stderr.contains("train-adapter") && !again.stderr.contains(" eval "),
                "trained and evaluated sizes are reused: \(again.stderr)")
        let bad = try script("3,x")
        #expect(bad.status != 0 && bad.stderr.contains("--sizes"), "\(bad.stderr)")
        let badLayer = try SpecdecCLI.run(["train-adapter", "--data", dir + "/data", "--out", dir + "/x.safetensors", "--init-from-target-layer", "top"])
        #expect(badLayer.status != 0 && badLayer.stderr.contains("a layer index or last"), "\(badLayer.stderr)")
    }

    /// The command that started a run, repeated with --resume, continues it: --init (here a
    /// draft with a 100-token vocabulary, not the default 8,192) is not read again, and the
    /// arguments the checkpoint recorded match.
    @Test func resumeAcceptsTheCommandThatStartedTheRun() throws {
        let dir = Self.tempCache()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let synth = try SpecdecCLI.run(["synth-data", "--generate", "text", "--samples", "6", "--seed", "9", "--max-new", "8", "-t", "1", "--out", dir + "/data"])
        #expect(synth.status == 0, "\(synth.stderr)")
        let start = try SpecdecCLI.run(["train-adapter", "--data", dir + "/data", "--steps", "2", "--draft-vocab", "100", "--seed", "1", "-t", "1",
                                        "--out", dir + "/start.safetensors"])
        #expect(start.status == 0, "\(start.stderr)")
        let run = ["train-adapter", "--data", dir + "/data", "--init", dir + "/start.safetensors", "--steps", "4", "--save-every", "2",
                   "--seed", "1", "-t", "1", "--json", "--out", dir + "/d.safetensors"]
        let first = try SpecdecCLI.run(run)
        #expect(first.status == 0, "\(first.stderr)")
        let shipped = try Data(contentsOf: URL(fileURLWithPath: dir + "/d.safetensors"))
        let again = try SpecdecCLI.run(run + ["--resume"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("not read again"), "\(again.stderr)")
        let report = try SpecdecCLI.json(again.stdout)
        #expect(report["resumed_from"] as? Int == 4 && report["steps"] as? Int == 4, "\(report)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/d.safetensors")) == shipped, "a finished run resumed writes the same draft")
    }

    /// The shipped EAGLE-style text draft (stage 1): lossless on a text prompt, and accepted.
    @Test func shippedEagleTextDraftIsLossless() throws {
        let root = TestPaths.repoRoot.path
        let r = try SpecdecCLI.run(["decode", "-p", "Write a short story about a robot. Please answer with at least 1000 words.", "-n", "32",
                                    "--draft", root + "/checkpoints/eagle-text-draft.safetensors", "--tree-tokens", "2",
                                    "--compare", "--json", "-t", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let s = try #require(try SpecdecCLI.json(r.stdout)["stats"] as? [String: Any])
        #expect(s["identical"] as? Bool == true)
        #expect(s["draft_kind"] as? String == "eagle2")
        #expect((s["tau"] as? Double ?? 0) > 0, "a trained draft is accepted sometimes: \(s)")
    }

    /// The shipped EAGLE-3 draft: lossless, accepted, and its llama.cpp export drafts exactly the
    /// same (the GGUF holds the same f16 values).
    @Test func shippedEagle3DraftIsLosslessAndItsExportDraftsTheSame() throws {
        let root = TestPaths.repoRoot.path
        let gguf = FileManager.default.temporaryDirectory.appendingPathComponent("specdec-e3-\(UUID().uuidString).gguf").path
        defer { try? FileManager.default.removeItem(atPath: gguf) }
        let e = try SpecdecCLI.run(["export-draft", root + "/checkpoints/eagle3-draft.safetensors", "--format", "llama.cpp", "--out", gguf])
        #expect(e.status == 0, "\(e.stderr)")
        var taus: [Double] = []
        for draft in [root + "/checkpoints/eagle3-draft.safetensors", gguf] {
            let r = try SpecdecCLI.run(["decode", "-p", "Explain how a bicycle works. Please answer with at least 1000 words.", "-n", "32",
                                        "--draft", draft, "--tree-top-k", "1", "--tree-depth", "3", "--tree-tokens", "3",
                                        "--compare", "--json", "-t", "2"])
            #expect(r.status == 0, "\(r.stderr)")
            let s = try #require(try SpecdecCLI.json(r.stdout)["stats"] as? [String: Any])
            #expect(s["identical"] as? Bool == true)
            #expect(s["draft_kind"] as? String == "eagle3")
            taus.append(s["tau"] as? Double ?? 0)
        }
        #expect(taus[0] > 0.3, "a trained draft is accepted: \(taus)")
        #expect(taus[0] == taus[1], "the export must draft exactly as the checkpoint: \(taus)")
    }
}
