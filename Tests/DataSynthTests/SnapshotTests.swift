import Foundation
import Testing
import DataSynth
import Shards

@Suite struct SnapshotTests {
    /// A worker still writing its shard: the snapshot holds exactly its complete records, verifies,
    /// and leaves the unfinished shard alone; a torn last record is left out.
    @Test func snapshotOfAnUnfinishedShardHoldsItsCompleteRecords() throws {
        let src = scratchDir("snap-src"), out = scratchDir("snap-out")
        let header = fixtureHeader(samples: 9)
        let path = (src as NSString).appendingPathComponent(header.shard.shardFileName)
        let w = try ShardWriter(path: path, header: header, durable: false)
        for i in 0..<4 { _ = try w.append(fixtureRecord(index: i)) }
        // Half of a fifth record, as a kill in mid-write leaves it.
        let tmp = path + ".tmp"
        let full = try readBytes(tmp)
        _ = try w.append(fixtureRecord(index: 4))
        let longer = try readBytes(tmp)
        try writeBytes(Array(longer[..<(full.count + (longer.count - full.count) / 2)]), tmp)
        let before = try readBytes(tmp)

        let s = try snapshotDataset(src, out: out)
        #expect(s.records == 4 && s.samples == 4)
        #expect(verifyDataset(dir: out).ok)
        #expect(try readAllRecords(dir: out) == (0..<4).map { fixtureRecord(index: $0) })
        #expect(try readBytes(tmp) == before)
        // Nothing complete yet, or no shard at all: clear errors.
        #expect(throws: DataError.self) { try snapshotDataset(scratchDir("snap-empty"), out: scratchDir("snap-x")) }
        #expect(throws: DataError.self) { try snapshotDataset(src, out: src) }
        // The first N records only (nested subsets for the data-scaling curve); more than written: an error.
        let twoDir = scratchDir("snap-two")
        let two = try snapshotDataset(src, out: twoDir, records: 2)
        #expect(two.records == 2 && two.samples == 2)
        #expect(try readAllRecords(dir: twoDir) == (0..<2).map { fixtureRecord(index: $0) })
        #expect(throws: DataError.self) { try snapshotDataset(src, out: scratchDir("snap-nine"), records: 9) }
    }
}
