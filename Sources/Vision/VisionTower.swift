#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import COpenBLAS
import GGUF
import Kernels

/// A row-major float matrix (`rows` × `cols`), dequantized from the tower file.
public struct FloatMatrix: Sendable {
    public let rows: Int
    public let cols: Int
    public var data: [Float]
}

/// What a tower makes of one image: `rows` embeddings of the language model's width.
public struct ImageEmbedding: Sendable {
    public var rows: Int
    public var width: Int
    /// `rows * width` floats, row-major.
    public var data: [Float]

    public init(rows: Int, width: Int, data: [Float]) {
        precondition(data.count == rows * width)
        self.rows = rows; self.width = width; self.data = data
    }
}

/// A llama.cpp `mmproj` vision tower: ViT (patch embedding, learned position embedding, pre-LN
/// transformer blocks with a GELU MLP and non-causal attention, post-LN) and a projector (`mlp`
/// or `idefics3`). Tensor names are llama.cpp's (`clip-impl.h`). The tower is small next to the
/// language model, so every weight is dequantized to float once and the matrix work goes
/// through OpenBLAS `sgemm`.
public final class VisionTower: @unchecked Sendable {
    public struct Block: Sendable {
        public var ln1w: [Float], ln1b: [Float]?
        public var q: FloatMatrix, qb: [Float]?
        public var k: FloatMatrix, kb: [Float]?
        public var v: FloatMatrix, vb: [Float]?
        public var out: FloatMatrix, outb: [Float]?
        public var ln2w: [Float], ln2b: [Float]?
        public var up: FloatMatrix, upb: [Float]?
        public var down: FloatMatrix, downb: [Float]?
    }

    public let path: String
    public let config: VisionConfig
    /// Width of the output embeddings (must equal the language model's).
    public let outputWidth: Int
    /// Every metadata entry, for callers that read their own keys (e.g. prompt markers).
    public let metadata: [String: GGUFValue]

    let patchEmbedding: FloatMatrix      // width × (3·p·p), input order (channel, ky, kx)
    let patchBias: [Float]?
    let classEmbedding: [Float]?
    let positionEmbedding: FloatMatrix?  // positions × width
    let preLN: (w: [Float], b: [Float]?)?
    public let blocks: [Block]
    let postLN: (w: [Float], b: [Float]?)?
    // mlp
    let mm0: FloatMatrix?, mm0b: [Float]?, mm2: FloatMatrix?, mm2b: [Float]?
    // idefics3
    let fc: FloatMatrix?, fcb: [Float]?

    public convenience init(path: String) throws {
        try self.init(file: GGUFFile(path: path))
    }

    public init(file f: GGUFFile) throws {
        path = f.path
        let c = try VisionConfig(gguf: f)
        config = c
        var md: [String: GGUFValue] = [:]
        for (k, v) in f.metadata { md[k] = v }
        metadata = md
        var used = Set<String>()
        func err(_ field: String, _ reason: String) -> GGUFError { GGUFError(file: f.path, field: field, reason: reason) }

        func floats(_ t: GGUFTensorInfo) throws -> [Float] {
            guard let q = t.type.quantType else {
                throw err(t.name, "tensor type \(t.type.name) is not supported (F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K are)")
            }
            var out = [Float](repeating: 0, count: t.elementCount)
            let src = f.data(of: t)
            let rowBytes = t.byteCount / max(t.rowCount, 1)
            out.withUnsafeMutableBufferPointer { dst in
                for r in 0..<t.rowCount {
                    dequantizeRow(q, src + r * rowBytes, count: t.rowLength, into: dst.baseAddress! + r * t.rowLength)
                }
            }
            for x in out where !x.isFinite { throw err(t.name, "holds a non-finite value") }
            return out
        }
        func tensor(_ name: String, _ shape: [Int]) throws -> [Float] {
            guard let t = f.tensorInfo(name) else { throw err(name, "tensor missing") }
            guard t.shape == shape else { throw err(name, "shape \(t.shape), expected \(shape)") }
            used.insert(name)
            return try floats(t)
        }
        func optional(_ name: String, _ shape: [Int]) throws -> [Float]? {
            f.tensorInfo(name) == nil ? nil : try tensor(name, shape)
        }
        /// A weight stored as ggml [cols, rows]: `rows` outputs of `cols` inputs.
        func matrix(_ name: String, rows: Int, cols: Int) throws -> FloatMatrix {
            FloatMatrix(rows: rows, cols: cols, data: try tensor(name, [cols, rows]))
        }
        /// ggml shape of a present tensor, for weights whose size the file decides.
        func shape(_ name: String) throws -> [Int] {
            guard let t = f.tensorInfo(name) else { throw err(name, "tensor missing") }
            return t.shape
        }

        let d = c.width, p = c.patchSize, ff = c.ffnWidth
        patchEmbedding = FloatMatrix(rows: d, cols: 3 * p * p, data: try tensor("v.patch_embd.weight", [p, p, 3, d]))
        patchBias = try optional("v.patch_embd.bias", [d])
        classEmbedding = c.projector == .mlp ? try optional("v.class_embd", [d]) : nil
        let positions = c.patchCount + (classEmbedding == nil ? 0 : 1)
        positionEmbedding = try optional("v.position_embd.weight", [d, positions]).map { FloatMatrix(rows: positions, cols: d, data: $0) }
        if let w = try optional("v.pre_ln.weight", [d]) { preLN = (w, try optional("v.pre_ln.bias", [d])) } else { preLN = nil }
        if let w = try optional("v.post_ln.weight", [d]) { postLN = (w, try optional("v.post_ln.bias", [d])) } else { postLN = nil }

        var bs: [Block] = []
        for l in 0..<c.blockCount {
            let b = "v.blk.\(l)."
            var upName = b + "ffn_up", downName = b + "ffn_down"
            // Legacy conversions named the two FFN matrices the other way round; llama.cpp swaps
            // them back when ffn_down reads the model width (clip.cpp load_tensors).
            if try shape(downName + ".weight").first == d {
                swap(&upName, &downName)
            }
            bs.append(Block(
                ln1w: try tensor(b + "ln1.weight", [d]), ln1b: try optional(b + "ln1.bias", [d]),
                q: try matrix(b + "attn_q.weight", rows: d, cols: d), qb: try optional(b + "attn_q.bias", [d]),
                k: try matrix(b + "attn_k.weight", rows: d, cols: d), kb: try optional(b + "attn_k.bias", [d]),
                v: try matrix(b + "attn_v.weight", rows: d, cols: d), vb: try optional(b + "attn_v.bias", [d]),
                out: try matrix(b + "attn_out.weight", rows: d, cols: d), outb: try optional(b + "attn_out.bias", [d]),
                ln2w: try tensor(b + "ln2.weight", [d]), ln2b: try optional(b + "ln2.bias", [d]),
                up: try matrix(upName + ".weight", rows: ff, cols: d), upb: try optional(upName + ".bias", [ff]),
                down: try matrix(downName + ".weight", rows: d, cols: ff), downb: try optional(downName + ".bias", [d])))
        }
        blocks = bs

        switch c.projector {
        case .mlp:
            let fw = c.featureWidth
            let s0 = try shape("mm.0.weight")
            guard s0.count == 2, s0[0] == fw else { throw err("mm.0.weight", "shape \(s0), expected [\(fw), hidden]") }
            let hidden = s0[1]
            let s2 = try shape("mm.2.weight")
            guard s2.count == 2, s2[0] == hidden else { throw err("mm.2.weight", "shape \(s2), expected [\(hidden), output width]") }
            mm0 = try matrix("mm.0.weight", rows: hidden, cols: fw)
            mm0b = try optional("mm.0.bias", [hidden])
            mm2 = try matrix("mm.2.weight", rows: s2[1], cols: hidden)
            mm2b = try optional("mm.2.bias", [s2[1]])
            outputWidth = s2[1]
            fc = nil; fcb = nil
        case .idefics3:
            let inW = d * c.scaleFactor * c.scaleFactor
            let s = try shape("mm.model.fc.weight")
            guard s.count == 2, s[0] == inW else {
                throw err("mm.model.fc.weight", "shape \(s), expected [\(inW) (width × scale factor²), output width]")
            }
            fc = try matrix("mm.model.fc.weight", rows: s[1], cols: inW)
            fcb = try optional("mm.model.fc.bias", [s[1]])
            outputWidth = s[1]
            mm0 = nil; mm0b = nil; mm2 = nil; mm2b = nil
        }

        // Any other tensor belongs to a variant this implementation does not compute (fused QKV,
        // gated FFN, layer scales, Yi-style LLaVA norms, image newline, ...): refuse it rather
        // than silently compute something else. Blocks beyond block_count are never read.
        for t in f.tensors where !used.contains(t.name) {
            throw err(t.name, "tensor is not part of the \(c.projector.rawValue) tower this loader runs (unsupported variant)")
        }
    }

    // MARK: preprocessing

    /// The tower's input for an image: resized as llama.cpp does for this projector, normalised,
    /// channel-planar `3 × imageSize × imageSize` floats.
    public func preprocess(_ image: RGBImage) -> [Float] {
        let s = config.imageSize
        let sized = config.padsToSquare
            ? Preprocess.resizeWithPadding(image, width: s, height: s, algorithm: .bilinear, pad: VisionConfig.llavaPadColor)
            : Preprocess.resize(image, width: s, height: s, algorithm: .bilinear)
        return Preprocess.normalizedPlanar(sized, mean: config.imageMean, std: config.imageStd)
    }

    /// Preprocesses and encodes one image.
    public func encode(_ image: RGBImage) -> ImageEmbedding {
        forward(planar: preprocess(image))
    }

    // MARK: forward

    /// The ViT and projector on a preprocessed image (`3 × imageSize × imageSize`, planar).
    public func forward(planar: [Float]) -> ImageEmbedding {
        let c = config, d = c.width, p = c.patchSize, side = c.patchesPerSide, s = c.imageSize
        precondition(planar.count == 3 * s * s, "forward: expected \(3 * s * s) input floats")
        let np = c.patchCount
        // im2col: one row of (channel, ky, kx) per patch, patches row-major.
        var cols = [Float](repeating: 0, count: np * 3 * p * p)
        for py in 0..<side {
            for px in 0..<side {
                let row = (py * side + px) * 3 * p * p
                for ch in 0..<3 {
                    for ky in 0..<p {
                        let src = ch * s * s + (py * p + ky) * s + px * p
                        let dst = row + (ch * p + ky) * p
                        for kx in 0..<p { cols[dst + kx] = planar[src + kx] }
                    }
                }
            }
        }
        let patches = linear(cols, n: np, patchEmbedding, patchBias)
        // Class token first (position 0), as CLIP; then the patches.
        var n = np
        var x: [Float]
        if let cls = classEmbedding {
            x = cls + patches
            n += 1
        } else {
            x = patches
        }
        if let pos = positionEmbedding {
            for i in 0..<(n * d) { x[i] += pos.data[i] }
        }
        if let ln = preLN { x = layerNorm(x, n: n, ln.w, ln.b) }

        // mlp feature layers: hidden states kept on the way (llama.cpp clip_graph_llava).
        var stack: [[Float]] = []
        for (l, blk) in blocks.prefix(c.blocksRun).enumerated() {
            if c.featureLayers.contains(l) { stack.append(x) }
            let h = layerNorm(x, n: n, blk.ln1w, blk.ln1b)
            let q = linear(h, n: n, blk.q, blk.qb)
            let k = linear(h, n: n, blk.k, blk.kb)
            let v = linear(h, n: n, blk.v, blk.vb)
            let a = attention(q: q, k: k, v: v, n: n)
            let o = linear(a, n: n, blk.out, blk.outb)
            for i in 0..<(n * d) { x[i] += o[i] }
            let h2 = layerNorm(x, n: n, blk.ln2w, blk.ln2b)
            var u = linear(h2, n: n, blk.up, blk.upb)
            activate(&u, c.activation)
            let dn = linear(u, n: n, blk.down, blk.downb)
            for i in 0..<(n * d) { x[i] += dn[i] }
        }
        if let ln = postLN { x = layerNorm(x, n: n, ln.w, ln.b) }

        switch c.projector {
        case .mlp:
            var all = x
            if !c.featureLayers.isEmpty {
                if c.featureLayers.contains(c.blocksRun) { stack.append(x) }
                // concatenated per position, shallowest layer first
                let fw = c.featureWidth
                all = [Float](repeating: 0, count: n * fw)
                for (j, st) in stack.enumerated() {
                    for t in 0..<n { for e in 0..<d { all[t * fw + j * d + e] = st[t * d + e] } }
                }
            }
            let fw = c.featureWidth
            let feats = classEmbedding == nil ? all : Array(all[fw...])
            var hdn = linear(feats, n: np, mm0!, mm0b)
            activate(&hdn, .gelu)
            return ImageEmbedding(rows: np, width: outputWidth, data: linear(hdn, n: np, mm2!, mm2b))
        case .idefics3:
            let (merged, rows) = pixelShuffle(x, width: side, height: side, dim: d, factor: c.scaleFactor)
            return ImageEmbedding(rows: rows, width: outputWidth, data: linear(merged, n: rows, fc!, fcb))
        }
    }

    /// Idefics3 pixel shuffle (llama.cpp `build_patch_merge_permute`): each `factor` × `factor`
    /// group of patches becomes one row, the group's patch features concatenated row-major; the
    /// grid is zero-padded to a multiple of the factor.
    func pixelShuffle(_ x: [Float], width: Int, height: Int, dim: Int, factor f: Int) -> ([Float], Int) {
        let gw = (width + f - 1) / f, gh = (height + f - 1) / f
        let rowLen = dim * f * f
        var out = [Float](repeating: 0, count: gw * gh * rowLen)
        for yb in 0..<gh {
            for xb in 0..<gw {
                let o = (yb * gw + xb) * rowLen
                for dy in 0..<f {
                    for dx in 0..<f {
                        let y = yb * f + dy, xx = xb * f + dx
                        guard y < height, xx < width else { continue }
                        let src = (y * width + xx) * dim
                        let dst = o + (dy * f + dx) * dim
                        for e in 0..<dim { out[dst + e] = x[src + e] }
                    }
                }
            }
        }
        return (out, gw * gh)
    }

    // MARK: kernels

    /// `x` (n × W.cols) · Wᵀ + bias → n × W.rows, through `cblas_sgemm`.
    func linear(_ x: [Float], n: Int, _ w: FloatMatrix, _ bias: [Float]?) -> [Float] {
        precondition(x.count == n * w.cols)
        var y = [Float](repeating: 0, count: n * w.rows)
        if let b = bias {
            for t in 0..<n { for r in 0..<w.rows { y[t * w.rows + r] = b[r] } }
        }
        x.withUnsafeBufferPointer { xp in
            w.data.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(w.rows), Int32(w.cols),
                                1, xp.baseAddress, Int32(w.cols), wp.baseAddress, Int32(w.cols),
                                bias == nil ? 0 : 1, yp.baseAddress, Int32(w.rows))
                }
            }
        }
        return y
    }

    /// LayerNorm of each row (ggml_norm, then weight and bias).
    func layerNorm(_ x: [Float], n: Int, _ w: [Float], _ b: [Float]?) -> [Float] {
        let d = config.width, eps = config.layerNormEpsilon
        var out = [Float](repeating: 0, count: x.count)
        for t in 0..<n {
            var mean: Float = 0
            for i in 0..<d { mean += x[t * d + i] }
            mean /= Float(d)
            var v: Float = 0
            for i in 0..<d { let e = x[t * d + i] - mean; v += e * e }
            let scale = 1 / (v / Float(d) + eps).squareRoot()
            for i in 0..<d { out[t * d + i] = (x[t * d + i] - mean) * scale * w[i] + (b?[i] ?? 0) }
        }
        return out
    }

    /// Multi-head attention over all n positions (no mask), scale 1/√headDim.
    func attention(q: [Float], k: [Float], v: [Float], n: Int) -> [Float] {
        let d = config.width, hd = config.headDim
        var out = [Float](repeating: 0, count: n * d)
        var scores = [Float](repeating: 0, count: n * n)
        let scale = 1 / Float(hd).squareRoot()
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        scores.withUnsafeMutableBufferPointer { sp in
                            for h in 0..<config.headCount {
                                let off = h * hd
                                // scores = Q_h K_hᵀ · scale
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(n), Int32(hd),
                                            scale, qp.baseAddress! + off, Int32(d), kp.baseAddress! + off, Int32(d),
                                            0, sp.baseAddress, Int32(n))
                                for i in 0..<n { softmax(sp.baseAddress! + i * n, count: n, into: sp.baseAddress! + i * n) }
                                // out_h = P V_h
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(hd), Int32(n),
                                            1, sp.baseAddress, Int32(n), vp.baseAddress! + off, Int32(d),
                                            0, op.baseAddress! + off, Int32(d))
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// Elementwise activations as ggml defines them.
func activate(_ x: inout [Float], _ a: VisionActivation) {
    switch a {
    case .gelu:
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        let k: Float = 0.797_884_56
        for i in x.indices {
            let v = x[i]
            x[i] = 0.5 * v * (1 + tanhf(k * v * (1 + 0.044715 * v * v)))
        }
    case .geluQuick:
        for i in x.indices { let v = x[i]; x[i] = v / (1 + expf(-1.702 * v)) }
    case .silu:
        for i in x.indices { let v = x[i]; x[i] = v / (1 + expf(-v)) }
    }
}
