import Foundation
import GGUF
import Kernels
import Testing

/// A GGUF byte builder with every field under the test's control, so broken files can be made.
struct RawGGUF {
    struct Tensor { var name: String; var dims: [UInt64]; var type: UInt32; var offset: UInt64 }
    var magic: UInt32 = 0x4655_4747
    var version: UInt32 = 3
    var kvs: [(String, UInt32, [UInt8])] = []   // key, value type, encoded value
    var tensors: [Tensor] = []
    var tensorCountOverride: UInt64?
    var kvCountOverride: UInt64?
    var alignment = 32
    var data: [UInt8] = []

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }

    func bytes() -> [UInt8] {
        var b = Self.le(magic) + Self.le(version)
        b += Self.le(tensorCountOverride ?? UInt64(tensors.count)) + Self.le(kvCountOverride ?? UInt64(kvs.count))
        for (k, t, v) in kvs { b += Self.str(k) + Self.le(t) + v }
        for t in tensors {
            b += Self.str(t.name) + Self.le(UInt32(t.dims.count))
            for d in t.dims { b += Self.le(d) }
            b += Self.le(t.type) + Self.le(t.offset)
        }
        b += [UInt8](repeating: 0, count: (alignment - b.count % alignment) % alignment)
        return b + data
    }

    /// A small valid file: two F32 tensors and one Q8_0 tensor.
    static func valid() -> RawGGUF {
        var r = RawGGUF()
        r.kvs = [("general.architecture", 8, str("llama")), ("general.alignment", 4, le(UInt32(32)))]
        r.tensors = [Tensor(name: "a", dims: [4, 2], type: 0, offset: 0),
                     Tensor(name: "b", dims: [32], type: 8, offset: 32),
                     Tensor(name: "c", dims: [3], type: 0, offset: 96)]
        r.data = [UInt8](repeating: 0, count: 96 + 12)
        return r
    }
}

func parse(_ bytes: [UInt8]) throws -> GGUFFile { try GGUFFile(bytes: bytes, name: "test.gguf") }

/// Expects a GGUFError naming the test file and a field containing `field`.
func expectFailure(_ bytes: [UInt8], field: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try parse(bytes)
        Issue.record("parsed a broken file (expected an error about \(field))", sourceLocation: sourceLocation)
    } catch let e as GGUFError {
        #expect(e.file == "test.gguf", sourceLocation: sourceLocation)
        #expect(e.field.contains(field), "field was '\(e.field)': \(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("wrong error type \(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct GGUFReaderTests {
    @Test func roundTripsEveryValueTypeAndTensors() throws {
        var w = GGUFWriter()
        let values: [(String, GGUFValue)] = [
            ("u8", .uint8(200)), ("i8", .int8(-100)), ("u16", .uint16(60000)), ("i16", .int16(-30000)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000_000)),
            ("u64", .uint64(UInt64.max)), ("i64", .int64(Int64.min)),
            ("f32", .float32(-1.5)), ("f64", .float64(.pi)), ("t", .bool(true)), ("f", .bool(false)),
            ("s", .string("héllo\n<|im_start|>")), ("empty", .string("")),
            ("arr", .array(elementType: .int32, [.int32(1), .int32(-2)])),
            ("strs", .array(elementType: .string, [.string("a"), .string("")])),
            ("nested", .array(elementType: .array, [.array(elementType: .uint8, [.uint8(1)]), .array(elementType: .float32, [])])),
            ("none", .array(elementType: .float64, [])),
        ]
        for (k, v) in values { w.set(k, v) }
        let floats: [Float] = (0..<12).map { Float($0) - 5.5 }
        w.addTensor("m", shape: [4, 3], floats: floats)
        w.addTensor("q", shape: [32], typeID: QuantType.q8_0.rawValue, bytes: [UInt8](repeating: 7, count: 34))
        w.addTensor("v", shape: [1], floats: [42])
        let f = try parse(w.serialize())
        #expect(f.version == 3)
        #expect(f.metadata.map(\.key) == values.map(\.0))
        for (k, v) in values { #expect(f[k] == v, "\(k)") }
        #expect(f.tensors.map(\.name) == ["m", "q", "v"])
        let m = f.tensorInfo("m")!
        #expect(m.shape == [4, 3] && m.rowCount == 3 && m.byteCount == 48 && m.type.quantType == .f32)
        let p = f.data(of: m).bindMemory(to: Float.self, capacity: 12)
        #expect(Array(UnsafeBufferPointer(start: p, count: 12)) == floats)
        for t in f.tensors { #expect(t.fileOffset % 32 == 0 && (t.fileOffset - f.dataOffset) == t.relativeOffset) }
        #expect(f.tensorInfo("q")!.byteCount == 34)
        #expect(try f.int("u32") == 4_000_000_000 && f.double("f32") == -1.5 && f.string("s") == "héllo\n<|im_start|>")
        #expect(throws: GGUFError.self) { try f.string("u8") }
        #expect(throws: GGUFError.self) { try f.int("missing") }
    }

    @Test func writesAtomicallyAndReadsFromDisk() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x.gguf").path
        var w = GGUFWriter()
        w.set("general.alignment", .uint32(64))
        w.alignment = 64
        w.addTensor("a", shape: [2], floats: [1, 2])
        w.addTensor("b", shape: [2], floats: [3, 4])
        try w.write(to: path)
        let f = try GGUFFile(path: path)
        #expect(f.alignment == 64 && f.tensorInfo("b")!.relativeOffset == 64)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["x.gguf"])
        #expect(throws: GGUFError.self) { try GGUFFile(path: dir.appendingPathComponent("nope.gguf").path) }
        #expect(throws: GGUFError.self) { try GGUFFile(path: dir.path) }
    }

    @Test func validFixtureParses() throws {
        let f = try parse(RawGGUF.valid().bytes())
        #expect(f.tensors.count == 3)
    }

    @Test func everyTruncationIsATypedError() {
        let full = RawGGUF.valid().bytes()
        for n in 0..<full.count {
            do {
                _ = try parse(Array(full.prefix(n)))
                Issue.record("parsed a file truncated to \(n) of \(full.count) bytes")
            } catch let e as GGUFError {
                #expect(e.file == "test.gguf" && !e.field.isEmpty)
            } catch {
                Issue.record("truncated to \(n): wrong error \(error)")
            }
        }
    }

    @Test func brokenHeaders() {
        var r = RawGGUF.valid(); r.magic = 0x4655_4748
        expectFailure(r.bytes(), field: "magic")
        r = .valid(); r.version = 1
        expectFailure(r.bytes(), field: "version")
        r = .valid(); r.tensorCountOverride = 1 << 60
        expectFailure(r.bytes(), field: "tensor_count")
        r = .valid(); r.kvCountOverride = UInt64.max
        expectFailure(r.bytes(), field: "metadata_kv_count")
        r = .valid(); r.kvCountOverride = 3
        expectFailure(r.bytes(), field: "tensor[0].name")   // a tensor info read as a key derails the parse
    }

    @Test func brokenMetadata() {
        var r = RawGGUF.valid()
        r.kvs.append(("bad", 13, []))
        expectFailure(r.bytes(), field: "bad")
        r = .valid()
        r.kvs[0].2 = RawGGUF.le(UInt64(1 << 40)) + Array("llama".utf8)   // string length past the end
        expectFailure(r.bytes(), field: "general.architecture")
        r = .valid()
        r.kvs.append(("arr", 9, RawGGUF.le(UInt32(99)) + RawGGUF.le(UInt64(1))))  // unknown element type
        expectFailure(r.bytes(), field: "arr")
        r = .valid()
        r.kvs.append(("arr", 9, RawGGUF.le(UInt32(4)) + RawGGUF.le(UInt64(1) << 62)))  // count past the end
        expectFailure(r.bytes(), field: "arr")
        r = .valid()
        r.kvs.append(("b", 7, [2]))
        expectFailure(r.bytes(), field: "b")
        r = .valid()
        r.kvs.append(("general.architecture", 8, RawGGUF.str("x")))
        expectFailure(r.bytes(), field: "general.architecture")
        r = .valid()
        r.kvs[1].2 = RawGGUF.le(UInt32(24))
        expectFailure(r.bytes(), field: "general.alignment")
        r = .valid()
        r.kvs[1] = ("general.alignment", 5, RawGGUF.le(Int32(32)))
        expectFailure(r.bytes(), field: "general.alignment")
        // Deeply nested arrays are refused before they exhaust the stack.
        var deep = RawGGUF.le(UInt32(4)) + RawGGUF.le(UInt64(0))
        for _ in 0..<20 { deep = RawGGUF.le(UInt32(9)) + RawGGUF.le(UInt64(1)) + deep }
        r = .valid()
        r.kvs.append(("deep", 9, deep))
        expectFailure(r.bytes(), field: "deep")
    }

    @Test func brokenTensorInfos() {
        var r = RawGGUF.valid(); r.tensors[1].type = 200
        expectFailure(r.bytes(), field: "tensor 'b'.type")
        r = .valid(); r.tensors[1].offset = 33
        expectFailure(r.bytes(), field: "tensor 'b'.offset")
        r = .valid(); r.tensors[2].offset = 1 << 40
        expectFailure(r.bytes(), field: "tensor 'c'.offset")
        r = .valid(); r.tensors[2].offset = 128   // aligned but the data runs past the end
        expectFailure(r.bytes(), field: "tensor 'c'.data")
        r = .valid(); r.tensors[0].dims = []
        expectFailure(r.bytes(), field: "tensor 'a'.n_dims")
        r = .valid(); r.tensors[0].dims = [1, 1, 1, 1, 1]
        expectFailure(r.bytes(), field: "tensor 'a'.n_dims")
        r = .valid(); r.tensors[0].dims = [4, 0]
        expectFailure(r.bytes(), field: "tensor 'a'.ne[1]")
        r = .valid(); r.tensors[0].dims = [1 << 31, 1 << 31, 1 << 31]
        expectFailure(r.bytes(), field: "tensor 'a'")
        r = .valid(); r.tensors[1].dims = [16]   // not a whole Q8_0 block
        expectFailure(r.bytes(), field: "tensor 'b'.ne[0]")
        r = .valid(); r.tensors[2].name = "a"
        expectFailure(r.bytes(), field: "tensor 'a'")
    }

    @Test func unsupportedButKnownTypesParseAndSayWhatTheyAre() throws {
        var r = RawGGUF.valid(); r.tensors[1].type = 6   // Q5_0: valid file, no kernels
        r.tensors[1].dims = [32]
        let f = try parse(r.bytes())
        #expect(f.tensorInfo("b")!.type.name == "Q5_0")
        #expect(f.tensorInfo("b")!.type.quantType == nil)
    }
}
