import Foundation
import GGUF
import Kernels
import Llama
import Tokenizer

/// specdec's stand-in vision tower for a language model that has no real one (SmolLM2-135M).
///
/// It is a genuine llama.cpp `mmproj` file (projector `mlp`, CLIP-style ViT blocks) whose weights
/// are set by hand instead of trained, so that each 32×32 quadrant (patch) of the 64×64 input
/// becomes the language model's own embedding of the colour word whose palette colour is nearest
/// the patch's mean colour in CIELAB (D65 white, sRGB gamma expanded), i.e. by perceived colour
/// difference (CIE76 ΔE), not by raw RGB distance:
///
/// - the patch embedding averages each channel (pixels normalised to [-1, 1]) into feature
///   dims 0–2, and writes a large constant ± pattern into the remaining "anchor" dims so that every
///   LayerNorm sees an (almost) fixed scale and a zero mean (every feature is written twice, as
///   itself and its negative, so it adds nothing to the mean);
/// - the attention of every block is zero; the blocks' GELU MLPs (GELU(G·t)/G ≈ max(t, 0) with a
///   large G) compute piecewise-linear functions:
///   - block 0: the sRGB gamma expansion of each channel, exact at every 8-bit level (one kink per
///     level), mixed straight into X/Xn, Y/Yn, Z/Zn (the linear RGB → XYZ matrix lives in the
///     down projection);
///   - block 1: CIELAB's cube-root f(t) of each of the three, with 251 kinks spaced evenly in
///     ∛t (under 0.01 ΔE of error), mixed into L*, a*, b* (stored /100);
///   - block 2: compares the squared CIELAB distances to the palette colours pairwise (a GELU
///     unit pair per ordered pair of colours, saturating at 1 once the difference reaches
///     1 ΔE²) and adds to dim `lossDim`+k the number of colours nearer than colour k, so the
///     nearest colour scores 0. This works because d²(x, p_a) − d²(x, p_b) is *linear* in x's
///     L*a*b* (the |x|² terms cancel), so once the earlier blocks have produced L*a*b* one ReLU
///     layer decides every pair exactly as a CIELAB nearest-neighbour search would;
/// - block 3 is an identity block (llama.cpp, like this loader, skips an `mlp` tower's last block);
/// - the projector's first layer turns "score 0" into 1 and anything ≥ 1 into 0 (GELU), its second
///   maps that one-hot onto the token embeddings of the colour words (` red`, ` green`, ...), read
///   from the language model's own `token_embd.weight`.
///
/// Why this and not nearest-in-RGB: RGB distance is not perceptual (a dark red such as
/// (205, 35, 40) sits about as far from pure red as from brown, and a warm yellow such as
/// (240, 215, 40) drifts toward orange), so the names of held-out colours were often wrong. Why
/// piecewise-linear CIELAB rather than re-weighting RGB: no fixed prototypes or metric in a
/// space linear in RGB reproduce the curved CIELAB decision boundaries; computing L*a*b* first
/// does, and keeps the tower an ordinary ViT that llama.cpp runs unchanged. The computed L*a*b*
/// is within 0.006 of the exact value for every 8-bit colour; over all 2²⁴ solid colours the
/// nearest word then differs from the exact CIELAB argmin for 268, all within 0.6 ΔE² (squared
/// distances) of a tie, and colours within 1 ΔE² of a tie between two palette colours (about
/// 0.07%) get a blend of the two words' embeddings (the comparison ramp's width).
///
/// The image thus reaches the model as four word vectors, top-left, top-right, bottom-left,
/// bottom-right, between the prompt markers `[Image:` and `]` + newline, which the file stores
/// (`specdec.image.prefix/suffix`). Four rows and these markers were chosen by measuring answers to
/// colour questions: SmolLM2-135M names the colour far more reliably than with 16 rows. It sees
/// colours and their layout by quadrant, not shapes.
///
/// Tensor types follow llama.cpp's own converter: every 1-D tensor (biases, norm weights) and the
/// position embedding are F32 (ggml's CPU add/mul refuse an F16 second operand); a matrix is F16
/// when every value survives the round trip exactly (zeros, the patch mean's 1/1024), else F32.
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
    static let sharp: Double = 1        // s: a colour counts as nearer once its squared ΔE is 1/s smaller
    static let gain: Float = 10         // G of the comparison and the projector: GELU(G·t)/G ≈ max(t, 0)
    static let rampGain: Double = 10_000 // G of the piecewise-linear blocks 0 and 1 (kinks ≪ one 8-bit level wide)

    /// sRGB (IEC 61966-2-1) → XYZ, and the D65 white point.
    static let rgbToXYZ: [[Double]] = [[0.4124564, 0.3575761, 0.1804375],
                                       [0.2126729, 0.7151522, 0.0721750],
                                       [0.0193339, 0.1191920, 0.9503041]]
    static let whiteD65: [Double] = [0.95047, 1.0, 1.08883]
    /// The sRGB gamma expansion of a value in [0, 1].
    static func linearize(_ v: Double) -> Double { v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4) }
    /// CIELAB's f(t).
    static func labF(_ t: Double) -> Double {
        let e = 6.0 / 29
        return t > e * e * e ? cbrt(t) : t / (3 * e * e) + 4.0 / 29
    }
    /// Exact CIELAB (D65) of an 8-bit sRGB colour.
    public static func lab(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> [Double] {
        let lin = [r, g, b].map { linearize(Double($0) / 255) }
        let f = (0..<3).map { i in labF((0..<3).reduce(0) { $0 + rgbToXYZ[i][$1] * lin[$1] } / whiteD65[i]) }
        return [116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])]
    }

    /// A piecewise-linear interpolant of (knots[i], values[i]) as a constant plus ramps:
    /// value(t) = constant + Σ slopeChange[i]·max(0, t − kink[i]). The first ramp starts 0.01
    /// before the first knot so that inputs at the first knot (0) never sit on a kink.
    static func ramps(knots: [Double], values: [Double]) -> (constant: Double, kink: [Double], slopeChange: [Double]) {
        var kink: [Double] = [], change: [Double] = [], prev = 0.0
        for i in 0..<(knots.count - 1) {
            let slope = (values[i + 1] - values[i]) / (knots[i + 1] - knots[i])
            kink.append(i == 0 ? knots[0] - 0.01 : knots[i])
            change.append(slope - prev)
            prev = slope
        }
        return (values[0] - 0.01 * change[0], kink, change)
    }

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
        // Residual dims: mean RGB, X/Xn Y/Yn Z/Zn, L*a*b*/100 (each followed by its negative),
        // then the "nearer colours" counts and their negatives, then the anchors.
        let rgbDim = 0, xyzDim = 6, labDim = 12, lossDim = 18, negLossDim = 18 + k, firstAnchor = 18 + 2 * k
        let anchors = d - firstAnchor
        precondition(anchors > 0 && anchors % 2 == 0)
        // LayerNorm scale seen by every later layer: the anchors’ RMS (the features add < 0.1%).
        let sigma = (Double(anchors) * Double(anchor * anchor) / Double(d)).squareRoot()

        // Block 0: gamma expansion, knots at the 256 8-bit levels (exact there).
        let levels = (0...255).map { Double($0) / 255 }
        let gamma = ramps(knots: levels, values: levels.map(linearize))
        // Block 1: f(t), knots at 0, at the linear part's end (6/29)³, and evenly in ∛t up to 1
        // (t = 1 is white; the last piece extends past it).
        let e = 6.0 / 29, nCube = 251
        let fKnots = [0.0] + (0...nCube).map { i -> Double in let c = e + (1 - e) * Double(i) / Double(nCube); return c * c * c }
        let cube = ramps(knots: fKnots, values: fKnots.map(labF))
        let ff = max(3 * gamma.kink.count, 3 * cube.kink.count, 2 * k * (k - 1))

        // Palette in CIELAB.
        let protos: [[Double]] = palette.map { lab($0.rgb.0, $0.rgb.1, $0.rgb.2) }
        func sq(_ v: [Double]) -> Double { v.reduce(0) { $0 + $1 * $1 } }

        var w = GGUFWriter()
        func f32(_ name: String, _ shape: [Int], _ v: [Float]) { w.addTensor(name, shape: shape, floats: v) }
        /// Matrices: F16 where every value survives the round trip exactly (constants, zeros), else F32.
        func matrix(_ name: String, _ shape: [Int], _ v: [Float]) {
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
            "Stand-in vision tower built by `specdec make-demo-tower`: hand-set (untrained) weights map each \(p)x\(p) patch's mean colour onto the language model's embedding of the colour word nearest in CIELAB (D65). Not a real vision encoder."))
        w.set("clip.has_vision_encoder", .bool(true))
        w.set("clip.has_text_encoder", .bool(false))
        w.set("clip.projector_type", .string("mlp"))
        w.set("clip.use_gelu", .bool(true))
        w.set("clip.vision.image_size", .uint32(UInt32(imageSize)))
        w.set("clip.vision.patch_size", .uint32(UInt32(p)))
        w.set("clip.vision.embedding_length", .uint32(UInt32(d)))
        w.set("clip.vision.feed_forward_length", .uint32(UInt32(ff)))
        w.set("clip.vision.projection_dim", .uint32(UInt32(lmWidth)))
        w.set("clip.vision.block_count", .uint32(4))
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
        w.set("specdec.demo.colour_space", .string("CIELAB D65 (sRGB gamma expanded), nearest palette colour by CIE76 delta E"))

        // Patch embedding: ggml [p, p, 3, d] = our (d, 3, p, p).
        var pe = [Float](repeating: 0, count: d * 3 * p * p)
        for c in 0..<3 {
            for i in 0..<(p * p) {
                pe[((rgbDim + c) * 3 + c) * p * p + i] = 1 / Float(p * p)          // dim c: mean of channel c
                pe[((rgbDim + 3 + c) * 3 + c) * p * p + i] = -1 / Float(p * p)     // dim 3+c: its negative
            }
        }
        matrix("v.patch_embd.weight", [p, p, 3, d], pe)
        var pb = [Float](repeating: 0, count: d)
        for a in 0..<anchors { pb[firstAnchor + a] = a % 2 == 0 ? anchor : -anchor }
        f32("v.patch_embd.bias", [d], pb)
        let patches = (imageSize / p) * (imageSize / p)
        f32("v.position_embd.weight", [d, patches], [Float](repeating: 0, count: d * patches))

        // MLP weights of blocks 0–2, built in Double, stored as Float. LN2 hands each block x/σ.
        var up = [[Double]](repeating: [Double](repeating: 0, count: ff * d), count: 3)
        var upb = [[Double]](repeating: [Double](repeating: 0, count: ff), count: 3)
        var down = [[Double]](repeating: [Double](repeating: 0, count: d * ff), count: 3)
        var downb = [[Double]](repeating: [Double](repeating: 0, count: d), count: 3)
        let rg = rampGain
        /// Output dim `o` (and its negative at `o + 3`) gets `c`·(ramp unit `u`).
        func out(_ l: Int, _ o: Int, _ u: Int, _ c: Double) { down[l][o * ff + u] += c / rg; down[l][(o + 3) * ff + u] -= c / rg }
        func outBias(_ l: Int, _ o: Int, _ c: Double) { downb[l][o] += c; downb[l][o + 3] -= c }

        // Block 0: unit (c, j) = G·max(0, v_c − kink_j) with v_c = (x_c + 1)/2 the channel in [0, 1];
        // X/Xn, Y/Yn, Z/Zn = Σ_c M[i][c]/W[i]·γ(v_c).
        for c in 0..<3 {
            for (j, kink) in gamma.kink.enumerated() {
                let u = c * gamma.kink.count + j
                up[0][u * d + rgbDim + c] = rg * sigma / 2
                upb[0][u] = rg * (0.5 - kink)
                for i in 0..<3 { out(0, xyzDim + i, u, rgbToXYZ[i][c] / whiteD65[i] * gamma.slopeChange[j]) }
            }
        }
        for i in 0..<3 { outBias(0, xyzDim + i, (0..<3).reduce(0) { $0 + rgbToXYZ[i][$1] } / whiteD65[i] * gamma.constant) }

        // Block 1: f of each of X/Xn, Y/Yn, Z/Zn, then L*/100 = 1.16 fY − 0.16, a*/100 = 5(fX − fY),
        // b*/100 = 2(fY − fZ).
        let labOfF: [[Double]] = [[0, 1.16, 0], [5, -5, 0], [0, 2, -2]]
        for c in 0..<3 {
            for (j, kink) in cube.kink.enumerated() {
                let u = c * cube.kink.count + j
                up[1][u * d + xyzDim + c] = rg * sigma
                upb[1][u] = -rg * kink
                for i in 0..<3 where labOfF[i][c] != 0 { out(1, labDim + i, u, labOfF[i][c] * cube.slopeChange[j]) }
            }
        }
        for i in 0..<3 { outBias(1, labDim + i, labOfF[i].reduce(0, +) * cube.constant - (i == 0 ? 0.16 : 0)) }

        // Block 2: for each ordered pair (a, b), two units whose difference is
        // min(1, max(0, s·(d²(x, p_a) − d²(x, p_b)))), i.e. "b is nearer than a", in ΔE².
        var u = 0
        let g = Double(gain)
        for a in 0..<k {
            for b in 0..<k where b != a {
                // d²(x,p_a) − d²(x,p_b) = 2(p_b − p_a)·x − (|p_b|² − |p_a|²), x = 100·σ·(LN output).
                for i in 0..<3 {
                    let wgt = g * sharp * 2 * (protos[b][i] - protos[a][i]) * 100 * sigma
                    up[2][u * d + labDim + i] = wgt
                    up[2][(u + 1) * d + labDim + i] = wgt
                }
                let base = -g * sharp * (sq(protos[b]) - sq(protos[a]))
                upb[2][u] = base
                upb[2][u + 1] = base - g
                down[2][(lossDim + a) * ff + u] = 1 / g
                down[2][(lossDim + a) * ff + u + 1] = -1 / g
                down[2][(negLossDim + a) * ff + u] = -1 / g
                down[2][(negLossDim + a) * ff + u + 1] = 1 / g
                u += 2
            }
        }
        let ones = [Float](repeating: 1, count: d), zeros = [Float](repeating: 0, count: d)
        for l in 0..<4 {
            let b = "v.blk.\(l)."
            f32(b + "ln1.weight", [d], ones)
            f32(b + "ln1.bias", [d], zeros)
            for m in ["attn_q", "attn_k", "attn_v", "attn_out"] {
                matrix(b + m + ".weight", [d, d], [Float](repeating: 0, count: d * d))
                f32(b + m + ".bias", [d], zeros)
            }
            f32(b + "ln2.weight", [d], ones)
            f32(b + "ln2.bias", [d], zeros)
            // Block 3 is an identity block: zero MLP.
            let used = l < 3
            matrix(b + "ffn_up.weight", [d, ff], used ? up[l].map(Float.init) : [Float](repeating: 0, count: ff * d))
            f32(b + "ffn_up.bias", [ff], used ? upb[l].map(Float.init) : [Float](repeating: 0, count: ff))
            matrix(b + "ffn_down.weight", [ff, d], used ? down[l].map(Float.init) : [Float](repeating: 0, count: d * ff))
            f32(b + "ffn_down.bias", [d], used ? downb[l].map(Float.init) : zeros)
        }
        f32("v.post_ln.weight", [d], ones)
        f32("v.post_ln.bias", [d], zeros)

        // Projector: one-hot of the nearest colour, then its word's token embedding.
        let sigmaF = Float(sigma)
        var mm0 = [Float](repeating: 0, count: k * d), mm0b = [Float](repeating: gain, count: k)
        for a in 0..<k { mm0[a * d + lossDim + a] = -gain * 2 * sigmaF }
        var mm2 = [Float](repeating: 0, count: lmWidth * k)
        var row = [Float](repeating: 0, count: lmWidth)
        for (a, c) in palette.enumerated() {
            let ids = tokenizer.encode(" " + c.word, addBos: false)
            guard ids.count == 1 else { throw BuildError.notOneToken(c.word, ids) }
            row.withUnsafeMutableBufferPointer { emb.dequantize(row: Int(ids[0]), into: $0.baseAddress!) }
            for e in 0..<lmWidth { mm2[e * k + a] = row[e] / gain }
        }
        matrix("mm.0.weight", [d, k], mm0)
        f32("mm.0.bias", [k], mm0b)
        matrix("mm.2.weight", [k, lmWidth], mm2)
        f32("mm.2.bias", [lmWidth], [Float](repeating: 0, count: lmWidth))
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
