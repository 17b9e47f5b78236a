import Foundation
import GGUF
import Testing
import Vision

/// Rewrites the tiny mlp fixture with `edit` applied, as a file in memory.
func editedTower(_ edit: (inout GGUFWriter) -> Void) throws -> GGUFFile {
    let f = try GGUFFile(path: Fixtures.path("tiny-mlp.gguf"))
    var w = GGUFWriter()
    for (k, v) in f.metadata { w.set(k, v) }
    for t in f.tensors {
        let p = f.data(of: t)
        w.addTensor(t.name, shape: t.shape, typeID: t.type.id, bytes: Array(UnsafeRawBufferPointer(start: p, count: t.byteCount)))
    }
    edit(&w)
    return try GGUFFile(bytes: w.serialize(), name: "broken.gguf")
}

func expectTowerError(_ field: String, mentioning: String, sourceLocation: SourceLocation = #_sourceLocation,
                      _ edit: (inout GGUFWriter) -> Void) {
    do {
        _ = try VisionTower(file: try editedTower(edit))
        Issue.record("a broken tower loaded", sourceLocation: sourceLocation)
    } catch let e as GGUFError {
        #expect(e.file == "broken.gguf", sourceLocation: sourceLocation)
        #expect(e.field == field, "\(e)", sourceLocation: sourceLocation)
        #expect(e.description.contains(mentioning), "\(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}

struct BrokenTowerTests {
    @Test func unsupportedProjectorIsNamed() {
        expectTowerError("clip.projector_type", mentioning: "'qwen2vl_merger'") { $0.set("clip.projector_type", .string("qwen2vl_merger")) }
        expectTowerError("clip.projector_type", mentioning: "'ldp'") { $0.set("clip.projector_type", .string("ldp")) }
    }

    @Test func missingOrMisshapenTensors() {
        expectTowerError("v.blk.1.attn_q.weight", mentioning: "tensor missing") { w in
            w.tensors.removeAll { $0.name == "v.blk.1.attn_q.weight" }
        }
        expectTowerError("mm.2.weight", mentioning: "tensor missing") { w in w.tensors.removeAll { $0.name == "mm.2.weight" } }
        expectTowerError("v.position_embd.weight", mentioning: "expected [32, 17]") { w in
            let i = w.tensors.firstIndex { $0.name == "v.position_embd.weight" }!
            w.tensors[i].shape = [32, 16]
            w.tensors[i].bytes = Array(w.tensors[i].bytes[0..<(32 * 16 * 4)])
        }
        expectTowerError("v.blk.0.fused_thing.weight", mentioning: "unsupported variant") { w in
            w.addTensor("v.blk.0.fused_thing.weight", shape: [4], floats: [1, 2, 3, 4])
        }
    }

    @Test func badMetadata() {
        expectTowerError("clip.vision.image_size", mentioning: "missing") { w in w.metadata.removeAll { $0.key == "clip.vision.image_size" } }
        expectTowerError("clip.vision.patch_size", mentioning: "does not divide") { $0.set("clip.vision.patch_size", .uint32(7)) }
        expectTowerError("clip.vision.attention.head_count", mentioning: "does not divide") { $0.set("clip.vision.attention.head_count", .uint32(5)) }
        expectTowerError("clip.vision.image_mean", mentioning: "3 numbers") {
            $0.set("clip.vision.image_mean", .array(elementType: .float32, [.float32(0.5)]))
        }
        expectTowerError("clip.vision.image_grid_pinpoints", mentioning: "not supported") {
            $0.set("clip.vision.image_grid_pinpoints", .array(elementType: .int32, [.int32(336), .int32(672)]))
        }
        expectTowerError("clip.has_vision_encoder", mentioning: "no vision encoder") { $0.set("clip.has_vision_encoder", .bool(false)) }
    }

    @Test func truncatedTowerFile() throws {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.path("tiny-mlp.gguf"))))
        #expect(throws: GGUFError.self) { try VisionTower(file: GGUFFile(bytes: Array(bytes[0..<(bytes.count - 100)]), name: "cut.gguf")) }
        #expect(throws: GGUFError.self) { try VisionTower(path: "/nonexistent/tower.gguf") }
    }
}
