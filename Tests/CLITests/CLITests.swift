import Foundation
import Testing
import TestSupport

typealias CLI = SpecdecCLI

func temporaryFile(_ bytes: [UInt8], name: String) throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("specdec-cli-\(UUID().uuidString)-\(name)")
    try Data(bytes).write(to: url)
    return url.path
}

/// The one-line error contract: non-zero exit, a short message, no stack trace.
func expectCleanFailure(_ r: CLI.Result, mentioning: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status != 0, sourceLocation: sourceLocation)
    let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
    #expect(lines.count >= 1 && lines.count <= 3, "stderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(mentioning), "stderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("Stack dump"), sourceLocation: sourceLocation)
}

@Suite(.serialized) struct CLITests {
    @Test func binaryIsBuilt() {
        #expect(FileManager.default.isExecutableFile(atPath: TestPaths.specdecBinary.path), "no specdec at \(TestPaths.specdecBinary.path)")
    }

    @Test func greedyChatDecodeMatchesReferenceAsJSON() throws {
        let g = try #require(try GoldenCase.load().first { $0.name == "chat_capital" })
        // The exact mode: the reference's rule (same greedy tokens up to a margin below 0.05) holds
        // for it; this case's first step has a margin of 0.08, within the int8 mode's rounding
        // (ActivationQuantGoldenTests: q8 follows the reference only up to a margin of 0.5).
        let r = try CLI.run(["decode", "-p", g.text, "-n", "32", "--json", "-t", "2", "--precision", "f32"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try CLI.json(r.stdout)
        #expect(o["prompt_tokens"] as? [Int] == g.ids)
        #expect(o["tokens"] as? [Int] == g.greedy)
        #expect((o["text"] as? String).map { g.greedy_text.hasPrefix($0) } == true)
        let stats = try #require(o["stats"] as? [String: Any])
        #expect((stats["decode_tokens_per_s"] as? Double ?? 0) > 0)
        #expect((stats["prompt_tokens_per_s"] as? Double ?? 0) > 0)
        #expect(stats["stop_reason"] as? String == "eos")
    }

    @Test func rawDecodeStreamsTextAndStats() throws {
        // The exact precision reproduces the float64 reference's continuation; the default (q8)
        // streams its own (it leaves the reference at this prompt's near-ties).
        let r = try CLI.run(["decode", "--raw", "-p", "Hello world", "-n", "5", "--precision", "f32"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.hasPrefix(" of the future."))
        #expect(r.stderr.contains("tok/s"))
        let q = try CLI.run(["decode", "--raw", "-p", "Hello world", "-n", "5"])
        #expect(q.status == 0, "\(q.stderr)")
        #expect(q.stdout.hasPrefix(" of the"))
        #expect(q.stderr.contains("tok/s"))
        let bad = try CLI.run(["decode", "--raw", "-p", "Hello world", "-n", "5", "--precision", "int4"])
        #expect(bad.status != 0 && bad.stderr.contains("precision"), "\(bad.stderr)")
    }

    @Test func sampledDecodeIsReproducibleWithASeed() throws {
        let args = ["decode", "-p", "Tell me a story.", "-n", "12", "--temp", "1", "--seed", "7", "--json"]
        let a = try CLI.json(CLI.run(args).stdout), b = try CLI.json(CLI.run(args).stdout)
        #expect(a["tokens"] as? [Int] == b["tokens"] as? [Int])
        #expect((a["tokens"] as? [Int])?.count == 12)
    }

    @Test func tokenizeJSONMatchesReference() throws {
        for g in try GoldenCase.load() {
            let args = ["tokenize", "-p", g.text, "--json"] + (g.chat ? [] : ["--raw"])
            let r = try CLI.run(args)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try CLI.json(r.stdout)["ids"] as? [Int] == g.ids, "\(g.name)")
        }
    }

    @Test func inspectListsTensors() throws {
        let r = try CLI.run(["inspect", TestPaths.model])
        #expect(r.status == 0)
        #expect(r.stdout.contains("llama.block_count") && r.stdout.contains("blk.29.ffn_down.weight") && r.stdout.contains("Q4_1"))
    }

    @Test func badInputIsAOneLineError() throws {
        expectCleanFailure(try CLI.run(["decode", "-m", "/nonexistent/model.gguf", "-p", "hi"]), mentioning: "/nonexistent/model.gguf")
        let junk = try temporaryFile(Array("not a model at all".utf8), name: "junk.gguf")
        expectCleanFailure(try CLI.run(["decode", "-m", junk, "-p", "hi"]), mentioning: "magic")
        expectCleanFailure(try CLI.run(["decode", "-p", ""]), mentioning: "empty")
        expectCleanFailure(try CLI.run(["decode"]), mentioning: "-p")
        expectCleanFailure(try CLI.run(["decode", "-p", String(repeating: "word ", count: 100), "--ctx", "16"]), mentioning: "context")
        expectCleanFailure(try CLI.run(["decode", "-f", "/nonexistent/prompt.txt"]), mentioning: "/nonexistent/prompt.txt")
        expectCleanFailure(try CLI.run(["decode", "-p", "hi", "--temp=-1"]), mentioning: "temp")
        expectCleanFailure(try CLI.run(["decode"], env: ["SPECDEC_MODEL": "", "SPECDEC_CACHE": "/nonexistent"]), mentioning: "setup.sh")
    }

    @Test func unsupportedArchitectureAndMissingTemplateAreClearErrors() throws {
        // A minimal GGUF declaring another architecture.
        func str(_ s: String) -> [UInt8] { withUnsafeBytes(of: UInt64(s.utf8.count).littleEndian, Array.init) + Array(s.utf8) }
        var b: [UInt8] = Array("GGUF".utf8) + withUnsafeBytes(of: UInt32(3).littleEndian, Array.init)
        b += withUnsafeBytes(of: UInt64(0).littleEndian, Array.init) + withUnsafeBytes(of: UInt64(1).littleEndian, Array.init)
        b += str("general.architecture") + withUnsafeBytes(of: UInt32(8).littleEndian, Array.init) + str("mamba")
        let path = try temporaryFile(b, name: "mamba.gguf")
        expectCleanFailure(try CLI.run(["decode", "-m", path, "--raw", "-p", "hi"]), mentioning: "architecture")
        expectCleanFailure(try CLI.run(["tokenize", "-m", path, "-p", "hi"]), mentioning: "tokenizer")
    }
}
