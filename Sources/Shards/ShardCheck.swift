#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GGUF

/// What `verifyShard` found.
public struct ShardCheck: Sendable {
    public var path: String
    public var faults: [DataError] = []
    public var header: ShardHeader?
    public var entries: [IndexEntry] = []
    public var bytes = 0
    public var stopReasons: [String: Int] = [:]
}

/// Checks every byte of a finished shard: structure, CRCs, zstd checksums, every record decodes and
/// agrees with the index and header, the sample indices are exactly the shard's.
public func verifyShard(path: String, maxFaults: Int = 20) -> ShardCheck {
    let bytes: [UInt8]
    do { bytes = try readWholeFile(path) } catch let e as DataError {
        var c = ShardCheck(path: path); c.faults.append(e); return c
    } catch {
        var c = ShardCheck(path: path); c.faults.append(DataError(file: path, field: "file", reason: "\(error)")); return c
    }
    return verifyShard(bytes: bytes, path: path, maxFaults: maxFaults)
}

/// `verifyShard` on bytes already in memory; `path` names them in faults.
public func verifyShard(bytes: [UInt8], path: String, maxFaults: Int = 20) -> ShardCheck {
    var c = ShardCheck(path: path)
    let reader: ShardReader
    do {
        reader = try ShardReader(bytes: bytes, path: path)
    } catch let e as DataError {
        c.faults.append(e)
        // Say how much of it is intact.
        do {
            let b = bytes
            c.bytes = b.count
            let dctx = Zstd.Decompressor()
            if (try? ShardParser.checkPrologue(b, file: path)) != nil, let (h, _, hs) = try? ShardParser.header(b, file: path, dctx: dctx) {
                c.header = h
                let s = ShardParser.scan(b, from: ShardLayout.prologueSize + hs, header: h, file: path, dctx: dctx)
                switch s.end {
                case .truncated(let at):
                    c.faults.append(DataError(file: path, field: "record[\(s.entries.count)]", offset: at, reason: "the file ends inside this frame (\(s.entries.count) complete records before it)"))
                case .corrupt(let err) where err != e:
                    c.faults.append(err)
                default: break
                }
            }
        }
        return c
    } catch {
        c.faults.append(DataError(file: path, field: "file", reason: "\(error)"))
        return c
    }
    c.header = reader.header
    c.entries = reader.entries
    c.bytes = reader.fileSize
    for k in 0..<reader.recordCount {
        do {
            let r = try reader.record(k)
            for s in r.stopReasons { c.stopReasons[s, default: 0] += 1 }
        } catch let e as DataError {
            c.faults.append(e)
            if c.faults.count >= maxFaults { break }
        } catch {
            c.faults.append(DataError(file: path, field: "record[\(k)]", reason: "\(error)"))
        }
    }
    let h = reader.header
    let expected = h.shard.indices(samples: h.samples).underestimatedCount
    if reader.recordCount != expected {
        c.faults.append(DataError(file: path, field: "records", reason: "\(reader.recordCount) records, but shard \(h.shard) of \(h.samples) samples should hold \(expected)"))
    }
    return c
}
