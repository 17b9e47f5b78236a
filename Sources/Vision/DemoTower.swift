import GGUF
import Kernels
import Llama
import Tokenizer

/// specdec's stand-in vision tower for a language model that has no real one (SmolLM2-135M).
///
/// It is a genuine llama.cpp `mmproj` file (projector `mlp`, CLIP-style ViT blocks) whose weights
/// are set by hand instead of trained, so that each 32×32 quadrant (patch) of the 64×64 input
/// becomes the language model's own embedding of the colour word nearest the patch's mean colour:
///
/// - the patch embedding averages each channel (pixels normalised to [-1, 1]) into feature
///   dims 0–2 (and their negatives in 3–5), and writes a large constant ± pattern into the
///   remaining "anchor" dims so that every LayerNorm sees an (almost) fixed scale and a zero mean;
/// - block 0's attention is zero; its MLP compares the squared distances to the palette colours
///   pairwise (a GELU unit pair per ordered pair of colours, saturating at 1) and adds to dim
///   6+k the number of colours nearer than colour k, so the nearest colour scores 0;
/// - block 1 is an identity block (llama.cpp, like this loader, skips an `mlp` tower's last block);
/// - the projector's first layer turns "score 0" into 1 and anything ≥ 1 into 0 (GELU), its second
///   maps that one-hot onto the token embeddings of the colour words (` red`, ` green`, ...), read
///   from the language model's own `token_embd.weight`.
///
/// The image thus reaches the model as four word vectors, top-left, top-right, bottom-left,
/// bottom-right, between the prompt markers `[Image:` and `]` + newline, which the file stores
/// (`specdec.image.prefix/suffix`). Four rows and these markers were chosen by measuring answers to
/// colour questions: SmolLM2-135M names the colour far more reliably than with 16 rows. It sees
/// colours and their layout by quadrant, not shapes.
public enum DemoTower {
    public struct Colour: Sendable {
        public var word: String
        public var rgb: (UInt8, UInt8, UInt8)
        public init(_ word: String, _ r: UInt8, _ g: UInt8, _ b: UInt8) { self.word = word; rgb = (r, g, b) }
    }

    /// Prototype colours (several may share a word) and the word each maps to.
    public static let palette: [Colour] = [
        Colour("red", 255, 0, 0), Colour("orange", 255, 150, 0), Colour("yellow", 255, 255, 0),
        Colour("green", 0, 128, 0), Colour("green", 0, 255, 0), Colour("blue", 0, 0, 255),
        Colour("blue", 0, 0, 128), Colour("cyan", 0, 255, 255), Colour("purple", 128, 0, 128),
        Colour("purple", 255, 0, 255), Colour("pink", 255, 182, 193), Colour("brown", 139, 69, 19),
        Colour("black", 0, 0, 0), Colour("white", 255, 255, 255), Colour("gray", 128, 128, 128),
    ]

    public static let imageSize = 64
    public static let patchSize = 32
    public static let width = 64
    static let anchor: Float = 300      // anchor magnitude A
    static let sharp: Float = 10        // s: a colour counts as nearer once its squared distance is 0.1 smaller
    static let gain: Float = 10         // G: GELU(G·t)/G ≈ max(t, 0)

    public enum BuildError: Error, CustomStringConvertible {
        case notOneToken(String, [Int32])
        case patchSize(Int)
        public var description: String {
            switch self {
            case .patchSize(let p): return "patch size \(p) does not divide the demo tower's \(imageSize)×\(imageSize) input"
            case .notOneToken(let w, let ids): return "the colour word ' \(w)' is \(ids.count) tokens in this vocabulary (\(ids)); the demo tower needs one"
            }
        }
    }

    /// Builds the tower for the language model in `model` (its width and token embeddings).
    /// `patchSize` (a divisor of 64) sets how many image positions the model sees: 32 gives the
    /// shipped four, 16 gives sixteen (used to ablate the adapter's query count K up to 17).
    public static func build(model f: GGUFFile, tokenizer: BPETokenizer, patchSize: Int = patchSize) throws -> GGUFWriter {
        guard patchSize >= 1, imageSize % patchSize == 0 else { throw BuildError.patchSize(patchSize) }
        let config = try LlamaConfig(gguf: f)
        guard let embInfo = f.tensorInfo("token_embd.weight"), let q = embInfo.type.quantType else {
            throw GGUFError(file: f.path, field: "token_embd.weight", reason: "missing or of an unsupported type")
        }
        let lmWidth = config.width
        let emb = PackedMatrix(type: q, rows: config.vocabSize, cols: lmWidth, data: f.data(of: embInfo))

        let k = palette.count
        let d = width, p = patchSize
        let ff = 2 * k * (k - 1)
        let lossDim = 6, negLossDim = 6 + k, firstAnchor = 6 + 2 * k
        let anchors = d - firstAnchor
        precondition(anchors > 0 && anchors % 2 == 0)
        // LayerNorm scale seen by every later layer: the anchors' RMS (the features add < 0.3%).
        let sigma = (Float(anchors) * anchor * anchor / Float(d)).squareRoot()

        // Palette in the tower's normalised space (pixel·2 − 1).
        let protos: [[Float]] = palette.map { c in [c.rgb.0, c.rgb.1, c.rgb.2].map { Float($0) / 255 * 2 - 1 } }
        func sq(_ v: [Float]) -> Float { v.reduce(0) { $0 + $1 * $1 } }

        var w = GGUFWriter()
        /// F16 where every value survives the round trip exactly (constants, zeros), else F32.
        func add(_ name: String, _ shape: [Int], _ v: [Float]) {
            let halves = v.map(floatToHalf)
            if zip(halves, v).allSatisfy({ halfToFloat($0) == $1 }) {
                var bytes = [UInt8](repeating: 0, count: 2 * v.count)
                for (i, h) in halves.enumerated() { bytes[2 * i] = UInt8(h & 0xFF); bytes[2 * i + 1] = UInt8(h >> 8) }
                w.addTensor(name, shape: shape, typeID: 1, bytes: bytes)
            } else {
                w.addTensor(name, shape: shape, floats: v)
            }
        }
        w.set("general.architecture", .string("clip"))
        w.set("general.name", .string("specdec demo tower for \(f["general.name"]?.stringValue ?? "the language model")"))
        w.set("general.description", .string(
            "Stand-in vision tower built by `specdec make-demo-tower`: hand-set (untrained) weights map each \(p)x\(p) patch's mean colour onto the language model's embedding of the nearest colour word. Not a real vision encoder."))
        w.set("clip.has_vision_encoder", .bool(true))
        w.set("clip.has_text_encoder", .bool(false))
        w.set("clip.projector_type", .string("mlp"))
        w.set("clip.use_gelu", .bool(true))
        w.set("clip.vision.image_size", .uint32(UInt32(imageSize)))
        w.set("clip.vision.patch_size", .uint32(UInt32(p)))
        w.set("clip.vision.embedding_length", .uint32(UInt32(d)))
        w.set("clip.vision.feed_forward_length", .uint32(UInt32(ff)))
        w.set("clip.vision.projection_dim", .uint32(UInt32(lmWidth)))
        w.set("clip.vision.block_count", .uint32(2))
        w.set("clip.vision.attention.head_count", .uint32(1))
        w.set("clip.vision.attention.layer_norm_epsilon", .float32(1e-6))
        let half = GGUFValue.array(elementType: .float32, [.float32(0.5), .float32(0.5), .float32(0.5)])
        w.set("clip.vision.image_mean", half)
        w.set("clip.vision.image_std", half)
        w.set(ImageMarkers.prefixKey, .string("[Image:"))
        w.set(ImageMarkers.suffixKey, .string("]\n"))
        w.set("specdec.demo.palette", .array(elementType: .string, palette.map {
            .string("\($0.rgb.0),\($0.rgb.1),\($0.rgb.2) -> \($0.word)")
        }))

        // Patch embedding: ggml [p, p, 3, d] = our (d, 3, p, p).
        var pe = [Float](repeating: 0, count: d * 3 * p * p)
        for c in 0..<3 {
            for i in 0..<(p * p) {
                pe[(c * 3 + c) * p * p + i] = 1 / Float(p * p)          // dim c: mean of channel c
                pe[((3 + c) * 3 + c) * p * p + i] = -1 / Float(p * p)   // dim 3+c: its negative
            }
        }
        add("v.patch_embd.weight", [p, p, 3, d], pe)
        var pb = [Float](repeating: 0, count: d)
        for a in 0..<anchors { pb[firstAnchor + a] = a % 2 == 0 ? anchor : -anchor }
        add("v.patch_embd.bias", [d], pb)
        let patches = (imageSize / p) * (imageSize / p)
        add("v.position_embd.weight", [d, patches], [Float](repeating: 0, count: d * patches))

        // Block 0's MLP: for each ordered pair (k, j), two units whose difference is
        // min(1, max(0, s·(dist²(x, p_k) − dist²(x, p_j)))), i.e. "j is nearer than k".
        var up = [Float](repeating: 0, count: ff * d), upb = [Float](repeating: 0, count: ff)
        var down = [Float](repeating: 0, count: d * ff)
        var u = 0
        for a in 0..<k {
            for b in 0..<k where b != a {
                // dist²(x,p_a) − dist²(x,p_b) = 2(p_b − p_a)·x − (|p_b|² − |p_a|²); LN2 hands us x/σ.
                for i in 0..<3 {
                    let wgt = gain * sharp * 2 * (protos[b][i] - protos[a][i]) * sigma
                    up[u * d + i] = wgt
                    up[(u + 1) * d + i] = wgt
                }
                let base = -gain * sharp * (sq(protos[b]) - sq(protos[a]))
                upb[u] = base
                upb[u + 1] = base - gain
                down[(lossDim + a) * ff + u] = 1 / gain
                down[(lossDim + a) * ff + u + 1] = -1 / gain
                down[(negLossDim + a) * ff + u] = -1 / gain
                down[(negLossDim + a) * ff + u + 1] = 1 / gain
                u += 2
            }
        }
        let ones = [Float](repeating: 1, count: d), zeros = [Float](repeating: 0, count: d)
        for l in 0..<2 {
            let b = "v.blk.\(l)."
            add(b + "ln1.weight", [d], ones)
            add(b + "ln1.bias", [d], zeros)
            for m in ["attn_q", "attn_k", "attn_v", "attn_out"] {
                add(b + m + ".weight", [d, d], [Float](repeating: 0, count: d * d))
                add(b + m + ".bias", [d], zeros)
            }
            add(b + "ln2.weight", [d], ones)
            add(b + "ln2.bias", [d], zeros)
            // Block 1 is an identity block: zero MLP.
            add(b + "ffn_up.weight", [d, ff], l == 0 ? up : [Float](repeating: 0, count: ff * d))
            add(b + "ffn_up.bias", [ff], l == 0 ? upb : [Float](repeating: 0, count: ff))
            add(b + "ffn_down.weight", [ff, d], l == 0 ? down : [Float](repeating: 0, count: d * ff))
            add(b + "ffn_down.bias", [d], zeros)
        }
        add("v.post_ln.weight", [d], ones)
        add("v.post_ln.bias", [d], zeros)

        // Projector: one-hot of the nearest colour, then its word's token embedding.
        var mm0 = [Float](repeating: 0, count: k * d), mm0b = [Float](repeating: gain, count: k)
        for a in 0..<k { mm0[a * d + lossDim + a] = -gain * 2 * sigma }
        var mm2 = [Float](repeating: 0, count: lmWidth * k)
        var row = [Float](repeating: 0, count: lmWidth)
        for (a, c) in palette.enumerated() {
            let ids = tokenizer.encode(" " + c.word, addBos: false)
            guard ids.count == 1 else { throw BuildError.notOneToken(c.word, ids) }
            row.withUnsafeMutableBufferPointer { emb.dequantize(row: Int(ids[0]), into: $0.baseAddress!) }
            for e in 0..<lmWidth { mm2[e * k + a] = row[e] / gain }
        }
        add("mm.0.weight", [d, k], mm0)
        add("mm.0.bias", [k], mm0b)
        add("mm.2.weight", [k, lmWidth], mm2)
        add("mm.2.bias", [lmWidth], [Float](repeating: 0, count: lmWidth))
        return w
    }

    /// The bundled example pictures (64×64 PNG): solid colours, a red square in the top-left
    /// quadrant on white, and a picture half red, half blue.
    public static func exampleImages() -> [(name: String, image: RGBImage)] {
        let s = imageSize
        var out: [(String, RGBImage)] = []
        let solids: [(String, (UInt8, UInt8, UInt8))] = [
            ("red", (230, 20, 30)), ("green", (20, 160, 40)), ("blue", (25, 40, 220)), ("yellow", (250, 225, 30)),
            ("purple", (120, 20, 140)), ("white", (250, 250, 250)), ("orange", (250, 140, 20)), ("black", (10, 10, 10)),
        ]
        func f(_ c: (UInt8, UInt8, UInt8)) -> (Float, Float, Float) { (Float(c.0) / 255, Float(c.1) / 255, Float(c.2) / 255) }
        for (n, c) in solids { out.append((n, RGBImage(width: s, height: s, fill: f(c)))) }
        let red = f((230, 20, 30)), blue = f((25, 40, 220))
        var square = RGBImage(width: s, height: s, fill: f((250, 250, 250)))
        var halves = square
        for y in 0..<s {
            for x in 0..<s {
                let i = 3 * (y * s + x)
                if x < s / 2 && y < s / 2 { (square.pixels[i], square.pixels[i + 1], square.pixels[i + 2]) = red }
                (halves.pixels[i], halves.pixels[i + 1], halves.pixels[i + 2]) = x < s / 2 ? red : blue
            }
        }
        out.append(("red-square", square))
        out.append(("red-blue", halves))
        return out
    }
}
