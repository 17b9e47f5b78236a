import CJPEG

/// Small image writers for test pictures and the bundled examples: PNG written in pure Swift
/// (stored, uncompressed deflate blocks: any colour type and bit depth, byte-exact control for
/// tests), binary PPM, and JPEG through TurboJPEG.
public enum ImageEncoder {
    /// PNG colour types.
    public enum PNGColor: UInt8, Sendable {
        case grey = 0, rgb = 2, greyAlpha = 4, rgba = 6

        public var channels: Int {
            switch self {
            case .grey: return 1
            case .rgb: return 3
            case .greyAlpha: return 2
            case .rgba: return 4
            }
        }
    }

    /// A PNG of `width` × `height` pixels. `samples` holds `width * height * color.channels`
    /// values, each below 2^bitDepth; `bitDepth` is 8 or 16.
    public static func png(width: Int, height: Int, color: PNGColor, bitDepth: Int = 8, samples: [UInt16]) -> [UInt8] {
        precondition(bitDepth == 8 || bitDepth == 16)
        precondition(samples.count == width * height * color.channels)
        let bps = bitDepth / 8
        var raw: [UInt8] = []
        raw.reserveCapacity(height * (1 + width * color.channels * bps))
        for y in 0..<height {
            raw.append(0)  // filter: none
            for i in (y * width * color.channels)..<((y + 1) * width * color.channels) {
                let v = samples[i]
                if bps == 2 { raw.append(UInt8(v >> 8)) }
                raw.append(UInt8(truncatingIfNeeded: v))
            }
        }
        var ihdr: [UInt8] = []
        ihdr += u32be(UInt32(width)); ihdr += u32be(UInt32(height))
        ihdr += [UInt8(bitDepth), color.rawValue, 0, 0, 0]
        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        out += chunk("IHDR", ihdr)
        out += chunk("IDAT", zlibStored(raw))
        out += chunk("IEND", [])
        return out
    }

    /// An 8-bit RGB PNG from an image (channels rounded to 0...255).
    public static func png(_ image: RGBImage) -> [UInt8] {
        png(width: image.width, height: image.height, color: .rgb, samples: image.pixels.map { UInt16(to8($0)) })
    }

    /// Binary PPM (P6), 8-bit.
    public static func ppm(_ image: RGBImage) -> [UInt8] {
        Array("P6\n\(image.width) \(image.height)\n255\n".utf8) + image.pixels.map(to8)
    }

    /// Baseline JPEG (4:4:4) through TurboJPEG; nil if the library fails.
    public static func jpeg(_ image: RGBImage, quality: Int = 95) -> [UInt8]? {
        guard let h = tjInitCompress() else { return nil }
        defer { tjDestroy(h) }
        let rgb = image.pixels.map(to8)
        var buf: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        let rc = rgb.withUnsafeBufferPointer {
            tjCompress2(h, $0.baseAddress, Int32(image.width), 0, Int32(image.height), Int32(TJPF_RGB.rawValue),
                        &buf, &size, Int32(TJSAMP_444.rawValue), Int32(quality), Int32(TJFLAG_ACCURATEDCT))
        }
        defer { if let b = buf { tjFree(b) } }
        guard rc == 0, let b = buf else { return nil }
        return Array(UnsafeBufferPointer(start: b, count: Int(size)))
    }

    @inline(__always)
    static func to8(_ v: Float) -> UInt8 { UInt8(max(0, min(255, (v * 255).rounded()))) }

    static func u32be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    /// A PNG chunk: length, type, data, CRC of type + data.
    public static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let td = Array(type.utf8) + data
        return u32be(UInt32(data.count)) + td + u32be(crc32(td))
    }

    /// zlib stream of stored (uncompressed) deflate blocks.
    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var i = 0
        repeat {
            let n = min(65535, data.count - i)
            let last: UInt8 = i + n == data.count ? 1 : 0
            out.append(last)
            out += [UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[i..<(i + n)]
            i += n
        } while i < data.count
        var a: UInt32 = 1, b: UInt32 = 0
        for x in data { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
        out += u32be(b << 16 | a)
        return out
    }
}
