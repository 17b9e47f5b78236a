import Foundation
import Testing
import DataSynth
import Shards

/// A fresh empty folder under the system temporary folder.
func scratchDir(_ name: String) -> String {
    let p = FileManager.default.temporaryDirectory.appendingPathComponent("specdec-ds-\(name)-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
}

func readBytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }
func writeBytes(_ b: [UInt8], _ path: String) throws { try Data(b).write(to: URL(fileURLWithPath: path)) }

/// Deterministic pseudo-random numbers for fixtures.
struct Lcg {
    var s: UInt64
    mutating func next() -> UInt64 { s = s &* 6364136223846793005 &+ 1442695040888963407; return s >> 11 }
    mutating func float() -> Float { Float(next() % 2_000_001) / 1_000_000 - 1 }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

let fixtureWidth = 16

func fixtureHeader(samples: Int = 5, shard: ShardSpec = ShardSpec(index: 0, count: 1), hidden: HiddenEncoding = .fp16,
                   level: Int = 3) -> ShardHeader {
    var g = GenerationSettings()
    g.maxNew = 8
    return ShardHeader(model: ModelInfo(file: "tiny.gguf", sha256: String(repeating: "ab", count: 32), architecture: "llama",
                                        width: fixtureWidth, vocabSize: 1000, layers: 2),
                       source: SourceInfo(kind: "generate-text", seed: 7), generation: g, hidden: hidden,
                       zstdLevel: level, samples: samples, shard: shard)
}

/// A record with every field populated (hidden states random but of realistic size).
func fixtureRecord(index: Int, hidden: HiddenEncoding = .fp16, tokens n: Int? = nil, images: Bool = false) -> SampleRecord {
    var r = Lcg(s: UInt64(index) &+ 99)
    let n = n ?? (12 + index % 5)
    var tokens = (0..<n).map { _ in Int32(r.int(1000)) }
    let prompt = n / 2
    let loss = (0..<n).map { UInt8($0 >= prompt ? 1 : 0) }
    var imageMask = [UInt8](repeating: 0, count: n)
    var refs: [ImageRef] = []
    if images {
        for i in 1..<4 { imageMask[i] = 1; tokens[i] = -1 }   // image rows hold the placeholder
        refs = [ImageRef(path: "imgs/cat \(index).png", sha256: String(repeating: "cd", count: 32)),
                ImageRef(path: "embedded.ppm", sha256: String(repeating: "ef", count: 32), embedded: (0..<37).map { UInt8(($0 * 7 + index) & 255) })]
    }
    let h = (0..<(n * fixtureWidth)).map { _ in r.float() * 3 }
    return SampleRecord(index: index, id: "sample-\(index) ✓", messages: [Message(role: "user", content: "Q\(index) <image>\nwhat? ünïcode"),
                                                                          Message(role: "assistant", content: "A\(index)")],
                        stopReasons: [index % 2 == 0 ? "eos" : "length"], tokens: tokens, lossMask: loss, imageMask: imageMask,
                        images: refs, hidden: HiddenStates.encode(h, rows: n, width: fixtureWidth, as: hidden))
}

/// Writes a finished shard of `count` fixture records; returns its path.
@discardableResult
func writeFixtureShard(dir: String, header: ShardHeader, images: Bool = false) throws -> String {
    let path = (dir as NSString).appendingPathComponent(header.shard.shardFileName)
    let w = try ShardWriter(path: path, header: header)
    for i in header.shard.indices(samples: header.samples) {
        try w.append(fixtureRecord(index: i, hidden: header.hidden.encoding, images: images))
    }
    try w.finish()
    return path
}

/// A finished dataset folder (shard + manifest) of fixture records.
func writeFixtureDataset(dir: String, header: ShardHeader) throws -> String {
    let path = try writeFixtureShard(dir: dir, header: header)
    let reader = try ShardReader(path: path)
    try DatasetManifest(samples: header.samples, shards: [try DatasetManifest.Entry(reader: reader, path: path)])
        .write(to: (dir as NSString).appendingPathComponent(header.shard.manifestFileName))
    return path
}
