import Foundation
import GGUF
import Llama
import Testing
import TestSupport
import Tokenizer
import DataSynth
import Shards

/// The built `specdec` without the sharding variables a CI may set (they would shard the runs).
enum Specdec {
    static let shardVariables = ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "JOB_COMPLETION_INDEX", "SPECDEC_SHARD_COUNT"]
    static func process(_ args: [String], env: [String: String] = [:]) -> (Process, Pipe, Pipe) {
        SpecdecCLI.process(args, env: env, unset: shardVariables)
    }
    static func run(_ args: [String], env: [String: String] = [:]) throws -> SpecdecCLI.Result {
        try SpecdecCLI.run(args, env: env, unset: shardVariables)
    }
    static func json(_ s: String) throws -> [String: Any] { try SpecdecCLI.json(s) }
}

/// The small greedy dataset the tests share: three JSONL prompts (one with two user turns), a short
/// system message and no long-answer instruction (short prompts: quick), at most 5 answer tokens
/// a turn, fp16 hidden states.
enum Reference {
    static let promptsFile: String = {
        let p = (scratchDir("prompts") as NSString).appendingPathComponent("prompts.jsonl")
        try! writeBytes(Array("""
        {"id": "a", "prompt": "Name a colour."}
        {"id": "b", "turns": ["Say hi.", "Now say bye."]}
        {"id": "c", "prompt": "What is 2+2?"}

        """.utf8), p)
        return p
    }()

    static func args(out: String) -> [String] {
        ["synth-data", "--prompts", promptsFile, "--max-new", "5", "--system", "Be brief.", "--no-long-answer", "--out", out, "-t", "2", "--json"]
    }

    /// The unsharded dataset folder, made once.
    static let dir: Swift.Result<String, Error> = Swift.Result {
        let d = scratchDir("reference")
        let r = try Specdec.run(args(out: d))
        guard r.status == 0 else { throw DataError(file: d, field: "synth-data", reason: "exit \(r.status): \(r.stderr)") }
        return d
    }

    static var shard: String { get throws { (try dir.get() as NSString).appendingPathComponent("shard-00000-of-00001.sds") } }
}

@Suite(.serialized) struct SynthTests {
    @Test func cliWritesAVerifiedDatasetWithASummary() throws {
        let d = scratchDir("cli")
        let r = try Specdec.run(["synth-data", "--generate", "text", "--samples", "2", "--seed", "3", "--max-new", "4",
                                 "--hidden", "int8", "--long-answer-words", "30", "--out", d, "-t", "2", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try Specdec.json(r.stdout)
        #expect(o["records"] as? Int == 2 && o["samples"] as? Int == 2 && o["generated_samples"] as? Int == 2)
        #expect((o["samples_per_second"] as? Double ?? 0) > 0 && (o["tokens_per_second"] as? Double ?? 0) > 0)
        #expect((o["compression_ratio"] as? Double ?? 0) > 1.5, "int8 should be well under raw fp16: \(o)")
        #expect((o["bytes_per_sample"] as? Double ?? 0) > 0)
        #expect(r.stderr.contains("samples/s") && r.stderr.contains("tok/s") && r.stderr.contains("ETA"), "progress: \(r.stderr)")
        let v = try Specdec.run(["data", "verify", d])
        #expect(v.status == 0 && v.stdout.contains("OK"), "\(v.stdout)\(v.stderr)")
        let records = try readAllRecords(dir: d)
        #expect(records.map(\.index) == [0, 1])
        #expect(records.allSatisfy { $0.hidden.encoding == .int8 && $0.hidden.width == 576 && $0.imageMask.allSatisfy { $0 == 0 } && $0.images.isEmpty })
        let expected = TextPromptGenerator(seed: 3).prompt(at: 1).userTurns[0] + "\nPlease answer with at least 30 words."
        #expect(records[1].messages.first { $0.role == "user" }?.content == expected)
        // Rerunning a finished run changes nothing.
        let before = try readBytes((d as NSString).appendingPathComponent("shard-00000-of-00001.sds"))
        let again = try Specdec.run(["synth-data", "--generate", "text", "--samples", "2", "--seed", "3", "--max-new", "4",
                                     "--hidden", "int8", "--long-answer-words", "30", "--out", d, "-t", "2", "--json"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try Specdec.json(again.stdout)["already_complete"] as? Bool == true)
        #expect(try readBytes((d as NSString).appendingPathComponent("shard-00000-of-00001.sds")) == before)
        // Other settings into the same folder are refused.
        let other = try Specdec.run(["synth-data", "--generate", "text", "--samples", "2", "--seed", "4", "--max-new", "4",
                                     "--hidden", "int8", "--out", d, "-t", "2"])
        #expect(other.status != 0 && other.stderr.contains("different settings"), "\(other.stderr)")
        // Bad arguments are one-line errors.
        let llava = (scratchDir("llava") as NSString).appendingPathComponent("l.json")
        try writeBytes(Array(#"[{"id": "img", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nWhat is it?"}]}]"#.utf8), llava)
        for (args, says) in [(["--llava-json", llava, "--out", d], "--text-only"),(["--generate", "text", "--out", d], "--samples"), (["--generate", "images", "--samples", "1", "--out", d], "vision tower"),
                             (["--generate", "text", "--samples", "1", "--shard", "2/2", "--out", d], "--shard"),
                             (["--generate", "text", "--samples", "1", "--hidden", "fp8", "--out", d], "--hidden"),
                             (["--prompts", "/nonexistent.jsonl", "--out", d], "/nonexistent.jsonl")] {
            let b = try Specdec.run(["synth-data"] + args)
            #expect(b.status != 0 && b.stderr.contains(says) && !b.stderr.contains("Fatal error"), "\(args): \(b.stderr)")
        }
    }

    /// The stored tokens are the target's greedy answers, the masks mark them, and the stored fp16
    /// hidden states are exactly those of one batched forward over the whole sequence.
    @Test func recordsHoldTheTargetsOwnAnswersAndHiddenStates() throws {
        let dir = try Reference.dir.get()
        let records = try readAllRecords(dir: dir)
        #expect(records.map(\.index) == [0, 1, 2])
        #expect(records.map(\.id) == ["a", "b", "c"])
        let gguf = try GGUFFile(path: TestPaths.model)
        let model = try LlamaModel(file: gguf, threads: 2)
        let tokenizer = try BPETokenizer(gguf: gguf)
        let template = try ChatTemplate(gguf: gguf)
        let vocab = model.config.vocabSize
        for r in records {
            let n = r.tokens.count
            #expect(r.lossMask.count == n && r.imageMask == [UInt8](repeating: 0, count: n) && r.hidden.rows == n && r.hidden.width == 576)
            let users = r.messages.filter { $0.role == "user" }
            #expect(r.messages.first == Message(role: "system", content: "Be brief."))
            #expect(r.stopReasons.count == users.count)
            // The prompt is the chat template over the first user turn.
            let firstAnswer = r.lossMask.firstIndex(of: 1)!
            let prompt = tokenizer.encode(template.render(messages: [.system("Be brief."), .user(users[0].content)], addGenerationPrompt: true))
            #expect(Array(r.tokens[0..<firstAnswer]) == prompt)
            // Turns: answer spans (mask 1) separated by template spans (mask 0).
            var spans = 0
            for i in 0..<n where r.lossMask[i] == 1 && (i == 0 || r.lossMask[i - 1] == 0) { spans += 1 }
            #expect(spans == users.count)

            let session = model.makeSession(contextSize: n)
            let out = try session.forward(tokens: r.tokens, logits: .all)
            let halves = out.hidden.map(floatToHalfForTest)
            #expect(halves == r.hidden.halves, "sample \(r.id): stored hidden states differ from a batched forward")
            for i in 1..<n where r.lossMask[i] == 1 {
                let row = Array(out.logits[(i - 1) * vocab..<(i * vocab)])
                let best = row.indices.max { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }!
                #expect(Int(r.tokens[i]) == best, "sample \(r.id) position \(i): stored \(r.tokens[i]), greedy \(best)")
            }
            // Every answer stops at the end-of-turn token or after 5 tokens.
            let answers = r.messages.filter { $0.role == "assistant" }
            #expect(answers.count == users.count)
            #expect(r.answerTokenCount <= 5 * users.count)
            for (k, stop) in r.stopReasons.enumerated() where stop == "eos" {
                #expect(tokenizer.endOfGenerationTokens.contains(answerSpans(r)[k].last!))
            }
        }
        let b = records[1]
        #expect(b.messages.map(\.role) == ["system", "user", "assistant", "user", "assistant"])
        #expect(b.messages[1].content == "Say hi." && b.messages[3].content == "Now say bye.")
        // The second turn's template text follows the first answer in the tokens.
        let text = tokenizer.decodeString(b.tokens)
        #expect(text.contains("<|im_start|>user\nNow say bye."), "\(text)")
        #expect(!text.contains("<|im_end|><|im_end|>"), "\(text)")
    }

    @Test func shardsOfTwoWorkersMergeIntoTheUnshardedDataset() throws {
        let ref = try Reference.dir.get()
        let w0 = scratchDir("w0"), w1 = scratchDir("w1"), merged = scratchDir("merged")
        let r0 = try Specdec.run(Reference.args(out: w0) + ["--shard", "0/2"])
        #expect(r0.status == 0, "\(r0.stderr)")
        // The second worker takes its index from the scheduler, as in a Slurm array job.
        let r1 = try Specdec.run(Reference.args(out: w1), env: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"])
        #expect(r1.status == 0, "\(r1.stderr)")
        #expect(FileManager.default.fileExists(atPath: w1 + "/manifest-00001-of-00002.json"))
        #expect(try Specdec.run(["data", "verify", w0]).status == 0)   // a partial dataset is not a fault

        let only0 = try Specdec.run(["data", "merge", w0, "--out", merged])
        #expect(only0.status != 0 && only0.stderr.contains("missing") && only0.stderr.contains("no shard 1/2"), "\(only0.stderr)")
        let twice = try Specdec.run(["data", "merge", w0, w0, "--out", merged])
        #expect(twice.status != 0, "\(twice.stderr)")
        let m = try Specdec.run(["data", "merge", w0, w1, "--out", merged, "--json"])
        #expect(m.status == 0, "\(m.stderr)")
        #expect(try Specdec.run(["data", "verify", merged]).status == 0)

        let a = try readAllRecords(dir: ref), b = try readAllRecords(dir: merged)
        #expect(a == b)
        // Record frames are byte-identical too.
        let refReader = try ShardReader(path: try Reference.shard)
        let parts = try [w0 + "/shard-00000-of-00002.sds", w1 + "/shard-00001-of-00002.sds"].map { try ShardReader(path: $0) }
        for k in 0..<refReader.recordCount {
            let part = parts[k % 2]
            #expect(refReader.frameBytes(k) == part.frameBytes(k / 2), "record \(k)")
        }
        // Merging the merged dataset with a worker again finds duplicates.
        let dup = try Specdec.run(["data", "merge", merged, w1, "--out", scratchDir("dup")])
        #expect(dup.status != 0 && dup.stderr.contains("also in"), "\(dup.stderr)")
    }

    /// Samples generated together write the same bytes as one at a time (greedy and sampled,
    /// multi-turn, EAGLE-3 layers): batch invariance plus a sampler seeded by the sample index.
    @Test func batchSizeNeverChangesTheDataset() throws {
        let reference = try readBytes(try Reference.shard)
        for b in ["1", "2"] {
            let d = scratchDir("batch-\(b)")
            let r = try Specdec.run(Reference.args(out: d) + ["--batch", b])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try readBytes(d + "/shard-00000-of-00001.sds") == reference, "--batch \(b)")
        }
        var sampled: [[UInt8]] = []
        for (b, t) in [("1", "2"), ("3", "2"), ("5", "1")] {   // nor the thread count
            let d = scratchDir("batch-sampled-\(b)")
            let r = try Specdec.run(["synth-data", "--generate", "text", "--samples", "5", "--seed", "4", "--temp", "1", "--max-new", "7",
                                     "--long-answer-words", "20", "--hidden-layers", "eagle3", "--out", d, "-t", t, "--batch", b])
            #expect(r.status == 0, "\(r.stderr)")
            sampled.append(try readBytes(d + "/shard-00000-of-00001.sds"))
        }
        #expect(sampled[1] == sampled[0] && sampled[2] == sampled[0])
    }

    /// A run killed mid-write (its `.tmp` shard holds the first records and half of the next,
    /// as `kill -9` leaves it), then the same command again: the same bytes as an uninterrupted
    /// run. The killed state is built from the reference shard (the unfinished file is a prefix
    /// of the finished one), so the test does not race a process.
    @Test func killedAndRerunGivesIdenticalBytes() throws {
        let reference = try readBytes(try Reference.shard)
        let entries = try ShardReader(path: try Reference.shard).entries
        #expect(entries.count >= 3)
        let d = scratchDir("kill")
        let tmp = d + "/shard-00000-of-00001.sds.tmp"
        // Two complete records, then the third cut 7 bytes before its end.
        let cut = entries[2].offset + entries[2].frameSize - 7
        try writeBytes(Array(reference[0..<cut]), tmp)
        #expect(unfinishedRecordCount(try readBytes(tmp)) == 2)

        // Resumed three at a time (the reference ran one at a time).
        let r = try Specdec.run(Reference.args(out: d) + ["--batch", "3"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try Specdec.json(r.stdout)
        #expect(o["resumed_records"] as? Int == 2, "\(o)")
        #expect(o["discarded_bytes"] as? Int == entries[2].frameSize - 7, "\(o)")
        #expect(try readBytes(d + "/shard-00000-of-00001.sds") == reference)
        #expect(try readBytes(d + "/manifest.json") == (try readBytes((try Reference.dir.get()) + "/manifest.json")))
        #expect(!FileManager.default.fileExists(atPath: tmp))
    }

    @Test func cliRefusesToAppendToACorruptShardAndVerifyFails() throws {
        let ref = try Reference.dir.get()
        let d = scratchDir("corrupt-cli")
        // An unfinished shard: the reference without its footer and last record, one record damaged.
        let full = try readBytes(try Reference.shard)
        let reader = try ShardReader(path: try Reference.shard)
        let e = reader.entries
        var b = Array(full[0..<e[2].offset])
        b[e[1].offset + e[1].frameSize / 2] ^= 0x40
        try writeBytes(b, d + "/shard-00000-of-00001.sds.tmp")
        let r = try Specdec.run(Reference.args(out: d))
        #expect(r.status != 0)
        #expect(r.stderr.contains("Refusing to append to a corrupt shard") && r.stderr.contains("truncate -s \(e[1].offset)"), "\(r.stderr)")
        #expect(!r.stderr.contains("Fatal error"))

        // data verify: exit 0 on the reference, non-zero with the fault named on a damaged copy.
        let ok = try Specdec.run(["data", "verify", ref, "--json"])
        #expect(ok.status == 0)
        #expect(try Specdec.json(ok.stdout)["ok"] as? Bool == true)
        let bad = scratchDir("bad-copy")
        try FileManager.default.copyItem(atPath: ref + "/manifest.json", toPath: bad + "/manifest.json")
        var c = full
        c[e[2].offset + 3] ^= 0x01
        try writeBytes(c, bad + "/shard-00000-of-00001.sds")
        let v = try Specdec.run(["data", "verify", bad])
        #expect(v.status == 1)
        #expect(v.stdout.contains("FAULT") && v.stdout.contains("record[2]") && v.stdout.contains("sha256"), "\(v.stdout)")
        #expect(try Specdec.run(["data", "verify", "/nonexistent-dir"]).status != 0)
    }

    @Test func inspectShowsCountsSizesAndASample() throws {
        let ref = try Reference.dir.get()
        let r = try Specdec.run(["data", "inspect", ref, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try Specdec.json(r.stdout)
        let records = try readAllRecords(dir: ref)
        #expect(o["records"] as? Int == 3 && o["samples"] as? Int == 3 && o["shards"] as? Int == 1)
        #expect(o["tokens"] as? Int == records.reduce(0) { $0 + $1.tokens.count })
        #expect(o["answer_tokens"] as? Int == records.reduce(0) { $0 + $1.answerTokenCount })
        #expect(o["raw_fp16_hidden_bytes"] as? Int == records.reduce(0) { $0 + $1.tokens.count } * 576 * 2)
        let ratio = try #require(o["compression_ratio"] as? Double)
        #expect(ratio > 1.0 && ratio < 2.0, "fp16 is lossless: \(ratio)")
        let sample = try #require(o["sample"] as? [String: Any])
        #expect(sample["id"] as? String == "a")
        let text = try Specdec.run(["data", "inspect", ref, "--sample", "1"])
        #expect(text.status == 0 && text.stdout.contains("sample 1 (b)") && text.stdout.contains("Now say bye."), "\(text.stdout)")
        #expect(text.stdout.contains("smaller"))
        #expect(try Specdec.run(["data", "inspect", ref, "--sample", "9"]).status != 0)
    }
}

/// The token spans of each answer (runs of loss-mask 1).
func answerSpans(_ r: SampleRecord) -> [[Int32]] {
    var spans: [[Int32]] = []
    for i in 0..<r.tokens.count where r.lossMask[i] == 1 {
        if i == 0 || r.lossMask[i - 1] == 0 { spans.append([]) }
        spans[spans.count - 1].append(r.tokens[i])
    }
    return spans
}

func floatToHalfForTest(_ f: Float) -> UInt16 { HiddenStates.encode([f], rows: 1, width: 1, as: .fp16).halves[0] }

/// Ends of the complete record frames in an unfinished shard's bytes.
func unfinishedRecordEnds(_ b: [UInt8]) -> [Int] {
    ((try? unfinishedShardEntries(b)) ?? []).map { $0.offset + $0.frameSize }
}

func unfinishedRecordCount(_ b: [UInt8]) -> Int { unfinishedRecordEnds(b).count }
