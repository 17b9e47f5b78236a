import CZstd

/// zstd frames: one-shot compression with the content checksum and the content size in the frame
/// header, and bounded, checksum-verifying decompression.
enum Zstd {
    /// Magic number of a zstd frame (little-endian on disk).
    static let frameMagic: UInt32 = 0xFD2F_B528

    /// Largest frame content this reader accepts (a corrupt size field must not allocate terabytes).
    static let maxContentSize = 1 << 31

    enum Failure: Error {
        /// The bytes end before the frame does (a write that was cut short).
        case truncated
        /// Not a zstd frame, a frame without content size or checksum, or corrupt data.
        case corrupt(String)
    }

    final class Compressor {
        private let cctx: OpaquePointer
        let level: Int32

        init(level: Int) {
            cctx = ZSTD_createCCtx()!
            self.level = Int32(level)
            _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, Int32(level))
            _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
            _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)
        }

        deinit { ZSTD_freeCCtx(cctx) }

        func compress(_ src: [UInt8]) -> [UInt8] {
            let bound = ZSTD_compressBound(src.count)
            var out = [UInt8](repeating: 0, count: bound)
            let n = out.withUnsafeMutableBytes { o in
                src.withUnsafeBytes { s in
                    ZSTD_compress2(cctx, o.baseAddress, o.count, s.baseAddress, s.count)
                }
            }
            precondition(ZSTD_isError(n) == 0, "zstd compression failed: \(String(cString: ZSTD_getErrorName(n)))")
            out.removeSubrange(n...)
            return out
        }
    }

    static func errorName(_ code: Int) -> String { String(cString: ZSTD_getErrorName(code)) }

    /// zstd's stable error codes (zstd_errors.h): a failing call returns `-code` as size_t.
    static func errorCode(_ result: Int) -> Int { Int(bitPattern: 0 &- UInt(bitPattern: result)) }
    static let errorChecksumWrong = 22
    static let errorSrcSizeWrong = 72

    /// Size of the zstd frame that starts at `bytes[0]`: `.truncated` when the bytes end inside it.
    static func frameSize(_ bytes: UnsafeRawBufferPointer) -> Result<Int, Failure> {
        guard bytes.count >= 4 else { return .failure(.truncated) }
        let magic = bytes.loadUnaligned(as: UInt32.self).littleEndian
        guard magic == frameMagic else {
            return .failure(.corrupt(String(format: "not a zstd frame (magic 0x%08x)", magic)))
        }
        let n = ZSTD_findFrameCompressedSize(bytes.baseAddress, bytes.count)
        if ZSTD_isError(n) != 0 {
            if errorCode(n) == errorSrcSizeWrong { return .failure(.truncated) }
            return .failure(.corrupt(errorName(n)))
        }
        return .success(n)
    }

    /// Decompresses exactly one whole frame, which must declare its content size and carry a
    /// content checksum (zstd verifies it).
    static func decompressFrame(_ frame: UnsafeRawBufferPointer, dctx: OpaquePointer) -> Result<[UInt8], Failure> {
        guard frame.count >= 6 else { return .failure(.truncated) }
        // Frame header descriptor: bit 2 is the content checksum flag.
        let fhd = frame[4]
        guard fhd & 0x04 != 0 else { return .failure(.corrupt("frame has no content checksum")) }
        let declared = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        if declared == ZSTD_CONTENTSIZE_ERROR { return .failure(.corrupt("bad frame header")) }
        if declared == ZSTD_CONTENTSIZE_UNKNOWN { return .failure(.corrupt("frame does not declare its content size")) }
        guard declared <= UInt64(maxContentSize) else { return .failure(.corrupt("frame declares \(declared) bytes of content, more than the \(maxContentSize) allowed")) }
        // Not zero-filled: a damaged size field costs address space, not memory, until zstd fails.
        var n = 0
        let out = [UInt8](unsafeUninitializedCapacity: Int(declared)) { buf, initialized in
            n = ZSTD_decompressDCtx(dctx, buf.baseAddress, Int(declared), frame.baseAddress, frame.count)
            initialized = ZSTD_isError(n) == 0 ? min(n, Int(declared)) : 0
        }
        if ZSTD_isError(n) != 0 {
            if errorCode(n) == errorChecksumWrong { return .failure(.corrupt("content checksum mismatch")) }
            return .failure(.corrupt(errorName(n)))
        }
        guard n == Int(declared) else { return .failure(.corrupt("frame holds \(n) bytes but declares \(declared)")) }
        return .success(out)
    }

    final class Decompressor {
        let dctx: OpaquePointer
        init() { dctx = ZSTD_createDCtx()! }
        deinit { ZSTD_freeDCtx(dctx) }
        func decompressFrame(_ frame: UnsafeRawBufferPointer) -> Result<[UInt8], Failure> {
            Zstd.decompressFrame(frame, dctx: dctx)
        }
    }
}
