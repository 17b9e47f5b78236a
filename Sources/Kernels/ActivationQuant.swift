#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CKernelsSupport

/// How activations enter the matrix kernels.
///
/// - `none` (the default): float32 activations, the kernels of Dot.swift / KernelsAVX2.
/// - `q8`: each activation row is quantized per 32-element block as llama.cpp's Q8_0/Q8_1 do
///   (d = max|x| / 127, q = round-to-nearest-even(x / d) in −127...127, s = d · Σq), once per
///   `PackedMatrix.multiply` call, and Q4_0 / Q4_1 / Q8_0 weights are multiplied with exact
///   integer dot products (AVX2 `vpmaddubsw`/`vpmaddwd`, tiles of up to 4 tokens sharing each
///   decoded weight block; the CKernelsSupport functions `specdec_q8_*`). Per (row, token):
///   `acc[k] = fma(Float(isum_b[k]), dw_b · dx_b, acc[k])` over blocks in order (lane k: the
///   exact integer sum of elements 4k..<4k+4 of block b), plus, for Q4_1, the min term
///   `Σ_b mw_b · s_b` in 8 lanes over zero-padded blocks; then the fixed pairwise lane tree.
///   So a token's result never depends on the batch, the tile or the thread count (batch
///   invariant), and the portable (scalar C) and AVX2 versions give the same bits.
///   Other weight types (F32/F16/BF16 and the K-quants) take the float path on the original,
///   unquantized activations.
///
/// The process-wide default comes from `SPECDEC_ACT=none|q8` (unset: `none`).
public enum ActivationQuant: String, CaseIterable, Sendable, CustomStringConvertible {
    case none
    case q8

    public var description: String { rawValue }

    /// The choice an `SPECDEC_ACT` value selects (`none` when unset; `none` with a warning when unknown).
    public static func fromEnvironment(_ value: String?) -> (quant: ActivationQuant, warning: String?) {
        guard let value, !value.isEmpty else { return (.none, nil) }
        guard let q = ActivationQuant(rawValue: value.lowercased()) else {
            return (.none, "specdec: SPECDEC_ACT=\(value) is not one of \(allCases.map(\.rawValue).joined(separator: ", ")); using none")
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

extension QuantType {
    /// Whether the int8-activation kernels handle this weight type (else it takes the float path).
    public var hasQ8ActivationKernel: Bool { q8WeightCode != nil }

    var q8WeightCode: Int32? {
        switch self {
        case .q4_0: return Int32(SPECDEC_Q8W_Q4_0)
        case .q4_1: return Int32(SPECDEC_Q8W_Q4_1)
        case .q8_0: return Int32(SPECDEC_Q8W_Q8_0)
        default: return nil
        }
    }
}

/// Per-block scale/sum stride of a quantized activation row: blocks rounded up to 8.
@inline(__always)
func q8BlockStride(_ count: Int) -> Int { (count / 32 + 7) / 8 * 8 }

/// Raw views of quantized activations (n rows): quants n × count, d and s n × blockStride.
struct Q8ActivationPointers {
    var qs: UnsafeMutablePointer<Int8>
    var d: UnsafeMutablePointer<Float>
    var s: UnsafeMutablePointer<Float>
    var blockStride: Int
}

/// Quantizes `n` rows of `count` floats (`count` a multiple of 32) into temporary buffers for `body`.
@inline(__always)
func withQ8Activations<R>(_ x: UnsafePointer<Float>, n: Int, count: Int, path: KernelPath,
                          _ body: (Q8ActivationPointers) -> R) -> R {
    let bs = q8BlockStride(count)
    return withUnsafeTemporaryAllocation(of: Int8.self, capacity: max(1, n * count)) { qs in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, 2 * n * bs)) { f in
            let p = Q8ActivationPointers(qs: qs.baseAddress!, d: f.baseAddress!, s: f.baseAddress! + n * bs, blockStride: bs)
            q8Quantize(x, n: n, count: count, p, path: path)
            return body(p)
        }
    }
}

@inline(__always)
func q8Quantize(_ x: UnsafePointer<Float>, n: Int, count: Int, _ p: Q8ActivationPointers, path: KernelPath) {
    if path == .avx2 && cpuSupportsAVX2 {
        specdec_q8_quantize_avx2(x, n, count, p.qs, p.d, p.s, p.blockStride)
    } else {
        specdec_q8_quantize(x, n, count, p.qs, p.d, p.s, p.blockStride)
    }
}

/// Rows `rowCount` of a Q4_0/Q4_1/Q8_0 matrix times quantized activations (see `ActivationQuant`).
@inline(__always)
func q8MatMul(_ type: QuantType, rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int, _ a: Q8ActivationPointers,
              n: Int, count: Int, into y: UnsafeMutablePointer<Float>, yStride: Int, path: KernelPath) {
    let code = type.q8WeightCode!
    if path == .avx2 && cpuSupportsAVX2 {
        specdec_q8_matmul_avx2(code, rows, rowBytes, rowCount, a.qs, a.d, a.s, a.blockStride, n, count, y, yStride)
    } else {
        specdec_q8_matmul(code, rows, rowBytes, rowCount, a.qs, a.d, a.s, a.blockStride, n, count, y, yStride)
    }
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

/// The `q8` kernel directly: `y[t * yStride + r] = row r · x̂_t` for `rowCount` rows of a
/// Q4_0/Q4_1/Q8_0 matrix and the `n` activation rows `x` (quantized here), single-threaded.
public func q8MatMul(_ type: QuantType, rows: UnsafeRawPointer, rowBytes: Int, rowCount: Int,
                     x: UnsafePointer<Float>, n: Int, count: Int, into y: UnsafeMutablePointer<Float>, yStride: Int,
                     path: KernelPath = .active) {
    precondition(type.hasQ8ActivationKernel, "q8MatMul: no int8-activation kernel for \(type)")
    precondition(count >= 0 && count % 32 == 0 && rowBytes >= type.rowBytes(count)!, "q8MatMul: bad sizes")
    precondition(path != .avx2 || cpuSupportsAVX2, "q8MatMul: the AVX2 kernels need an AVX2/FMA/F16C CPU")
    withQ8Activations(x, n: n, count: count, path: path) { a in
        q8MatMul(type, rows: rows, rowBytes: rowBytes, rowCount: rowCount, a, n: n, count: count, into: y, yStride: yStride, path: path)
    }
}
