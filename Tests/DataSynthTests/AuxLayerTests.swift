import Foundation
import GGUF
import Llama
import Testing
import TestSupport
import DataSynth
import Shards

/// Format version 2: the residual streams entering `hidden.aux_layers` (EAGLE-3's features).
func auxHeader(layers: [Int]? = [2, 15, 27], hidden: HiddenEncoding = .fp16, samples: Int = 4) -> ShardHeader {
    var g = GenerationSettings()
    g.maxNew = 8
    return ShardHeader(model: ModelInfo(file: "tiny.gguf", sha256: String(repeating: "ab", count: 32), architecture: "llama",
                                        width: fixtureWidth, vocabSize: 1000, layers: 30),
                       source: SourceInfo(kind: "generate-text", seed: 7), generation: g, hidden: hidden,
                       zstdLevel: 3, samples: samples, shard: ShardSpec(index: 0, count: 1), auxLayers: layers)
}

func auxRecord(index: Int, layers: Int, hidden: HiddenEncoding = .fp16) -> SampleRecord {
    var r = fixtureRecord(index: index, hidden: hidden)
    var g = Lcg(s: UInt64(index) &+ 7)
    let n = r.tokens.count
    r.auxHidden = (0..<layers).map { l in
        HiddenStates.encode((0..<(n * fixtureWidth)).map { _ in g.float() * Float(l + 1) * 4 }, rows: n, width: fixtureWidth, as: hidden)
    }
    return r
}

@Suite struct AuxLayerFormatTests {
    @Test(arguments: [HiddenEncoding.fp16, .int8])
    func recordRoundTripsAuxStates(encoding: HiddenEncoding) throws {
        let r = auxRecord(index: 2, layers: 3, hidden: encoding)
        let back = try SampleRecord.decode(r.payload(), file: "mem", field: "record", expectedEncoding: encoding,
                                           expectedWidth: fixtureWidth, expectedAuxLayers: 3)
        #expect(back == r)
        #expect(back.auxHidden.count == 3)
        // Side by side per position: row t = [layer 0 ; layer 1 ; layer 2].
        let f = back.auxFeatures(), n = r.tokens.count, w = fixtureWidth
        #expect(f.count == n * 3 * w)
        let l1 = back.auxHidden[1].floats()
        #expect(f[(4 * 3 + 1) * w + 5] == l1[4 * w + 5])
        // Every layer keeps its own int8 scales (the layers' magnitudes differ).
        if encoding == .int8 { #expect(back.auxHidden[0].scales != back.auxHidden[2].scales) }
    }

    @Test func headerRecordsTheLayersAndVersion() throws {
        let h = auxHeader()
        #expect(h.version == 2 && h.hidden.auxLayers == [2, 15, 27])
        let json = String(decoding: h.jsonBytes(), as: UTF8.self)
        #expect(json.contains("\"aux_layers\":[2,15,27]"), "\(json)")
        #expect(json.contains("\"name\":\"aux_hidden\""))
        // Without layers the header is version 1's, byte for byte (old shards resume and compare equal).
        let v1 = auxHeader(layers: nil)
        #expect(v1.version == 1 && !String(decoding: v1.jsonBytes(), as: UTF8.self).contains("aux"))
    }

    @Test func shardRoundTripsAndOldShardsStillRead() throws {
        for encoding in [HiddenEncoding.fp16, .int8] {
            let dir = scratchDir("aux")
            let header = auxHeader(hidden: encoding)
            let path = (dir as NSString).appendingPathComponent(header.shard.shardFileName)
            let w = try ShardWriter(path: path, header: header)
            for i in 0..<header.samples { try w.append(auxRecord(index: i, layers: 3, hidden: encoding)) }
            try w.finish()
            let reader = try ShardReader(path: path)
            #expect(reader.header == header && reader.header.version == 2)
            for k in 0..<header.samples { #expect(try reader.record(k) == auxRecord(index: k, layers: 3, hidden: encoding)) }
            #expect(verifyShard(path: path).faults.isEmpty)
        }
        // A version-1 shard (no aux field) reads as before, with no aux states.
        let dir = scratchDir("aux-v1")
        let path = try writeFixtureShard(dir: dir, header: fixtureHeader(samples: 2))
        let reader = try ShardReader(path: path)
        #expect(reader.header.version == 1 && reader.header.hidden.auxLayers == nil)
        #expect(try reader.record(0).auxHidden.isEmpty)
    }

    @Test func missingOrBadAuxFieldsAreClearErrors() throws {
        // The header announces 3 layers, the record holds 2.
        let two = auxRecord(index: 0, layers: 2).payload()
        let e1 = #expect(throws: DataError.self) {
            try SampleRecord.decode(two, file: "x.sds", field: "record[0]", expectedEncoding: .fp16, expectedWidth: fixtureWidth, expectedAuxLayers: 3)
        }
        #expect(e1?.field == "record[0].aux_layers" && e1?.reason.contains("2 auxiliary") == true, "\(String(describing: e1))")
        // A record whose aux section is cut short.
        var cut = auxRecord(index: 0, layers: 3).payload()
        cut.removeLast(10)
        let e2 = #expect(throws: DataError.self) { try SampleRecord.decode(cut, file: "x.sds", field: "record[0]") }
        #expect(e2?.field == "record[0].length", "\(String(describing: e2))")
        // Headers: version 2 without layers, version 1 with layers, a layer the model lacks.
        var noLayers = auxHeader(); noLayers.hidden.auxLayers = nil
        var v1WithLayers = auxHeader(layers: nil); v1WithLayers.hidden.auxLayers = [3]
        let outside = auxHeader(layers: [2, 30])
        for (h, why) in [(noLayers, "version 2 needs"), (v1WithLayers, "version-1 header"), (outside, "layer 30")] {
            let dir = scratchDir("aux-bad")
            let path = (dir as NSString).appendingPathComponent(h.shard.shardFileName)
            let w = try ShardWriter(path: path, header: h)
            try w.finish()
            let e = #expect(throws: DataError.self) { try ShardReader(path: path) }
            #expect(e?.field == "header.hidden.aux_layers" && e?.reason.contains(why) == true, "\(String(describing: e))")
        }
    }
}

/// The real target: `synth-data --hidden-layers` stores exactly what a batched forward captures.
@Suite(.serialized) struct AuxLayerSynthTests {
    @Test func cliStoresTheInputsOfTheNamedLayers() throws {
        let d = scratchDir("aux-synth")
        let args = ["synth-data", "--prompts", Reference.promptsFile, "--samples", "1", "--max-new", "3", "--system", "Be brief.",
                    "--no-long-answer", "--out", d, "-t", "2", "--hidden-layers", "eagle3"]
        let r = try Specdec.run(args)
        #expect(r.status == 0, "\(r.stderr)")
        let reader = try ShardReader(path: (d as NSString).appendingPathComponent("shard-00000-of-00001.sds"))
        #expect(reader.header.version == 2 && reader.header.hidden.auxLayers == [2, 15, 27])
        let rec = try reader.record(0)
        #expect(rec.auxHidden.count == 3)
        let model = try LlamaModel(file: try GGUFFile(path: TestPaths.model), threads: 2)
        let session = model.makeSession(contextSize: rec.tokens.count)
        let out = try session.forward(tokens: rec.tokens, logits: .none, captureLayers: [1, 14, 26])
        #expect(out.hidden.map(floatToHalfForTest) == rec.hidden.halves)
        for (k, l) in [1, 14, 26].enumerated() {
            #expect(out.layerStates[l]!.map(floatToHalfForTest) == rec.auxHidden[k].halves, "layer input \(l + 1)")
        }
        // Other layers, or none, against this folder: refused (different header).
        let again = try Specdec.run(Array(args.dropLast(2)) + ["--hidden-layers", "2,15"])
        #expect(again.status != 0 && again.stderr.contains("hidden"), "\(again.stderr)")
    }
}
