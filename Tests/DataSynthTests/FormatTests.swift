import Foundation
import Kernels
import Testing
import DataSynth
import Shards

@Suite struct ChecksumTests {
    @Test func sha256KnownVectors() {
        #expect(SHA256.hex([UInt8]()) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // A million 'a's, fed in uneven pieces (exercises the buffering).
        var s = SHA256()
        var left = 1_000_000, k = 1
        while left > 0 { let n = min(left, k); s.update([UInt8](repeating: 0x61, count: n)); left -= n; k = k * 3 % 1000 + 1 }
        #expect(s.finalize().map { String(format: "%02x", $0) }.joined() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func crc32KnownVector() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
    }
}

@Suite struct RecordTests {
    @Test(arguments: HiddenEncoding.allCases)
    func payloadRoundTripsEveryField(encoding: HiddenEncoding) throws {
        for images in [false, true] {
            let r = fixtureRecord(index: 3, hidden: encoding, images: images)
            let back = try SampleRecord.decode(r.payload(), file: "mem", field: "record", expectedEncoding: encoding, expectedWidth: encoding == .none ? 0 : fixtureWidth)
            #expect(back == r)
            #expect(back.index == 3 && back.id == "sample-3 ✓" && back.stopReasons == ["length"])
            #expect(back.messages[0].content.contains("ünïcode"))
            #expect(back.images.count == (images ? 2 : 0))
            if images {
                #expect(back.images[0].embedded == nil && back.images[1].embedded?.count == 37)
                #expect(back.imageMask.reduce(0, +) == 3)
            }
        }
    }

    @Test func shardRoundTripsEveryRecordAndField() throws {
        for encoding in HiddenEncoding.allCases {
            let dir = scratchDir("rt")
            let header = fixtureHeader(samples: 7, hidden: encoding)
            let path = try writeFixtureShard(dir: dir, header: header, images: true)
            let reader = try ShardReader(path: path)
            #expect(reader.header == header)
            #expect(reader.headerJSON == header.jsonBytes())
            #expect(reader.recordCount == 7)
            for k in 0..<7 {
                let r = try reader.record(k)
                #expect(r == fixtureRecord(index: k, hidden: encoding, images: true))
                #expect(reader.entries[k].tokenCount == r.tokens.count && reader.entries[k].answerTokens == r.answerTokenCount)
            }
            #expect(verifyShard(path: path).faults.isEmpty)
        }
    }

    @Test func fp16IsExactAndInt8IsWithinHalfAStep() {
        var g = Lcg(s: 5)
        let rows = 9, w = 33
        var x = (0..<(rows * w)).map { _ in g.float() * 40 }
        x[5] = 0; x[w] = -123.25; for c in 0..<w { x[2 * w + c] = 0 }   // a zero row
        let f = HiddenStates.encode(x, rows: rows, width: w, as: .fp16).floats()
        #expect(f == x.map { halfToFloat(floatToHalf($0)) })
        let q = HiddenStates.encode(x, rows: rows, width: w, as: .int8)
        let back = q.floats()
        for r in 0..<rows {
            let m = (0..<w).map { abs(x[r * w + $0]) }.max()!
            #expect(q.scales[r] == m / 127)
            for c in 0..<w { #expect(abs(back[r * w + c] - x[r * w + c]) <= m / 127 * 0.5001 + 1e-6) }
        }
        #expect(HiddenStates.encode(x, rows: rows, width: w, as: .none).floats().isEmpty)
    }

    @Test func fp16PlanesAreLowBytesThenHighBytes() {
        let h = HiddenStates(encoding: .fp16, rows: 1, width: 2, halves: [0x1234, 0xABCD])
        let r = SampleRecord(index: 0, id: "", messages: [], stopReasons: [], tokens: [1], lossMask: [0], imageMask: [0], hidden: h)
        #expect(Array(r.payload().suffix(4)) == [0x34, 0xCD, 0x12, 0xAB])
    }

    @Test func malformedPayloadsAreTypedErrorsNotCrashes() throws {
        let good = fixtureRecord(index: 1, images: true).payload()
        // Every prefix, and every single-byte change in the fixed part and at the ends of sections.
        for cut in 0..<good.count {
            #expect(throws: DataError.self) { try SampleRecord.decode(Array(good[0..<cut]), file: "f", field: "record") }
        }
        var g = Lcg(s: 1)
        for _ in 0..<3000 {
            var b = good
            let i = g.int(b.count)
            b[i] ^= UInt8(1 << g.int(8))
            do { _ = try SampleRecord.decode(b, file: "f", field: "record", expectedEncoding: .fp16, expectedWidth: fixtureWidth) } catch is DataError {}
        }
        let e = #expect(throws: DataError.self) { try SampleRecord.decode(good + [0], file: "x.sds", field: "record[4]") }
        #expect(e?.file == "x.sds" && e?.field == "record[4].length")
        var huge = good
        huge[12] = 0xFF; huge[13] = 0xFF; huge[14] = 0xFF; huge[15] = 0x7F
        #expect(throws: DataError.self) { try SampleRecord.decode(huge, file: "f", field: "record") }
    }

    @Test func headerBytesAreDeterministicAndDescribeTheLayout() throws {
        let a = fixtureHeader().jsonBytes(), b = fixtureHeader().jsonBytes()
        #expect(a == b)
        let s = String(decoding: a, as: UTF8.self)
        for key in ["\"model\"", "\"sha256\"", "\"generation\"", "\"long_answer\"", "\"hidden\"", "\"fields\"", "\"shard\"", "\"zstd_level\""] {
            #expect(s.contains(key), "\(key) missing from \(s)")
        }
        #expect(!s.contains("\"tower\""))   // text-only data: no tower
        var h = fixtureHeader(); h.tower = TowerInfo(file: "mmproj.gguf", sha256: "00")
        #expect(String(decoding: h.jsonBytes(), as: UTF8.self).contains("\"tower\""))
    }
}

@Suite struct ShardSpecTests {
    @Test func parsesAndTakesFromTheScheduler() throws {
        #expect(try ShardSpec.resolve("1/4", environment: [:]) == ShardSpec(index: 1, count: 4))
        #expect(try ShardSpec.resolve(nil, environment: [:]) == ShardSpec(index: 0, count: 1))
        #expect(try ShardSpec.resolve(nil, environment: ["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"]) == ShardSpec(index: 3, count: 8))
        #expect(try ShardSpec.resolve(nil, environment: ["JOB_COMPLETION_INDEX": "2", "SPECDEC_SHARD_COUNT": "5"]) == ShardSpec(index: 2, count: 5))
        #expect(try ShardSpec.resolve("0/2", environment: ["SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"]) == ShardSpec(index: 0, count: 2))
        for bad in ["2/2", "-1/2", "1", "a/b", "0/0", "1/2/3"] {
            #expect(throws: DataError.self) { try ShardSpec.resolve(bad, environment: [:]) }
        }
        #expect(throws: DataError.self) { try ShardSpec.resolve(nil, environment: ["JOB_COMPLETION_INDEX": "2"]) }
        #expect(Array(ShardSpec(index: 1, count: 3).indices(samples: 8)) == [1, 4, 7])
        #expect(ShardSpec(index: 0, count: 1).manifestFileName == "manifest.json")
        #expect(ShardSpec(index: 2, count: 16).shardFileName == "shard-00002-of-00016.sds")
    }
}
