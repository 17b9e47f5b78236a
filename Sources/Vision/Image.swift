import Checksum
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CJPEG
import CPNG

/// A decoded picture: `width` × `height` pixels, RGB interleaved, row-major, each channel in
/// [0, 1] (sRGB values as stored; no gamma conversion). Alpha has been composited on white.
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `width * height * 3` floats.
    public var pixels: [Float]

    public init(width: Int, height: Int, pixels: [Float]) {
        precondition(width > 0 && height > 0 && pixels.count == width * height * 3, "RGBImage: size mismatch")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// An image of one colour (components in [0, 1]).
    public init(width: Int, height: Int, fill: (Float, Float, Float)) {
        var p = [Float](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) { p[3 * i] = fill.0; p[3 * i + 1] = fill.1; p[3 * i + 2] = fill.2 }
        self.init(width: width, height: height, pixels: p)
    }

    @inline(__always)
    public func pixel(_ x: Int, _ y: Int) -> (Float, Float, Float) {
        let i = 3 * (y * width + x)
        return (pixels[i], pixels[i + 1], pixels[i + 2])
    }
}

/// Why an image could not be used. Every error names the file.
public struct ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// The file cannot be opened or read.
        case unreadable
        /// Not PNG, JPEG or binary PPM/PGM.
        case unknownFormat
        /// The data ends early.
        case truncated
        /// A checksum does not match (PNG chunk CRC).
        case badChecksum
        /// Structurally invalid data.
        case corrupt
        /// Width or height is zero.
        case zeroSize
        /// Larger than `ImageLimits` allow; refused before any pixel memory is allocated.
        case tooLarge
        /// Valid but not supported here (bit depth, colour model, ASCII PPM, ...).
        case unsupported
    }

    public var file: String
    public var kind: Kind
    public var reason: String

    public init(file: String, kind: Kind, reason: String) {
        self.file = file; self.kind = kind; self.reason = reason
    }

    public var description: String { "\(file): \(reason)" }
}

/// Size limits checked from the header, before decoding allocates anything.
public struct ImageLimits: Sendable {
    public var maxSide: Int
    public var maxPixels: Int
    /// Files larger than this are not read at all.
    public var maxFileBytes: Int

    public init(maxSide: Int = 16_384, maxPixels: Int = 1 << 25, maxFileBytes: Int = 1 << 28) {
        self.maxSide = maxSide; self.maxPixels = maxPixels; self.maxFileBytes = maxFileBytes
    }

    public static let `default` = ImageLimits()

    func check(width: Int, height: Int, file: String) throws {
        guard width > 0, height > 0 else {
            throw ImageError(file: file, kind: .zeroSize, reason: "image is \(width)×\(height): width and height must be positive")
        }
        guard width <= maxSide, height <= maxSide, width * height <= maxPixels else {
            throw ImageError(file: file, kind: .tooLarge,
                             reason: "image is \(width)×\(height), larger than allowed (at most \(maxSide) per side and \(maxPixels) pixels)")
        }
    }
}

/// Decodes PNG (libpng's simplified API), JPEG (libjpeg-turbo's TurboJPEG API) and binary
/// PPM/PGM, recognised by their first bytes rather than by the file name.
///
/// Both C libraries report errors through return codes on these APIs (each catches its own
/// `longjmp` internally), so a broken file never unwinds through Swift frames or exits.
public enum ImageDecoder {
    public static func load(path: String, limits: ImageLimits = .default) throws -> RGBImage {
        try decode(readFile(path, limits: limits), name: path, limits: limits)
    }

    public static func decode(_ bytes: [UInt8], name: String, limits: ImageLimits = .default) throws -> RGBImage {
        if bytes.count >= 4 && bytes[0] == 0x89 && bytes[1] == 0x50 && bytes[2] == 0x4E && bytes[3] == 0x47 {
            return try decodePNG(bytes, name: name, limits: limits)
        }
        if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF {
            return try decodeJPEG(bytes, name: name, limits: limits)
        }
        if bytes.count >= 2 && bytes[0] == UInt8(ascii: "P") && (UInt8(ascii: "1")...UInt8(ascii: "7")).contains(bytes[1]) {
            return try decodePNM(bytes, name: name, limits: limits)
        }
        if bytes.isEmpty { throw ImageError(file: name, kind: .truncated, reason: "file is empty") }
        throw ImageError(file: name, kind: .unknownFormat, reason: "not a PNG, JPEG or binary PPM/PGM image")
    }

    static func readFile(_ path: String, limits: ImageLimits) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw ImageError(file: path, kind: .unreadable, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw ImageError(file: path, kind: .unreadable, reason: "not a regular file")
        }
        let size = Int(st.st_size)
        guard size <= limits.maxFileBytes else {
            throw ImageError(file: path, kind: .tooLarge, reason: "file has \(size) bytes, more than the \(limits.maxFileBytes) allowed")
        }
        var out = [UInt8](repeating: 0, count: size)
        var got = 0
        try out.withUnsafeMutableBytes { buf in
            while got < size {
                let n = read(fd, buf.baseAddress! + got, size - got)
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else {
                    throw ImageError(file: path, kind: .unreadable, reason: "read failed: \(String(cString: strerror(errno)))")
                }
                if n == 0 { break }
                got += n
            }
        }
        return got == size ? out : Array(out[..<got])
    }

    // MARK: PNG

    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// Checks the signature and the IHDR chunk (its CRC, size, bit depth and colour type) in
    /// Swift, so that these errors are precise and a huge header is refused before libpng runs.
    static func checkPNGHeader(_ b: [UInt8], name: String, limits: ImageLimits) throws {
        guard b.count >= 8 else { throw ImageError(file: name, kind: .truncated, reason: "PNG signature is cut off") }
        guard Array(b[0..<8]) == pngSignature else {
            throw ImageError(file: name, kind: .corrupt, reason: "PNG signature is damaged")
        }
        guard b.count >= 33 else { throw ImageError(file: name, kind: .truncated, reason: "PNG ends inside its IHDR header chunk") }
        let length = be32(b, 8)
        guard length == 13, b[12] == 0x49, b[13] == 0x48, b[14] == 0x44, b[15] == 0x52 else {
            throw ImageError(file: name, kind: .corrupt, reason: "PNG does not start with a 13-byte IHDR chunk")
        }
        let stored = be32(b, 29)
        let computed = crc32(b[12..<29])
        guard stored == computed else {
            throw ImageError(file: name, kind: .badChecksum,
                             reason: "PNG IHDR chunk has a bad CRC (stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16)))")
        }
        let width = Int(be32(b, 16)), height = Int(be32(b, 20))
        let depth = Int(b[24]), colorType = Int(b[25])
        let allowed: [Int: [Int]] = [0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16]]
        guard let depths = allowed[colorType] else {
            throw ImageError(file: name, kind: .unsupported, reason: "PNG colour type \(colorType) does not exist (0, 2, 3, 4, 6 do)")
        }
        guard depths.contains(depth) else {
            throw ImageError(file: name, kind: .unsupported,
                             reason: "PNG bit depth \(depth) is not supported for colour type \(colorType) (allowed: \(depths.map(String.init).joined(separator: ", ")))")
        }
        try limits.check(width: width, height: height, file: name)
    }

    static func decodePNG(_ bytes: [UInt8], name: String, limits: ImageLimits) throws -> RGBImage {
        try checkPNGHeader(bytes, name: name, limits: limits)
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }
        let begun = bytes.withUnsafeBytes { png_image_begin_read_from_memory(&image, $0.baseAddress, $0.count) }
        guard begun != 0 else { throw pngError(&image, name: name) }
        let width = Int(image.width), height = Int(image.height)
        try limits.check(width: width, height: height, file: name)
        // 16-bit files without gAMA/sRGB chunks hold sRGB values like 8-bit ones (libpng would
        // otherwise take them as linear light).
        image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
        image.format = 0x03  // PNG_FORMAT_RGBA: 8-bit sRGB, straight (not premultiplied) alpha
        var rgba = [UInt8](repeating: 0, count: width * height * 4)
        let done = rgba.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard done != 0 else { throw pngError(&image, name: name) }
        var px = [Float](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            let alpha = rgba[4 * i + 3]
            for c in 0..<3 {
                let v = Float(rgba[4 * i + c]) / 255
                if alpha == 255 {
                    px[3 * i + c] = v
                } else {
                    // alpha composited on white, in sRGB values
                    let a = Float(alpha) / 255
                    px[3 * i + c] = v * a + (1 - a)
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: px)
    }

    private static func pngError(_ image: inout png_image, name: String) -> ImageError {
        let msg = withUnsafeBytes(of: &image.message) { raw -> String in
            let b = raw.bindMemory(to: UInt8.self)
            let n = b.firstIndex(of: 0) ?? b.count
            return String(decoding: b[0..<n], as: UTF8.self)
        }
        let lower = msg.lowercased()
        let kind: ImageError.Kind
        if lower.contains("crc") {
            kind = .badChecksum
        } else if lower.contains("read error") || lower.contains("not enough") || lower.contains("end of")
                    || lower.contains("truncated") || lower.contains("too short") || lower.contains("eof") {
            kind = .truncated
        } else if lower.contains("width is zero") || lower.contains("height is zero") {
            kind = .zeroSize
        } else {
            kind = .corrupt
        }
        let what = kind == .truncated ? "PNG data is truncated" : "PNG data is invalid"
        return ImageError(file: name, kind: kind, reason: "\(what) (libpng: \(msg.isEmpty ? "unknown error" : msg))")
    }

    // MARK: JPEG

    static func decodeJPEG(_ bytes: [UInt8], name: String, limits: ImageLimits) throws -> RGBImage {
        guard let handle = tjInitDecompress() else {
            throw ImageError(file: name, kind: .unreadable, reason: "cannot start the JPEG decoder")
        }
        defer { tjDestroy(handle) }
        // A JPEG ends with the EOI marker; a failure on data without it is most likely a cut file.
        let cut = bytes.count < 4 || bytes[bytes.count - 2] != 0xFF || bytes[bytes.count - 1] != 0xD9
        func fail(_ stage: String) -> ImageError {
            let msg = tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown error"
            let lower = msg.lowercased()
            let kind: ImageError.Kind
            if cut || lower.contains("premature end") || lower.contains("no image") || lower.contains("truncated") {
                kind = .truncated
            } else if lower.contains("empty jpeg image") {
                kind = .zeroSize
            } else if lower.contains("unsupported") || lower.contains("precision") {
                kind = .unsupported
            } else {
                kind = .corrupt
            }
            let what = kind == .truncated ? "JPEG data is truncated" : "JPEG data is invalid or unsupported"
            return ImageError(file: name, kind: kind, reason: "\(what) while reading the \(stage) (libjpeg-turbo: \(msg))")
        }
        var w: Int32 = 0, h: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
        let header = bytes.withUnsafeBufferPointer {
            tjDecompressHeader3(handle, $0.baseAddress, UInt($0.count), &w, &h, &subsamp, &colorspace)
        }
        guard header == 0 else { throw fail("header") }
        if (w <= 0 || h <= 0) && cut {
            throw ImageError(file: name, kind: .truncated, reason: "JPEG data is truncated (no image size before the data ends)")
        }
        try limits.check(width: Int(w), height: Int(h), file: name)
        if colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue) {
            throw ImageError(file: name, kind: .unsupported, reason: "CMYK JPEG images are not supported (RGB and greyscale are)")
        }
        let width = Int(w), height = Int(h)
        var rgb = [UInt8](repeating: 0, count: width * height * 3)
        let flags = Int32(TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING)
        let rc = bytes.withUnsafeBufferPointer { src in
            rgb.withUnsafeMutableBufferPointer { dst in
                tjDecompress2(handle, src.baseAddress, UInt(src.count), dst.baseAddress, w, 0, h, Int32(TJPF_RGB.rawValue), flags)
            }
        }
        guard rc == 0 else { throw fail("pixels") }
        return RGBImage(width: width, height: height, pixels: rgb.map { Float($0) / 255 })
    }

    // MARK: PPM / PGM

    /// Binary PPM (P6) and PGM (P5), 8- or 16-bit (maxval up to 65535, big-endian samples).
    static func decodePNM(_ b: [UInt8], name: String, limits: ImageLimits) throws -> RGBImage {
        let magic = b[1]
        guard magic == UInt8(ascii: "6") || magic == UInt8(ascii: "5") else {
            throw ImageError(file: name, kind: .unsupported,
                             reason: "Netpbm format P\(Character(Unicode.Scalar(magic))) is not supported (binary PPM P6 and PGM P5 are)")
        }
        let channels = magic == UInt8(ascii: "6") ? 3 : 1
        var i = 2
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D || c == 0x0B || c == 0x0C }
        func number(_ what: String) throws -> Int {
            // whitespace and # comments before each header number
            while i < b.count {
                if isSpace(b[i]) { i += 1; continue }
                if b[i] == UInt8(ascii: "#") {
                    while i < b.count && b[i] != 0x0A && b[i] != 0x0D { i += 1 }
                    continue
                }
                break
            }
            guard i < b.count else { throw ImageError(file: name, kind: .truncated, reason: "PPM header ends before the \(what)") }
            var v = 0, digits = 0
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 {
                v = v * 10 + Int(b[i] - 0x30)
                digits += 1
                guard v <= 1 << 30 else { throw ImageError(file: name, kind: .tooLarge, reason: "PPM \(what) is absurdly large") }
                i += 1
            }
            guard digits > 0 else { throw ImageError(file: name, kind: .corrupt, reason: "PPM \(what) is not a number") }
            return v
        }
        let width = try number("width")
        let height = try number("height")
        let maxval = try number("maximum value")
        guard i < b.count, isSpace(b[i]) else {
            throw ImageError(file: name, kind: .truncated, reason: "PPM header does not end with a whitespace byte")
        }
        i += 1
        guard maxval >= 1 && maxval <= 65535 else {
            throw ImageError(file: name, kind: .unsupported,
                             reason: "PPM maximum value \(maxval) gives an unsupported bit depth (1...65535 are allowed: 8 or 16 bits)")
        }
        try limits.check(width: width, height: height, file: name)
        let bytesPerSample = maxval > 255 ? 2 : 1
        let need = width * height * channels * bytesPerSample
        guard b.count - i >= need else {
            throw ImageError(file: name, kind: .truncated, reason: "PPM pixel data has \(b.count - i) bytes, \(need) expected")
        }
        let scale = 1 / Float(maxval)
        var px = [Float](repeating: 0, count: width * height * 3)
        for p in 0..<(width * height) {
            for c in 0..<3 {
                let s = p * channels + (channels == 3 ? c : 0)
                let v: Int = bytesPerSample == 1 ? Int(b[i + s]) : (Int(b[i + 2 * s]) << 8 | Int(b[i + 2 * s + 1]))
                px[3 * p + c] = min(Float(v) * scale, 1)
            }
        }
        return RGBImage(width: width, height: height, pixels: px)
    }
}

// MARK: - helpers

@inline(__always)
func be32(_ b: [UInt8], _ o: Int) -> UInt32 {
    UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3])
}

/// CRC-32 as PNG (and zlib) define it.
public func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
    CRC32.checksum(bytes)
}
