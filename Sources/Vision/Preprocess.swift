/// Image resizing and normalisation as llama.cpp's `clip.cpp` does it (`img_tool`), but in float:
/// llama.cpp rounds or truncates every resized value to 8 bits, this keeps full precision, so
/// the tower's input differs from llama.cpp's by at most about 1/255 per channel.
public enum Preprocess {
    /// Resizes to `width` × `height` (aspect ratio not kept).
    public static func resize(_ src: RGBImage, width: Int, height: Int, algorithm: ResizeAlgorithm) -> RGBImage {
        if src.width == width && src.height == height { return src }
        switch algorithm {
        case .bilinear: return bilinear(src, width, height)
        case .bicubic: return bicubic(src, width, height)
        }
    }

    /// llama.cpp `img_tool::resize(..., add_padding: true)`: scales to fit inside the target,
    /// keeping the aspect ratio, and centres it on a `pad` background.
    public static func resizeWithPadding(_ src: RGBImage, width: Int, height: Int, algorithm: ResizeAlgorithm,
                                         pad: (Float, Float, Float)) -> RGBImage {
        if src.width == width && src.height == height { return src }
        let scale = min(Float(width) / Float(src.width), Float(height) / Float(src.height))
        let nw = max(1, min(Int((Float(src.width) * scale).rounded(.up)), width))
        let nh = max(1, min(Int((Float(src.height) * scale).rounded(.up)), height))
        let inner = resize(src, width: nw, height: nh, algorithm: algorithm)
        var out = RGBImage(width: width, height: height, fill: pad)
        let ox = (width - nw) / 2, oy = (height - nh) / 2
        for y in 0..<nh {
            for x in 0..<nw {
                let d = 3 * ((y + oy) * width + (x + ox)), s = 3 * (y * nw + x)
                out.pixels[d] = inner.pixels[s]; out.pixels[d + 1] = inner.pixels[s + 1]; out.pixels[d + 2] = inner.pixels[s + 2]
            }
        }
        return out
    }

    /// Channel-planar (C, H, W) floats, each channel `(v - mean[c]) / std[c]`: the tower's input.
    public static func normalizedPlanar(_ img: RGBImage, mean: [Float], std: [Float]) -> [Float] {
        let n = img.width * img.height
        var out = [Float](repeating: 0, count: 3 * n)
        for i in 0..<n {
            for c in 0..<3 { out[c * n + i] = (img.pixels[3 * i + c] - mean[c]) / std[c] }
        }
        return out
    }

    // llama.cpp resize_bilinear: ratio (n - 1) / target, samples at ratio·x (not pixel centres).
    static func bilinear(_ src: RGBImage, _ tw: Int, _ th: Int) -> RGBImage {
        var out = [Float](repeating: 0, count: tw * th * 3)
        let xr = Float(src.width - 1) / Float(tw), yr = Float(src.height - 1) / Float(th)
        let sw = src.width
        src.pixels.withUnsafeBufferPointer { s in
            for y in 0..<th {
                let py = yr * Float(y)
                let y0 = Int(py), y1 = min(y0 + 1, src.height - 1)
                let fy = py - Float(y0)
                for x in 0..<tw {
                    let px = xr * Float(x)
                    let x0 = Int(px), x1 = min(x0 + 1, sw - 1)
                    let fx = px - Float(x0)
                    for c in 0..<3 {
                        let top = lerp(s[3 * (y0 * sw + x0) + c], s[3 * (y0 * sw + x1) + c], fx)
                        let bottom = lerp(s[3 * (y1 * sw + x0) + c], s[3 * (y1 * sw + x1) + c], fx)
                        out[3 * (y * tw + x) + c] = lerp(top, bottom, fy)
                    }
                }
            }
        }
        return RGBImage(width: tw, height: th, pixels: out)
    }

    @inline(__always)
    static func lerp(_ a: Float, _ b: Float, _ t: Float) -> Float { a + (b - a) * t }

    // llama.cpp resize_bicubic (from ViT.cpp): sample point tx·j, cubic through 4 neighbours with
    // edge clamping, rows first then the column; result clamped to the valid range.
    static func bicubic(_ src: RGBImage, _ tw: Int, _ th: Int) -> RGBImage {
        let nx = src.width, ny = src.height
        var out = [Float](repeating: 0, count: tw * th * 3)
        let tx = Float(nx) / Float(tw), ty = Float(ny) / Float(th)
        @inline(__always) func cl(_ v: Int, _ hi: Int) -> Int { max(0, min(v, hi)) }
        @inline(__always) func cubic(_ p0: Float, _ p1: Float, _ p2: Float, _ p3: Float, _ d: Float) -> Float {
            let d0 = p0 - p1, d2 = p2 - p1, d3 = p3 - p1
            let a0 = p1
            let a1 = -1.0 / 3 * d0 + d2 - 1.0 / 6 * d3
            let a2 = 1.0 / 2 * d0 + 1.0 / 2 * d2
            let a3 = -1.0 / 6 * d0 - 1.0 / 2 * d2 + 1.0 / 6 * d3
            return a0 + a1 * d + a2 * d * d + a3 * d * d * d
        }
        src.pixels.withUnsafeBufferPointer { s in
            for i in 0..<th {
                let y = Int(ty * Float(i))
                let dy = ty * Float(i) - Float(y)
                for j in 0..<tw {
                    let x = Int(tx * Float(j))
                    let dx = tx * Float(j) - Float(x)
                    for k in 0..<3 {
                        var col = [Float](repeating: 0, count: 4)
                        for jj in 0..<4 {
                            let row = cl(y - 1 + jj, ny - 1) * nx
                            col[jj] = cubic(s[(row + cl(x - 1, nx - 1)) * 3 + k], s[(row + cl(x, nx - 1)) * 3 + k],
                                            s[(row + cl(x + 1, nx - 1)) * 3 + k], s[(row + cl(x + 2, nx - 1)) * 3 + k], dx)
                        }
                        let v = cubic(col[0], col[1], col[2], col[3], dy)
                        out[3 * (i * tw + j) + k] = min(max(v, 0), 1)
                    }
                }
            }
        }
        return RGBImage(width: tw, height: th, pixels: out)
    }
}
