#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernelsSupport
import KernelsAVX2

/// Which implementation of the dot-product kernels runs.
///
/// - `portable`: the baseline-x86-64 (SSE2) / generic SIMD kernels of Dot.swift; every type.
/// - `avx2`: the KernelsAVX2 module (AVX2 + FMA + F16C), for F32/F16/BF16/Q4_0/Q4_1/Q8_0; the
///   K-quants fall back to the portable kernels.
///
/// Each path is deterministic and batch-invariant on its own (a token's result never depends on
/// the batch, the thread count or alignment), but the two paths round differently (FMA, other
/// summation orders): compare paths with a tolerance, never bit for bit. The process-wide choice
/// `KernelPath.active` is made once at start-up from the CPU's features; the environment
/// variable `SPECDEC_KERNELS=portable|avx2` overrides it (an unsupported or unknown choice falls
/// back with a warning on stderr). Every kernel entry point also takes an explicit `path:`.
public enum KernelPath: String, CaseIterable, Sendable, CustomStringConvertible {
    case portable
    case avx2

    /// Whether this CPU (and OS) can run the path.
    public var isSupported: Bool {
        switch self {
        case .portable: return true
        case .avx2: return cpuSupportsAVX2
        }
    }

    /// The fastest supported path.
    public static var best: KernelPath { cpuSupportsAVX2 ? .avx2 : .portable }

    /// The path the kernels take when no `path:` is given: `SPECDEC_KERNELS` or `best`.
    public static var active: KernelPath { activeKernelPath }

    public var description: String { rawValue }

    /// The path an `SPECDEC_KERNELS` value selects: the named one, or `best` (with a warning to
    /// print) when the value is unknown or names a path this CPU cannot run; `best` when unset.
    public static func fromEnvironment(_ value: String?) -> (path: KernelPath, warning: String?) {
        guard let value, !value.isEmpty else { return (best, nil) }
        guard let p = KernelPath(rawValue: value.lowercased()) else {
            return (best, "specdec: SPECDEC_KERNELS=\(value) is not one of \(allCases.map(\.rawValue).joined(separator: ", ")); using \(best)")
        }
        guard p.isSupported else {
            return (best, "specdec: SPECDEC_KERNELS=\(value): this CPU lacks AVX2/FMA/F16C; using \(best)")
        }
        return (p, nil)
    }
}

/// CPU feature check, once per process (cpuid + xgetbv; false on other architectures).
let cpuSupportsAVX2: Bool = specdec_cpu_supports_haswell() != 0

let activeKernelPath: KernelPath = {
    let (p, warning) = KernelPath.fromEnvironment(getenv("SPECDEC_KERNELS").map { String(cString: $0) })
    if let warning { fputs(warning + "\n", stderr) }
    return p
}()

/// A KernelsAVX2 entry point.
typealias AVX2Kernel = (_ rows: UnsafeRawPointer, _ rowBytes: Int, _ rowCount: Int, _ x: UnsafePointer<Float>, _ n: Int,
                        _ count: Int, _ y: UnsafeMutablePointer<Float>, _ yStride: Int) -> Void

extension QuantType {
    /// The KernelsAVX2 kernel for this type, if there is one (the K-quants have none).
    @inline(__always)
    var avx2Kernel: AVX2Kernel? {
        switch self {
        case .f32: return avx2MatMulF32
        case .f16: return avx2MatMulF16
        case .bf16: return avx2MatMulBF16
        case .q4_0: return avx2MatMulQ4_0
        case .q4_1: return avx2MatMulQ4_1
        case .q8_0: return avx2MatMulQ8_0
        case .q4_K, .q5_K, .q6_K: return nil
        }
    }
}

// MARK: - Public API

/// Dot product of one packed row of `count` elements (a whole number of blocks of `type`)
/// with the float32 vector `x`. The row may be at any byte alignment. Bit-identical to the
/// same row's result from `matVec` / `matMul` / `PackedMatrix.multiply` on the same `path`.
public func dotRow(_ type: QuantType, _ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, count: Int,
                   path: KernelPath = .active) -> Float {
    precondition(count >= 0 && count % type.blockSize == 0, "dotRow: \(count) is not a whole number of \(type) blocks")
    if path == .avx2, let kernel = type.avx2Kernel {
        precondition(cpuSupportsAVX2, "dotRow: the AVX2 kernels need an AVX2/FMA/F16C CPU")
        var y: Float = 0
        kernel(row, type.rowBytes(count)!, 1, x, 1, count, &y, 1)
        return y
    }
    return portableDotRow(type, row, x, count: count)
}

/// `y[r] = dotRow(type, rows + r * rowBytes, x, count: count, path: path)` for `r` in
/// `0..<rowCount`, single-threaded (callers split rows across threads), bit-identical to per-row
/// `dotRow`. `rowBytes` is the stride between rows (at least `type.rowBytes(count)`); rows may
/// be at any byte alignment.
public func matVec(_ type: QuantType, rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int,
                   x: UnsafePointer<Float>, count: Int, into y: UnsafeMutablePointer<Float>,
                   path: KernelPath = .active) {
    precondition(count >= 0 && count % type.blockSize == 0, "matVec: \(count) is not a whole number of \(type) blocks")
    precondition(rowCount >= 0 && rowBytes >= type.rowBytes(count)!, "matVec: rowBytes too small")
    if path == .avx2, let kernel = type.avx2Kernel {
        precondition(cpuSupportsAVX2, "matVec: the AVX2 kernels need an AVX2/FMA/F16C CPU")
        kernel(rows, rowBytes, rowCount, x, 1, count, y, 1)
        return
    }
    portableMatVec(type, rows: rows, rowBytes: rowBytes, rowCount: rowCount, x: x, count: count, into: y)
}

/// Batched form for several activation vectors:
/// `y[t * yStride + r] = dotRow(type, rows + r * rowBytes, x + t * count, count: count, path: path)`
/// for `r` in `0..<rowCount`, `t` in `0..<n` — bit-identical to those `dotRow` calls (and to
/// `matVec` per token). Rows are the outer loop, so each weight row is streamed from memory
/// once for all `n` vectors. Single-threaded; callers split rows across threads.
public func matMul(_ type: QuantType, rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int,
                   x: UnsafePointer<Float>, n: Int, count: Int,
                   into y: UnsafeMutablePointer<Float>, yStride: Int, path: KernelPath = .active) {
    precondition(count >= 0 && count % type.blockSize == 0, "matMul: \(count) is not a whole number of \(type) blocks")
    precondition(rowCount >= 0 && n >= 0 && rowBytes >= type.rowBytes(count)!, "matMul: bad sizes")
    if path == .avx2, let kernel = type.avx2Kernel {
        precondition(cpuSupportsAVX2, "matMul: the AVX2 kernels need an AVX2/FMA/F16C CPU")
        kernel(rows, rowBytes, rowCount, x, n, count, y, yStride)
        return
    }
    portableMatMul(type, rows: rows, rowBytes: rowBytes, rowCount: rowCount, x: x, n: n, count: count, into: y, yStride: yStride)
}
