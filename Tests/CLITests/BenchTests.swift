import Foundation
import Testing
import TestSupport

/// `specdec bench` with tiny sizes: checks the report's shape and internal consistency, never
/// its speed.
@Suite(.serialized) struct BenchTests {
    static let quick = ["--reps", "1", "-t", "2", "--pp", "16,32", "--tg", "8", "--tg-prompt", "4",
                        "--verify", "1,2,4", "--verify-ctx", "32", "--bandwidth-mib", "64", "--bandwidth-passes", "2"]

    func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1) }

    @Test func quickBenchJSONIsConsistent() throws {
        let r = try CLI.run(["bench", "--json"] + Self.quick)
        #expect(r.status == 0, "\(r.stderr)")
        let o = try CLI.json(r.stdout)   // the whole of stdout is one JSON object
        #expect(r.stderr.contains("pp16"), "progress goes to stderr")

        #expect(o["model"] as? String == URL(fileURLWithPath: TestPaths.model).lastPathComponent)
        #expect(!(o["cpu"] as? String ?? "").isEmpty)
        #expect((o["cores"] as? Int ?? 0) >= 1)
        #expect(o["threads"] as? Int == 2)
        #expect(o["reps"] as? Int == 1)
        #expect(ISO8601DateFormatter().date(from: o["date"] as? String ?? "") != nil)

        for (key, n) in [("pp16", 16), ("pp32", 32), ("tg8", 8)] {
            let t = try #require(o[key] as? [String: Any], "\(key) missing")
            #expect(t["tokens"] as? Int == n)
            let med = try #require(t["median_tokens_per_s"] as? Double)
            let lo = try #require(t["min_tokens_per_s"] as? Double), hi = try #require(t["max_tokens_per_s"] as? Double)
            #expect(med > 0 && lo <= med && med <= hi, "\(key): \(t)")
        }
        #expect((o["pp16"] as? [String: Any])?["batch_invariant"] as? Bool == false)
        #expect((o["tg8"] as? [String: Any])?["prompt_tokens"] as? Int == 4)

        let v = try #require(o["verify_cost"] as? [String: Any])
        #expect(v["context"] as? Int == 32)
        #expect(v["batch_invariant"] as? Bool == true)
        let points = try #require(v["points"] as? [[String: Any]])
        #expect(points.compactMap { $0["n"] as? Int } == [1, 2, 4])
        let base = try #require(points.first?["median_ms"] as? Double)
        #expect(points.first?["ratio"] as? Double == 1)
        for p in points {
            let n = Double(p["n"] as? Int ?? 0), ms = p["median_ms"] as? Double ?? 0
            #expect(ms > 0)
            #expect(close(p["ratio"] as? Double ?? 0, ms / base))
            #expect(close((p["ms_per_token"] as? Double ?? 0) * n, ms))
            #expect((p["min_ms"] as? Double ?? .infinity) <= ms && ms <= (p["max_ms"] as? Double ?? 0))
        }

        let bw = try #require(o["bandwidth_gbs"] as? Double)
        let bwMedian = try #require(o["bandwidth_median_gbs"] as? Double)
        #expect(bw > 0 && bwMedian > 0 && bwMedian <= bw)
        #expect(o["bandwidth_buffer_mib"] as? Int == 64)
        let bytes = try #require(o["weight_bytes_per_token"] as? Int)
        let fileSize = try #require(try FileManager.default.attributesOfItem(atPath: TestPaths.model)[.size] as? Int)
        #expect(bytes > fileSize / 4 && bytes <= fileSize, "weight bytes per token \(bytes), file \(fileSize)")
        let floor = try #require(o["floor_tokens_per_s"] as? Double)
        #expect(close(floor, bw * 1e9 / Double(bytes)))
        let tgMedian = (o["tg8"] as? [String: Any])?["median_tokens_per_s"] as? Double ?? 0
        #expect(close(o["tg8_percent_of_floor"] as? Double ?? 0, 100 * tgMedian / floor))
        #expect((o["peak_rss_mb"] as? Double ?? 0) > 1)
        #if os(Linux)
        #expect((o["load_average_start"] as? Double ?? -1) >= 0 && (o["load_average_end"] as? Double ?? -1) >= 0)
        #endif
    }

    @Test func tableWithoutBandwidth() throws {
        let r = try CLI.run(["bench", "--reps", "1", "-t", "1", "--pp", "8", "--tg", "4", "--verify", "1,2",
                             "--verify-ctx", "8", "--bandwidth-mib", "0"])
        #expect(r.status == 0, "\(r.stderr)")
        for s in ["pp8", "tg4", "verify cost at context 8", "weights per token", "peak RSS", "1 thread,"] {
            #expect(r.stdout.contains(s), "missing \(s) in:\n\(r.stdout)")
        }
        #expect(!r.stdout.contains("bandwidth:"))
    }

    /// `bench --draft --prompts`: the shared side-by-side harness (Evaluation.Comparison) over an
    /// image and a text prompt at T = 0 and 1; every T = 0 output equals plain decoding's.
    @Test func promptsBenchComparesWithPlainSideBySide() throws {
        let root = TestPaths.repoRoot.path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("specdec-bench-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/prompts.jsonl"
        try Data(("{\"id\":\"img\",\"image\":\"\(root)/checkpoints/images/green.png\",\"prompt\":\"What colors can you see in this image?\"}\n"
                  + "{\"id\":\"txt\",\"prompt\":\"Count from one to ten in words.\"}\n").utf8).write(to: URL(fileURLWithPath: file))
        let r = try CLI.run(["bench", "--draft", "ngram", "--prompts", file, "--vision-tower", root + "/checkpoints/demo-tower.gguf",
                             "-n", "24", "-t", "1", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try CLI.json(r.stdout)
        let runs = try #require(o["per_prompt"] as? [[String: Any]])
        #expect(runs.count == 4)
        let groups = try #require(o["groups"] as? [[String: Any]])
        #expect(groups.map { "\($0["kind"] ?? "")" } == ["text", "image", "all", "text", "image", "all"])
        for g in groups where g["temperature"] as? Double == 0 {
            #expect(g["identical"] as? Int == g["prompts"] as? Int, "\(g)")
        }
    }

    @Test func badOptionsAreOneLineErrors() throws {
        expectCleanFailure(try CLI.run(["bench", "--reps", "0"]), mentioning: "--reps")
        expectCleanFailure(try CLI.run(["bench", "--pp", "64,x"]), mentioning: "64,x")
        expectCleanFailure(try CLI.run(["bench", "--verify-ctx", "100000000"]), mentioning: "context")
        expectCleanFailure(try CLI.run(["bench", "-m", "/nonexistent/model.gguf"]), mentioning: "/nonexistent/model.gguf")
    }
}
