import Foundation
import Testing
import Vision

func expectImageError(_ kind: ImageError.Kind, name: String = "pic", _ bytes: [UInt8], limits: ImageLimits = .default,
                      sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        let img = try ImageDecoder.decode(bytes, name: name, limits: limits)
        Issue.record("decoded a broken image as \(img.width)×\(img.height)", sourceLocation: sourceLocation)
    } catch let e as ImageError {
        #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
        #expect(e.file == name && e.description.hasPrefix(name + ": "), sourceLocation: sourceLocation)
    } catch {
        Issue.record("unexpected error type: \(error)", sourceLocation: sourceLocation)
    }
}

/// A 5×3 test pattern with distinct values per pixel and channel.
func pattern(_ w: Int = 5, _ h: Int = 3) -> [UInt16] {
    var out: [UInt16] = []
    for i in 0..<(w * h * 3) { out.append(UInt16((i * 37 + 11) % 256)) }
    return out
}

/// |a − b| within 8-bit precision.
func within8Bit(_ a: Float, _ b: Float) -> Bool {
    let tol: Float = 1.0 / 255 + 1e-6
    return abs(a - b) <= tol
}

struct ImageDecodeTests {
    @Test func pngRGB8() throws {
        let s = pattern()
        let img = try ImageDecoder.decode(ImageEncoder.png(width: 5, height: 3, color: .rgb, samples: s), name: "a.png")
        #expect(img.width == 5 && img.height == 3)
        let want: [Float] = s.map { Float($0) / 255 }
        #expect(img.pixels == want)
    }

    @Test func pngGrey8AndGrey16() throws {
        let g8: [UInt16] = [0, 64, 128, 255, 7, 200]
        let a = try ImageDecoder.decode(ImageEncoder.png(width: 3, height: 2, color: .grey, samples: g8), name: "g8")
        var wantGrey: [Float] = []
        for v in g8 { let f = Float(v) / 255; wantGrey += [f, f, f] }
        #expect(a.pixels == wantGrey)
        // 16-bit samples are read as sRGB (not linear) and reduced to 8 bits, as llama.cpp's stb_image does.
        let g16: [UInt16] = [0, 0x4000, 0x8080, 0xFFFF, 0x1234, 0xC8C8]
        let b = try ImageDecoder.decode(ImageEncoder.png(width: 3, height: 2, color: .grey, bitDepth: 16, samples: g16), name: "g16")
        for (i, v) in g16.enumerated() {
            let want = Float(v) / 65535
            #expect(within8Bit(b.pixels[3 * i], want))
            #expect(b.pixels[3 * i] == b.pixels[3 * i + 1] && b.pixels[3 * i] == b.pixels[3 * i + 2])
        }
    }

    @Test func pngRGB16() throws {
        var s: [UInt16] = []
        for i in 0..<24 { s.append(UInt16((i * 2731 + 97) % 65536)) }
        let img = try ImageDecoder.decode(ImageEncoder.png(width: 4, height: 2, color: .rgb, bitDepth: 16, samples: s), name: "c16")
        for (i, v) in s.enumerated() {
            let want = Float(v) / 65535
            #expect(within8Bit(img.pixels[i], want))
        }
    }

    @Test func pngAlphaCompositedOnWhite() throws {
        // RGBA: opaque red, transparent (any colour), half-transparent black.
        let s: [UInt16] = [255, 0, 0, 255, 10, 20, 30, 0, 0, 0, 0, 128]
        let img = try ImageDecoder.decode(ImageEncoder.png(width: 3, height: 1, color: .rgba, samples: s), name: "rgba")
        #expect(img.pixels[0..<3] == [1, 0, 0])
        #expect(img.pixels[3..<6] == [1, 1, 1])
        let half: Float = 1 - 128.0 / 255
        for c in 6..<9 { #expect(abs(img.pixels[c] - half) < 1e-6) }
        // grey + alpha, 16-bit
        let ga: [UInt16] = [0, 65535, 65535, 0, 0, 0]
        let g = try ImageDecoder.decode(ImageEncoder.png(width: 3, height: 1, color: .greyAlpha, bitDepth: 16, samples: ga), name: "ga16")
        #expect(g.pixels == [0, 0, 0, 1, 1, 1, 1, 1, 1])
    }

    @Test func ppmAndPgm() throws {
        let img = try ImageDecoder.decode(Array("P6\n# comment\n2 1\n255\n".utf8) + [255, 0, 10, 0, 128, 255], name: "a.ppm")
        let want: [Float] = [1, 0, Float(10) / 255, 0, Float(128) / 255, 1]
        #expect(img.pixels == want)
        let p16 = try ImageDecoder.decode(Array("P6 1 1 65535\n".utf8) + [0xFF, 0xFF, 0x80, 0x00, 0x00, 0x01], name: "b.ppm")
        let want16: [Float] = [1, Float(0x8000) / 65535, Float(1) / 65535]
        #expect(p16.pixels == want16)
        let pgm = try ImageDecoder.decode(Array("P5 2 1 100\n".utf8) + [0, 50], name: "c.pgm")
        #expect(pgm.pixels == [0, 0, 0, 0.5, 0.5, 0.5])
    }

    @Test func jpegRoundTrip() throws {
        var img = RGBImage(width: 16, height: 8, fill: (0.2, 0.6, 0.9))
        for x in 0..<8 { for y in 0..<8 { let i = 3 * (y * 16 + x); img.pixels[i] = 0.9; img.pixels[i + 1] = 0.1; img.pixels[i + 2] = 0.1 } }
        let jpg = try #require(ImageEncoder.jpeg(img, quality: 98))
        let back = try ImageDecoder.decode(jpg, name: "a.jpg")
        #expect(back.width == 16 && back.height == 8)
        var worst: Float = 0
        for i in img.pixels.indices { worst = max(worst, abs(back.pixels[i] - img.pixels[i])) }
        #expect(worst < 0.06)
        // greyscale JPEG (encoded from an RGB grey picture, still 3 channels out)
        let grey = try ImageDecoder.decode(try #require(ImageEncoder.jpeg(RGBImage(width: 8, height: 8, fill: (0.5, 0.5, 0.5)))), name: "g.jpg")
        #expect(abs(grey.pixels[0] - 0.5) < 0.01)
    }

    @Test func bundledExamplesDecode() throws {
        let dir = Fixtures.dir.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("checkpoints/images")
        for (name, image) in DemoTower.exampleImages() {
            let img = try ImageDecoder.load(path: dir.appendingPathComponent(name + ".png").path)
            #expect(img.width == 64 && img.height == 64)
            #expect(maxAbsDiff(img.pixels, image.pixels) <= 0.5 / 255 + 1e-6, "\(name).png differs from the generator")
        }
    }

    // MARK: broken images

    @Test func truncatedPNG() throws {
        let good = ImageEncoder.png(width: 8, height: 8, color: .rgb, samples: pattern(8, 8))
        expectImageError(.truncated, Array(good[0..<(good.count - 40)]))   // inside IDAT
        expectImageError(.truncated, Array(good[0..<20]))                  // inside IHDR
        expectImageError(.truncated, Array(good[0..<6]))                   // inside the signature
    }

    @Test func badCRC() throws {
        var b = ImageEncoder.png(width: 4, height: 4, color: .rgb, samples: pattern(4, 4))
        b[29] ^= 0xFF  // IHDR CRC
        expectImageError(.badChecksum, b)
        var c = ImageEncoder.png(width: 4, height: 4, color: .rgb, samples: pattern(4, 4))
        c[c.count - 14] ^= 0x01  // IDAT's CRC (the 4 bytes before the 12-byte IEND chunk)
        expectImageError(.badChecksum, c)
        var d = ImageEncoder.png(width: 4, height: 4, color: .rgb, samples: pattern(4, 4))
        d[50] ^= 0x01  // a pixel byte: the CRC is fixed up but zlib's own checksum fails
        let idat = Array(d[37..<(d.count - 16)])
        d.replaceSubrange((d.count - 16)..<(d.count - 12), with: ImageEncoder.chunk("IDAT", Array(idat[4...])).suffix(4))
        expectImageError(.corrupt, d)
    }

    /// A PNG whose IHDR says `w`×`h`, `depth`, `colorType` (valid CRC), with a tiny IDAT.
    func header(_ w: UInt32, _ h: UInt32, depth: UInt8 = 8, colorType: UInt8 = 2) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
        let good = ImageEncoder.png(width: 1, height: 1, color: .rgb, samples: [1, 2, 3])
        return Array(good[0..<8]) + ImageEncoder.chunk("IHDR", be(w) + be(h) + [depth, colorType, 0, 0, 0]) + Array(good[33...])
    }

    @Test func zeroWidthAndHugeHeader() throws {
        expectImageError(.zeroSize, header(0, 10))
        expectImageError(.tooLarge, header(100_000, 100_000))
        expectImageError(.zeroSize, Array("P6 0 4 255\n".utf8))
        expectImageError(.tooLarge, Array("P6 100000 100000 255\n".utf8))
        expectImageError(.tooLarge, header(64, 64), limits: ImageLimits(maxSide: 32))
    }

    @Test func unsupportedBitDepth() throws {
        expectImageError(.unsupported, header(4, 4, depth: 7))
        expectImageError(.unsupported, header(4, 4, depth: 4, colorType: 2))
        expectImageError(.unsupported, header(4, 4, colorType: 5))
        expectImageError(.unsupported, Array("P6 1 1 70000\n".utf8) + [0, 0, 0, 0, 0, 0])
        expectImageError(.unsupported, Array("P3 1 1 255\n0 0 0\n".utf8))  // ASCII PPM
    }

    @Test func otherBrokenFiles() throws {
        expectImageError(.truncated, [])
        expectImageError(.unknownFormat, Array("GIF89a....".utf8))
        expectImageError(.truncated, Array("P6 2 2 255\n".utf8) + [1, 2, 3])
        expectImageError(.corrupt, Array("P6 x 2 255\n".utf8))
        let jpg = try #require(ImageEncoder.jpeg(RGBImage(width: 32, height: 32, fill: (0.3, 0.4, 0.5))))
        expectImageError(.truncated, Array(jpg[0..<(jpg.count / 2)]))
        expectImageError(.truncated, Array(jpg[0..<4]))
        #expect(throws: ImageError.self) { try ImageDecoder.load(path: "/nonexistent/dir/x.png") }
        do {
            _ = try ImageDecoder.load(path: "/nonexistent/dir/x.png")
        } catch let e as ImageError {
            #expect(e.kind == .unreadable && e.description.hasPrefix("/nonexistent/dir/x.png: "))
        }
    }
}
