import Foundation
import Testing
import DataSynth

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
