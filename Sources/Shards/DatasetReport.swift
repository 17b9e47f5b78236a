import Foundation

extension DatasetSummary {
    /// `data inspect`'s text: counts, identity, generation settings, tokens, sizes and the sample.
    public func lines(dir: String) -> [String] {
        func mb(_ b: Int) -> String { String(format: "%.2f MB", Double(b) / 1e6) }
        var out = ["\(dir): \(records) of \(samples) samples in \(shards) shard\(shards == 1 ? "" : "s")"]
        if let m = model { out.append("model:  \(m.file) (sha256 \(m.sha256.prefix(16))…, \(m.architecture), width \(m.width), vocab \(m.vocabSize))") }
        if let t = tower { out.append("tower:  \(t.file) (sha256 \(t.sha256.prefix(16))…)") }
        if let src = source {
            out.append("source: \(src.kind)" + (src.file.map { " \($0)" } ?? "") + (src.seed.map { " seed \($0)" } ?? "")
                       + (src.sha256.map { " (sha256 \($0.prefix(16))…)" } ?? ""))
        }
        if let g = generation {
            out.append("generation: max_new \(g.maxNew), " + (g.temperature == 0 ? "greedy" : "temp \(g.temperature) top_k \(g.topK) top_p \(g.topP) min_p \(g.minP)")
                       + ", seed \(g.seed), context \(g.contextSize), long answer: " + (g.longAnswer.map { "\"\($0)\"" } ?? "off"))
        }
        let per = records > 0 ? Double(tokens) / Double(records) : 0
        out.append(String(format: "tokens: %d (prompt %d, answer %d; %.1f per sample)", tokens, promptTokens, answerTokens, per))
        out.append("stops:  " + stopReasons.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        out.append("hidden: \(hiddenEncoding)" + (hiddenWidth > 0 ? ", width \(hiddenWidth)" : "") + (zstdLevel.map { ", zstd level \($0)" } ?? ""))
        out.append(String(format: "size:   %@ (%.0f bytes per sample); raw fp16 hidden states %@: %.2fx smaller",
                          mb(bytes), bytesPerSample, mb(rawFp16HiddenBytes), compressionRatio))
        if !faults.isEmpty { out.append("FAULTS: \(faults.count) (run specdec data verify \(dir))") }
        if let v = sample {
            out.append("\nsample \(v.index) (\(v.id)): \(v.tokens) tokens, \(v.answerTokens) answer, \(v.imageTokens) image; stop: \(v.stopReasons.joined(separator: ", "))")
            for m in v.messages { out += ["[\(m.role)]", m.content] }
        }
        return out
    }
}

/// `data verify`'s result (the object `--json` prints).
public struct DatasetVerifyReport: Encodable {
    public var dir: String
    public var ok: Bool
    public var shards: Int
    public var samples: Int
    public var covered: Int
    public var records: Int
    public var faults: [String]
    public var notes: [String]

    public init(dir: String, check c: DatasetCheck) {
        self.init(dir: dir, ok: c.ok, shards: c.shards.count, samples: c.samples, covered: c.covered,
                  records: c.shards.reduce(0) { $0 + $1.check.entries.count }, faults: c.faults.map(\.description), notes: c.notes)
    }

    init(dir: String, ok: Bool, shards: Int, samples: Int, covered: Int, records: Int, faults: [String], notes: [String]) {
        self.dir = dir; self.ok = ok; self.shards = shards; self.samples = samples; self.covered = covered
        self.records = records; self.faults = faults; self.notes = notes
    }

    /// Every fault and note, then the verdict.
    public var lines: [String] {
        faults.map { "FAULT \($0)" } + notes.map { "note: \($0)" } + [ok
            ? "\(dir): OK: \(shards) shard\(shards == 1 ? "" : "s"), \(records) records, \(covered) of \(samples) samples"
            : "\(dir): \(faults.count) fault\(faults.count == 1 ? "" : "s")"]
    }
}
