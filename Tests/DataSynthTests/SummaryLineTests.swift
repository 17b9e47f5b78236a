import Foundation
import Testing
import DataSynth
import Shards
import Diagnostics

/// The closing line of synth-data with a shard past 2^31 bytes (20,000 image records are 3.9 GB):
/// a C `%d` printed it as −400,471,627.
@Test func summaryLinePrintsLargeByteCounts() throws {
    let json = """
    {"outDir": "d", "shardFile": "d/shard-00000-of-00001.sds", "manifestFile": "d/manifest.json",
     "shard": {"index": 0, "count": 1}, "samples": 20000, "records": 20000, "resumedRecords": 16557,
     "discardedBytes": 0, "alreadyComplete": false, "generatedSamples": 3443, "generatedTokens": 430000,
     "promptTokens": 0, "seconds": 748.5, "samplesPerSecond": 4.6, "tokensPerSecond": 570.2,
     "bytes": 3894495669, "bytesPerSample": 194724.8, "rawFp16HiddenBytes": 4361834509, "compressionRatio": 1.12}
    """
    let summary = try JSONDecoder().decode(SynthSummary.self, from: Data(json.utf8))
    #expect(summary.line.contains("20000 records, 3894495669 bytes (194725 per sample)"), "\(summary.line)")
    #expect(summary.line.contains("wrote 3443 samples (resumed after 16557)"))
}

/// The rate and ETA come from the last minute: after a 10-minute pause (`kill -STOP` during a
/// benchmark) the whole-run average would stay low, and the ETA hours off, long after the run
/// is back to full speed.
@Test func rateWindowRecoversWithinAMinuteOfAPause() {
    var w = RateWindow(window: 60)
    var t = 0.0, n = 0
    var last: (itemsPerSecond: Double, tokensPerSecond: Double)? = w.add(t: 0, items: 0, tokens: 0)
    #expect(last == nil, "one mark gives no rate")
    for _ in 0..<120 { t += 1; n += 1; last = w.add(t: t, items: n, tokens: 100 * n) }
    #expect(abs(last!.itemsPerSecond - 1) < 1e-9 && abs(last!.tokensPerSecond - 100) < 1e-9)
    t += 600; n += 1
    last = w.add(t: t, items: n, tokens: 100 * n)
    #expect(last!.itemsPerSecond < 0.01, "straight after the pause the window holds it: \(last!)")
    for _ in 0..<61 { t += 1; n += 1; last = w.add(t: t, items: n, tokens: 100 * n) }
    #expect(abs(last!.itemsPerSecond - 1) < 0.05, "a minute later the pause has left the window: \(last!)")
    #expect(Double(n) / t < 0.25, "while the whole run's average is still \(Double(n) / t)")
}

@Test func statusLineUsesTheRecentRate() {
    var p = SynthProgress(shard: ShardSpec(index: 0, count: 1), done: 1000, total: 20000, generatedSamples: 1000,
                          generatedTokens: 125_000, seconds: 1000)
    #expect(p.statusLine(label: "s").contains("1.00 samples/s | 125.0 tok/s | ETA 5h16m"), "\(p.statusLine(label: "s"))")
    p.recentSamplesPerSecond = 5; p.recentTokensPerSecond = 625
    #expect(p.statusLine(label: "s").contains("5.00 samples/s | 625.0 tok/s | ETA 1h03m"), "\(p.statusLine(label: "s"))")
}
