import Foundation
import Testing
import DataSynth
import Shards

@Suite struct CorruptionTests {
    /// Cutting a finished shard anywhere from the start of its last record frame to its last byte:
    /// verify reports a fault every time, and never crashes.
    @Test func truncationAtEveryByteOfTheLastFramesIsReported() throws {
        let dir = scratchDir("trunc")
        let path = try writeFixtureShard(dir: dir, header: fixtureHeader(samples: 3))
        let full = try readBytes(path)
        let last = try ShardReader(path: path).entries.last!
        let cutPath = (dir as NSString).appendingPathComponent("cut.sds")
        var checked = 0
        for cut in last.offset..<full.count {
            try writeBytes(Array(full[0..<cut]), cutPath)
            let c = verifyShard(path: cutPath)
            #expect(!c.faults.isEmpty, "cut at \(cut) of \(full.count) not reported")
            #expect(c.faults.allSatisfy { $0.file == cutPath })
            checked += 1
        }
        #expect(checked == full.count - last.offset && checked > 100)
        // Inside the last record frame the report says how many records are intact.
        try writeBytes(Array(full[0..<(last.offset + 5)]), cutPath)
        let c = verifyShard(path: cutPath)
        #expect(c.faults.contains { $0.field == "record[2]" && $0.reason.contains("2 complete records") }, "\(c.faults)")
    }

    /// Any single flipped bit anywhere in a shard is caught by the shard's own checks.
    @Test func everyBitFlipIsReported() throws {
        let dir = scratchDir("flip")
        let path = try writeFixtureShard(dir: dir, header: fixtureHeader(samples: 2, hidden: .int8))
        let full = try readBytes(path)
        var missed: [Int] = []
        for i in 0..<full.count {
            // Every bit of the fixed-layout parts; one bit (rotating) of each compressed byte.
            let bits = (i < 24 || i >= full.count - 40) ? Array(0..<8) : [i % 8]
            for bit in bits {
                var b = full
                b[i] ^= UInt8(1 << bit)
                if verifyShard(bytes: b, path: "flip.sds").faults.isEmpty { missed.append(i * 8 + bit) }
            }
        }
        #expect(missed.isEmpty, "undetected flips at bits \(missed.prefix(10)) of \(full.count * 8)")
        // The same through the file.
        var b = full
        b[full.count / 2] ^= 4
        try writeBytes(b, path)
        #expect(!verifyShard(path: path).faults.isEmpty)
    }

    @Test func wrongMagicAndVersionAreNamed() throws {
        let dir = scratchDir("magic")
        let path = try writeFixtureShard(dir: dir, header: fixtureHeader(samples: 2))
        let full = try readBytes(path)
        var b = full
        b[8] = UInt8(ascii: "X")
        try writeBytes(b, path)
        let m = verifyShard(path: path)
        #expect(m.faults.first?.field == "prologue.magic" && m.faults.first?.reason.contains("not a specdec shard") == true)
        #expect(throws: DataError.self) { try ShardReader(path: path) }

        // Version 2 with a correct CRC: the fault is the version, not the checksum.
        b = full
        b[16] = 2
        let crc = CRC32.checksum(b[0..<20])
        withUnsafeBytes(of: crc.littleEndian) { for k in 0..<4 { b[20 + k] = $0[k] } }
        try writeBytes(b, path)
        let v = verifyShard(path: path)
        #expect(v.faults.first?.field == "prologue.version", "\(v.faults)")
        #expect(v.faults.first?.reason.contains("version 2") == true)

        // Not a shard at all, and an empty file.
        try writeBytes(Array("hello, world".utf8), path)
        #expect(verifyShard(path: path).faults.first?.field == "prologue")
        try writeBytes([], path)
        #expect(!verifyShard(path: path).faults.isEmpty)
        #expect(verifyShard(path: dir + "/absent.sds").faults.first?.field == "file")
    }

    @Test func aManifestThatLiesIsReported() throws {
        let dir = scratchDir("manifest")
        let header = fixtureHeader(samples: 4)
        _ = try writeFixtureDataset(dir: dir, header: header)
        let mpath = (dir as NSString).appendingPathComponent("manifest.json")
        let honest = try DatasetManifest.load(mpath)
        #expect(verifyDataset(dir: dir).ok)

        func expectFault(_ field: String, _ edit: (inout DatasetManifest) -> Void, sourceLocation: SourceLocation = #_sourceLocation) throws {
            var m = honest
            edit(&m)
            try m.write(to: mpath)
            let c = verifyDataset(dir: dir)
            #expect(!c.ok, sourceLocation: sourceLocation)
            #expect(c.faults.contains { $0.field == field }, "expected a fault in \(field), got \(c.faults)", sourceLocation: sourceLocation)
        }
        try expectFault("shards[0].sha256") { $0.shards[0].sha256 = String(repeating: "0", count: 64) }
        try expectFault("shards[0].records") { $0.shards[0].records += 1 }
        try expectFault("shards[0].tokens") { $0.shards[0].tokens -= 1 }
        try expectFault("shards[0].answer_tokens") { $0.shards[0].answerTokens += 2 }
        try expectFault("shards[0].bytes") { $0.shards[0].bytes += 10 }
        try expectFault("shards[0].shard") { $0.shards[0].shard = ShardSpec(index: 1, count: 2) }
        try expectFault("samples") { $0.samples = 6 }
        try expectFault("shards[1].file") { $0.shards.append($0.shards[0]) }
        try expectFault("shards[1].file") { var e = $0.shards[0]; e.file = "shard-00009-of-00010.sds"; $0.shards.append(e) }
        try expectFault("manifest") { $0.shards = [] }   // the shard on disk is listed by no manifest
        try expectFault("shards[0].file") { $0.shards[0].file = "../etc/passwd" }

        // Not JSON at all; a missing manifest.
        try writeBytes(Array("{nope".utf8), mpath)
        #expect(verifyDataset(dir: dir).faults.contains { $0.field == "manifest" })
        try FileManager.default.removeItem(atPath: mpath)
        #expect(verifyDataset(dir: dir).faults.contains { $0.field == "manifest" && $0.reason.contains("missing") })
        try honest.write(to: mpath)
        #expect(verifyDataset(dir: dir).ok)
    }

    @Test func aCorruptShardBehindAnHonestManifestIsReported() throws {
        let dir = scratchDir("corrupt")
        let path = try writeFixtureDataset(dir: dir, header: fixtureHeader(samples: 3))
        var b = try readBytes(path)
        let e = try ShardReader(path: path).entries[1]
        b[e.offset + e.frameSize / 2] ^= 0x10
        try writeBytes(b, path)
        let c = verifyDataset(dir: dir)
        #expect(c.faults.contains { $0.field == "shards[0].sha256" })
        #expect(c.faults.contains { $0.field.hasPrefix("record[1]") }, "\(c.faults)")
    }

    // MARK: resuming an unfinished shard

    /// The .tmp of an interrupted write: prologue, header and `records` record frames.
    func unfinishedShard(dir: String, header: ShardHeader, records: Int) throws -> (tmp: String, final: String) {
        let final = (dir as NSString).appendingPathComponent(header.shard.shardFileName)
        let w = try ShardWriter(path: final, header: header)
        for i in header.shard.indices(samples: header.samples).prefix(records) {
            try w.append(fixtureRecord(index: i, hidden: header.hidden.encoding))
        }
        return (final + ".tmp", final)
    }

    /// Two writers on one shard would write over each other's records: the second is refused
    /// while the first holds the file; once the first is gone, a writer resumes after its records.
    @Test func aSecondWriterOnTheSameShardIsRefused() throws {
        let header = fixtureHeader(samples: 3)
        let final = scratchDir("two-writers") + "/shard-00000-of-00001.sds"
        var first: ShardWriter? = try ShardWriter(path: final, header: header, durable: false)
        try first!.append(fixtureRecord(index: 0))
        do {
            _ = try ShardWriter(path: final, header: header, durable: false)
            Issue.record("a second writer was let in")
        } catch let e as DataError {
            #expect(e.reason.contains("another process is writing this shard"), "\(e)")
        }
        first = nil
        let again = try ShardWriter(path: final, header: header, durable: false)
        #expect(again.entries.count == 1)
    }

    /// Killed at every byte of a record's write, a resumed writer keeps the complete records and
    /// ends with exactly the bytes of an uninterrupted run.
    @Test func resumingAfterACutAtEveryByteGivesIdenticalShards() throws {
        let header = fixtureHeader(samples: 3, hidden: .int8)
        let refDir = scratchDir("resume-ref")
        let reference = try readBytes(try writeFixtureShard(dir: refDir, header: header))

        let dir = scratchDir("resume")
        let (tmp, final) = try unfinishedShard(dir: dir, header: header, records: 3)
        let unfinished = try readBytes(tmp)
        let entries = try ShardWriter(path: final, header: header).entries
        #expect(entries.count == 3)
        let lastStart = entries[2].offset
        // Every byte of the last record's write; every 5th byte before it (prologue, header, records 0 and 1).
        var cuts = Array(stride(from: 0, to: lastStart, by: 5)) + Array(lastStart..<unfinished.count)
        cuts.append(unfinished.count)
        for cut in cuts {
            try writeBytes(Array(unfinished[0..<cut]), tmp)
            let w = try ShardWriter(path: final, header: header, durable: false)
            let kept = w.entries.count
            let expected = entries.filter { $0.offset + $0.frameSize <= cut }.count
            #expect(kept == expected, "cut \(cut): kept \(kept), expected \(expected)")
            for i in kept..<3 { try w.append(fixtureRecord(index: i, hidden: .int8)) }
            try w.finish()
            #expect(try readBytes(final) == reference, "cut at \(cut) did not resume to identical bytes")
            try FileManager.default.removeItem(atPath: final)
        }
        // Finished but not renamed (killed between the trailer and the rename): same result.
        try writeBytes(reference, tmp)
        let w = try ShardWriter(path: final, header: header)
        #expect(w.entries.count == 3)
        try w.finish()
        #expect(try readBytes(final) == reference)
    }

    @Test func appendingToACorruptShardIsRefusedWithTheWayOut() throws {
        let dir = scratchDir("refuse")
        let header = fixtureHeader(samples: 4)
        let (tmp, final) = try unfinishedShard(dir: dir, header: header, records: 3)
        var b = try readBytes(tmp)
        let e = try ShardWriter(path: final, header: header).entries
        b[e[1].offset + e[1].frameSize - 2] ^= 0x01      // inside record 1's checksum
        try writeBytes(b, tmp)
        let err = #expect(throws: DataError.self) { try ShardWriter(path: final, header: header) }
        let msg = err?.description ?? ""
        #expect(msg.contains("Refusing to append to a corrupt shard"), "\(msg)")
        #expect(msg.contains("truncate -s \(e[1].offset) \(tmp)"), "\(msg)")
        #expect(msg.contains("rm \(tmp)"), "\(msg)")
        #expect(try readBytes(tmp) == b, "the refused file must be left as it was")
        // Following the advice works.
        try writeBytes(Array(b[0..<e[1].offset]), tmp)
        #expect(try ShardWriter(path: final, header: header).entries.count == 1)

        // A shard from another run (different settings) is refused, naming what differs.
        var other = header
        other.generation.maxNew = 99
        let err2 = #expect(throws: DataError.self) { try ShardWriter(path: final, header: other) }
        #expect(err2?.reason.contains("different settings (generation differ)") == true, "\(String(describing: err2))")

        // A garbage .tmp is refused too.
        try writeBytes(Array(repeating: 0x41, count: 100), tmp)
        let err3 = #expect(throws: DataError.self) { try ShardWriter(path: final, header: header) }
        #expect(err3?.reason.contains("rm \(tmp)") == true)
    }

    @Test func recordsOutOfOrderAreCorruption() throws {
        let dir = scratchDir("order")
        let header = fixtureHeader(samples: 6, shard: ShardSpec(index: 1, count: 2))
        let final = (dir as NSString).appendingPathComponent(header.shard.shardFileName)
        let w = try ShardWriter(path: final, header: header)
        #expect(throws: DataError.self) { try w.append(fixtureRecord(index: 0)) }   // belongs to shard 0/2
        try w.append(fixtureRecord(index: 1))
        try w.append(fixtureRecord(index: 3))
        try w.append(fixtureRecord(index: 5))
        try w.finish()
        #expect(verifyShard(path: final).faults.isEmpty)
        // A shard that claims to be 0/2 but holds shard 1/2's records.
        var b = try readBytes(final)
        let fake = (dir as NSString).appendingPathComponent("fake.sds")
        let header0 = fixtureHeader(samples: 6, shard: ShardSpec(index: 0, count: 2))
        let prefix0 = ShardWriter.prefix(header: header0)
        let prefix1 = ShardWriter.prefix(header: header)
        b = prefix0 + b[prefix1.count...]
        try writeBytes(b, fake)
        #expect(!verifyShard(path: fake).faults.isEmpty)
    }
}
