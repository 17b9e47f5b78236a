#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernelsSupport

/// How activations enter the matrix kernels.
///
/// - `q8` (the default, the fast path): each activation row is quantized per 32-element block as
///   llama.cpp's Q8_0/Q8_1 do (d = max|x| / 127, q = round-to-nearest-even(x / d) in −127...127,
///   s = d · Σq), once per `PackedMatrix.multiply` call, and Q4_0 / Q4_1 / Q8_0 / Q4_K / Q5_K / Q6_K
///   weights, repacked
///   at load into 8-row interleaved blocks (`InterleavedWeights`, layout in specdec_x8.h), are
///   multiplied with exact integer dot products: one broadcast of 4 activation bytes feeds 8 rows,
///   and a decoded weight block serves a tile of up to 4 tokens while it sits in registers, so the
///   2nd…4th token of a batch costs a fraction of the first. Per (row, token), over blocks b in
///   order: `acc = fma(Float(isum_b), dw_b · dx_b, acc)` (+ `fma(mw_b, s_b, acc)` for Q4_1, Q4_K,
///   Q5_K), with isum_b the exact integer block dot product (Q6_K: with its two 16-element int8
///   scales applied in the integer domain). A token's result never depends on the batch,
///   the tile or the thread count (batch invariant), and the portable, AVX2 and AVX-512 VNNI
///   kernels give the same bits. Other weight types (F32/F16/BF16) and matrices
///   without a repacked copy take the float path on the original activations.
/// - `none` (`--precision f32`): float32 activations everywhere, the kernels of Dot.swift /
///   KernelsAVX2: the reference-accurate mode (within 1e-2 of the float64 reference logits).
///
/// The process-wide default comes from `SPECDEC_ACT=none|q8` (unset: `q8`); commands set it with
/// `--precision q8|f32`.
public enum ActivationQuant: String, CaseIterable, Sendable, CustomStringConvertible {
    case none
    case q8

    public var description: String { rawValue }

    /// The choice an `SPECDEC_ACT` value selects (`q8` when unset; `q8` with a warning when unknown;
    /// `f32` is accepted for `none`).
    public static func fromEnvironment(_ value: String?) -> (quant: ActivationQuant, warning: String?) {
        guard let value, !value.isEmpty else { return (.q8, nil) }
        if let p = Precision(rawValue: value.lowercased()) { return (p.activations, nil) }
        guard let q = ActivationQuant(rawValue: value.lowercased()) else {
            return (.q8, "specdec: SPECDEC_ACT=\(value) is not one of q8, f32 (none); using q8")
        }
        return (q, nil)
    }

    /// `SPECDEC_ACT`, read once per process.
    public static var environment: ActivationQuant { environmentActivationQuant }
}

let environmentActivationQuant: ActivationQuant = {
    let (q, warning) = ActivationQuant.fromEnvironment(getenv("SPECDEC_ACT").map { String(cString: $0) })
    if let warning { fputs(warning + "\n", stderr) }
    return q
}()

/// The user-facing name of an activation mode (`--precision`).
public enum Precision: String, CaseIterable, Sendable {
    /// int8 activations on interleaved weights: the fast default.
    case q8
    /// float32 activations: the exact mode for reference work.
    case f32

    public var activations: ActivationQuant { self == .q8 ? .q8 : .none }
}

extension QuantType {
    /// Whether the int8-activation kernels handle this weight type (else it takes the float path).
    public var hasQ8ActivationKernel: Bool { q8WeightCode != nil }

    var q8WeightCode: Int32? {
        switch self {
        case .q4_0: return Int32(SPECDEC_Q8W_Q4_0)
        case .q4_1: return Int32(SPECDEC_Q8W_Q4_1)
        case .q8_0: return Int32(SPECDEC_Q8W_Q8_0)
        case .q4_K: return Int32(SPECDEC_Q8W_Q4_K)
        case .q5_K: return Int32(SPECDEC_Q8W_Q5_K)
        case .q6_K: return Int32(SPECDEC_Q8W_Q6_K)
        default: return nil
        }
    }
}

/// Which implementation of the int8-activation kernels runs. All give the same bits (the integer
/// parts are exact, the float steps the same), so the choice is about speed only: the best the
/// CPU supports, unless `SPECDEC_VNNI=0` turns AVX-512 VNNI off.
public enum Int8Kernel: String, CaseIterable, Sendable {
    case portable, avx2, avx512vnni

    public var isSupported: Bool {
        switch self {
        case .portable: return true
        case .avx2: return cpuSupportsAVX2
        case .avx512vnni: return cpuSupportsAVX512VNNI
        }
    }

    /// The kernel a `KernelPath` selects: the portable one, or the best vector one.
    public static func forPath(_ path: KernelPath) -> Int8Kernel {
        guard path == .avx2 && cpuSupportsAVX2 else { return .portable }
        return cpuSupportsAVX512VNNI && vnniAllowed ? .avx512vnni : .avx2
    }
}

let cpuSupportsAVX512VNNI: Bool = specdec_cpu_supports_avx512vnni() != 0
let vnniAllowed: Bool = getenv("SPECDEC_VNNI").map { String(cString: $0) != "0" } ?? true

/// Per-block scale/sum stride of a quantized activation row: blocks rounded up to 8.
@inline(__always)
func q8BlockStride(_ count: Int) -> Int { (count / 32 + 7) / 8 * 8 }

/// Raw views of quantized activations (n rows): quants n × count; d, s and the integer sums Σq
/// n × blockStride.
struct Q8ActivationPointers {
    var qs: UnsafeMutablePointer<Int8>
    var d: UnsafeMutablePointer<Float>
    var s: UnsafeMutablePointer<Float>
    var qsum: UnsafeMutablePointer<Int32>
    var blockStride: Int
}

/// Quantizes `n` rows of `count` floats (`count` a multiple of 32) into temporary buffers for `body`.
@inline(__always)
func withQ8Activations<R>(_ x: UnsafePointer<Float>, n: Int, count: Int, path: KernelPath,
                          _ body: (Q8ActivationPointers) -> R) -> R {
    let bs = q8BlockStride(count)
    return withUnsafeTemporaryAllocation(of: Int8.self, capacity: max(1, n * count)) { qs in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, 2 * n * bs)) { f in
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: max(1, n * bs)) { sums in
                let p = Q8ActivationPointers(qs: qs.baseAddress!, d: f.baseAddress!, s: f.baseAddress! + n * bs,
                                             qsum: sums.baseAddress!, blockStride: bs)
                if path == .avx2 && cpuSupportsAVX2 {
                    specdec_q8_quantize_avx2(x, n, count, p.qs, p.d, p.s, bs)
                } else {
                    specdec_q8_quantize(x, n, count, p.qs, p.d, p.s, bs)
                }
                specdec_x8_block_sums(p.qs, n, count, p.qsum, bs)
                return body(p)
            }
        }
    }
}

/// Row groups `groups` of an interleaved matrix times quantized activations, into y (n × yStride).
@inline(__always)
func x8MatMul(_ w: InterleavedWeights, groups: Range<Int>, _ a: Q8ActivationPointers, n: Int,
              into y: UnsafeMutablePointer<Float>, yStride: Int, kernel: Int8Kernel) {
    let code = w.type.q8WeightCode!
    switch kernel {
    case .portable:
        specdec_x8_matmul(code, w.data, w.rows, groups.lowerBound, groups.upperBound, a.qs, a.d, a.s, a.qsum, a.blockStride, n, w.cols, y, yStride)
    case .avx2:
        specdec_x8_matmul_avx2(code, w.data, w.rows, groups.lowerBound, groups.upperBound, a.qs, a.d, a.s, a.qsum, a.blockStride, n, w.cols, y, yStride)
    case .avx512vnni:
        specdec_x8_matmul_vnni(code, w.data, w.rows, groups.lowerBound, groups.upperBound, a.qs, a.d, a.s, a.qsum, a.blockStride, n, w.cols, y, yStride)
    }
}

/// A Q4_0 / Q4_1 / Q8_0 / Q4_K / Q5_K / Q6_K matrix repacked for the int8-activation kernels: rows
/// in groups of 8, block (K-quants: super-block) by block (layout in specdec_x8.h). The same bytes
/// as the GGUF rows, reordered, plus zero rows padding the last group — except Q4_K/Q5_K, whose
/// packed 6-bit scales/mins are stored one byte each (+2.8% / +2.3%); owned here (anonymous
/// memory), made once at load.
public final class InterleavedWeights: @unchecked Sendable {
    public let type: QuantType
    public let rows: Int
    public let cols: Int
    public var groups: Int { (rows + 7) / 8 }
    public let byteCount: Int
    let data: UnsafeMutableRawPointer

    /// Nil for types without int8-activation kernels.
    public init?(type: QuantType, rows: Int, cols: Int, data src: UnsafeRawPointer, rowBytes: Int) {
        guard let code = type.q8WeightCode, cols % specdec_x8_block_elements(code) == 0 else { return nil }
        self.type = type; self.rows = rows; self.cols = cols
        byteCount = max(1, (rows + 7) / 8 * (cols / specdec_x8_block_elements(code)) * specdec_x8_record_bytes(code))
        data = .allocate(byteCount: byteCount, alignment: 64)
        specdec_x8_repack(code, src, rowBytes, rows, cols, data)
    }

    deinit { data.deallocate() }
}

/// Activation rows quantized as the `q8` path does it (for tests and references).
public struct Q8Activations: Sendable {
    public let n: Int
    public let count: Int
    /// n × count quants.
    public let quants: [Int8]
    /// n × (count/32) block scales d.
    public let scales: [Float]
    /// n × (count/32) block sums s = d · Σq.
    public let sums: [Float]

    public init(_ x: UnsafePointer<Float>, n: Int, count: Int, path: KernelPath = .active) {
        precondition(count % 32 == 0 && n >= 0, "Q8Activations: count must be a multiple of 32")
        let blocks = count / 32, bs = q8BlockStride(count)
        var q = [Int8](), d = [Float](), s = [Float]()
        withQ8Activations(x, n: n, count: count, path: path) { p in
            q = Array(UnsafeBufferPointer(start: p.qs, count: n * count))
            for t in 0..<n {
                d += UnsafeBufferPointer(start: p.d + t * bs, count: blocks)
                s += UnsafeBufferPointer(start: p.s + t * bs, count: blocks)
            }
        }
        self.n = n; self.count = count; quants = q; scales = d; sums = s
    }

    /// x̂ = d · q, n × count.
    public func dequantized() -> [Float] {
        (0..<(n * count)).map { i in scales[i / 32] * Float(quants[i]) }
    }
}

/// The `q8` kernel directly on GGUF rows (repacked here): `y[t * yStride + r] = row r · x̂_t` for
/// `rowCount` rows of a matrix of a type with int8 kernels (`hasQ8ActivationKernel`) and the `n` activation rows `x` (quantized here),
/// single-threaded, with the int8 kernel `kernel` (default: the best for `path`).
public func q8MatMul(_ type: QuantType, rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int,
                     x: UnsafePointer<Float>, n: Int, count: Int, into y: UnsafeMutablePointer<Float>, yStride: Int,
                     path: KernelPath = .active, kernel: Int8Kernel? = nil) {
    precondition(type.hasQ8ActivationKernel, "q8MatMul: no int8-activation kernel for \(type)")
    precondition(count >= 0 && count % type.blockSize == 0 && rowBytes >= type.rowBytes(count)!, "q8MatMul: bad sizes")
    let k = kernel ?? Int8Kernel.forPath(path)
    precondition(k.isSupported, "q8MatMul: this CPU cannot run the \(k) kernel")
    guard rowCount > 0, n > 0 else { return }
    let w = InterleavedWeights(type: type, rows: rowCount, cols: count, data: rows, rowBytes: rowBytes)!
    withQ8Activations(x, n: n, count: count, path: path) { a in
        x8MatMul(w, groups: 0..<w.groups, a, n: n, into: y, yStride: yStride, kernel: k)
    }
}
