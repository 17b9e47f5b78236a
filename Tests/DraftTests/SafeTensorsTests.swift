import Foundation
import XCTest
import SafeTensors

final class SafeTensorsTests: XCTestCase {
    func sample() throws -> SafeTensorsWriter {
        var w = SafeTensorsWriter(metadata: ["format": "specdec-draft", "config": "{\"a\": 1}", "ünï\"code": "line\nbreak"])
        try w.add("f32", floats: [1, -2.5, 3.25, .infinity, 0, -0.0], shape: [2, 3], as: .F32)
        try w.add("f16", floats: [1, -2.5, 65504, 6e-8, 0.1], shape: [5], as: .F16)
        try w.add("bf16", floats: [1, -2.5, 3e38, 0.1, 7], shape: [5, 1], as: .BF16)
        try w.add("i32", int32s: [1, -2, .max, .min], shape: [4])
        try w.add("i64", int64s: [5, -6, 1 << 40], shape: [3])
        try w.add("u8", uint8s: [0, 1, 255], shape: [3])
        try w.add("scalar", floats: [42], shape: [], as: .F32)
        try w.add("empty", floats: [], shape: [0, 4], as: .F32)
        return w
    }

    func testRoundTripEveryDtype() throws {
        let w = try sample()
        let bytes = w.serialize()
        XCTAssertEqual(bytes, try sample().serialize(), "same input, same bytes")
        let headerLen = Int(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        XCTAssertEqual((8 + headerLen) % 8, 0, "data section 8-byte aligned")

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.safetensors").path
        try w.write(to: path)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["t.safetensors"], "no temporary file left")
        let f = try SafeTensorsFile(path: path)
        XCTAssertEqual(f.metadata, w.metadata)
        XCTAssertEqual(f.names, ["bf16", "empty", "f16", "f32", "i32", "i64", "scalar", "u8"])
        XCTAssertEqual(try f.floats("f32").map(\.bitPattern), [1, -2.5, 3.25, .infinity, 0, -0.0].map { Float($0).bitPattern })
        XCTAssertEqual(try f.shape("f32"), [2, 3])
        XCTAssertEqual(try f.dtype("f16"), .F16)
        let h = try f.floats("f16")
        XCTAssertEqual(h[0], 1); XCTAssertEqual(h[1], -2.5); XCTAssertEqual(h[2], 65504)
        XCTAssertEqual(h[3], 5.9604645e-8) // nearest subnormal
        XCTAssertEqual(h[4], 0.099975586)
        let b = try f.floats("bf16")
        XCTAssertEqual(b[0], 1); XCTAssertEqual(b[1], -2.5); XCTAssertEqual(b[4], 7)
        XCTAssertEqual(b[3], 0.10009765625)
        XCTAssertEqual(try f.shape("bf16"), [5, 1])
        XCTAssertEqual(try f.int32s("i32"), [1, -2, .max, .min])
        XCTAssertEqual(try f.int64s("i64"), [5, -6, 1 << 40])
        XCTAssertEqual(try f.int32s("u8"), [0, 1, 255])
        XCTAssertEqual(try f.bytes("u8"), [0, 1, 255])
        XCTAssertEqual(try f.floats("scalar"), [42]); XCTAssertEqual(try f.shape("scalar"), [])
        XCTAssertEqual(try f.floats("empty"), []); XCTAssertEqual(try f.shape("empty"), [0, 4])
        XCTAssertThrowsError(try f.floats("i32"))
        XCTAssertThrowsError(try f.floats("missing")) { e in
            XCTAssertTrue("\(e)".contains("missing"), "\(e)")
            XCTAssertTrue("\(e)".contains(path), "\(e)")
        }
        // Every tensor starts at a multiple of its element size.
        for n in f.names { let t = try f.info(n); XCTAssertEqual(t.byteRange.lowerBound % t.dtype.size, 0, n) }
        // Re-writing what was read gives the same bytes.
        var w2 = SafeTensorsWriter(metadata: f.metadata)
        for n in f.names { let t = try f.info(n); try w2.add(n, dtype: t.dtype, shape: t.shape, bytes: try f.bytes(n)) }
        XCTAssertEqual(w2.serialize(), bytes)
    }

    /// A file built from a hand-written header (bad on purpose) and `data` bytes.
    func file(header: String, data: [UInt8] = [UInt8](repeating: 0, count: 64), length: UInt64? = nil) -> [UInt8] {
        let h = Array(header.utf8)
        var out: [UInt8] = []
        withUnsafeBytes(of: (length ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
        return out + h + data
    }

    func assertRejected(_ bytes: [UInt8], field: String? = nil, _ what: String, line: UInt = #line) {
        XCTAssertThrowsError(try SafeTensorsFile(bytes: bytes, name: "bad.safetensors"), what, line: line) { e in
            guard let e = e as? SafeTensorsError else { return XCTFail("untyped error \(e)", line: line) }
            XCTAssertEqual(e.file, "bad.safetensors", line: line)
            if let field { XCTAssertEqual(e.field, field, "\(e)", line: line) }
            XCTAssertFalse("\(e)".contains("\n"), line: line)
        }
    }

    func testCorruptFilesRejected() throws {
        let ok = #"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"U8","shape":[3],"data_offsets":[16,19]}}"#
        XCTAssertNoThrow(try SafeTensorsFile(bytes: file(header: ok)))
        assertRejected([1, 2, 3], field: "header length", "shorter than the length")
        assertRejected(file(header: ok, length: 10_000), field: "header length", "header length past the end")
        assertRejected(file(header: ok, length: UInt64.max), field: "header length", "absurd header length")
        assertRejected(file(header: ok, length: 1 << 40), field: "header length", "huge header length")
        assertRejected(file(header: "{\"a\":"), field: "header", "invalid JSON")
        assertRejected(file(header: "[1,2]"), field: "header", "not an object")
        assertRejected(file(header: #"{"__metadata__":{"k":1}}"#), field: "__metadata__.k", "non-string metadata")
        assertRejected(file(header: #"{"a":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}}"#), field: "a.dtype", "unknown dtype")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#), field: "a.data_offsets", "dtype × shape ≠ bytes")
        assertRejected(file(header: #"{"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,16]}}"#), field: "a.data_offsets", "wrong dtype for shape")
        assertRejected(file(header: #"{"a":{"dtype":"U8","shape":[8],"data_offsets":[60,68]}}"#), field: "a.data_offsets", "out of range")
        assertRejected(file(header: #"{"a":{"dtype":"U8","shape":[8],"data_offsets":[8,0]}}"#), field: "a.data_offsets", "reversed")
        assertRejected(file(header: #"{"a":{"dtype":"U8","shape":[8],"data_offsets":[-8,0]}}"#), field: "a.data_offsets", "negative")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#), field: "b.data_offsets", "overlapping")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#), field: "a", "duplicate name")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#), field: "a.shape", "fractional dim")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,4]}}"#), field: "a.shape", "overflowing shape")
        assertRejected(file(header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999999]}}"#), field: "a.data_offsets", "huge offset")

        // A real file truncated at many byte positions: every prefix is rejected without a crash.
        let full = try sample().serialize()
        XCTAssertNoThrow(try SafeTensorsFile(bytes: full))
        let headerEnd = 8 + Int(full.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var cuts = [0, 1, 7, 8, 9, 20, headerEnd - 1, headerEnd, headerEnd + 1, full.count - 1]
        cuts += stride(from: 0, to: full.count, by: 13)
        for cut in cuts where cut < full.count {
            XCTAssertThrowsError(try SafeTensorsFile(bytes: Array(full[..<cut]), name: "cut"), "cut at \(cut)")
        }
        // Random single-byte corruption of the header never crashes (it may still parse).
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var b = full
            b[Int.random(in: 0..<headerEnd, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            _ = try? SafeTensorsFile(bytes: b)
        }
    }

    func testMissingFileIsTypedError() {
        XCTAssertThrowsError(try SafeTensorsFile(path: "/nonexistent/x.safetensors")) { e in
            XCTAssertEqual((e as? SafeTensorsError)?.file, "/nonexistent/x.safetensors")
        }
    }
}
