#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KernelsAVX2

/// Softmax attention of `heads` consecutive query heads (q + h·headDim, out + h·headDim) that
/// share one key/value head: `out_h = Σ_s softmax_s(scale · q_h·k_s) · v_s`, where row s is
/// `keys + slots[s] * rowStride` (values likewise), for s < count (count ≥ 1). `scores` is
/// scratch for heads × count floats. Grouping the heads of a key/value head reads the cache once
/// for all of them.
///
/// Batch invariance: a head's result depends only on its query, the named rows in slot order,
/// `headDim` and `scale` — not on the other heads or queries of a forward — so a token scored
/// inside a verification batch gets the bits it gets when decoded alone. The AVX2 path
/// (headDim a multiple of 8) uses FMAs and a polynomial exp, the portable path libm's expf:
/// compare paths with a tolerance.
public func attendHeads(q: UnsafePointer<Float>, heads: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                        rowStride: Int, slots: UnsafePointer<Int>, count: Int, headDim: Int, scale: Float,
                        scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, path: KernelPath = .active) {
    precondition(count >= 1 && headDim >= 1 && heads >= 1, "attendHeads: needs a head, a row and a dimension")
    if path == .avx2, headDim % 8 == 0 {
        precondition(cpuSupportsAVX2, "attendHeads: the AVX2 kernels need an AVX2/FMA/F16C CPU")
        // The kernel keeps per-head maxima in registers for up to 16 heads.
        var h0 = 0
        while h0 < heads {
            let g = min(16, heads - h0)
            avx2AttendHeads(q: q + h0 * headDim, heads: g, keys: keys, values: values, rowStride: rowStride, slots: slots,
                            count: count, headDim: headDim, scale: scale, scores: scores, out: out + h0 * headDim)
            h0 += g
        }
        return
    }
    for h in 0..<heads {
        portableAttendHead(q: q + h * headDim, keys: keys, values: values, rowStride: rowStride, slots: slots, count: count,
                           headDim: headDim, scale: scale, scores: scores, out: out + h * headDim)
    }
}

/// Grouped-query attention of `n` queries (query i's heads at q + i·qStride, its output at
/// out + i·qStride) over cached key/value rows `kvHeads · headDim` floats apart, with one
/// `attendHeads` call per (query, key/value head) spread over `threads` — the split shared by
/// the target's forward and the draft's. `slots(i, buffer)` writes the rows query i may see, in
/// the order they are summed, into `buffer` (room for `maxSlots`) and returns their count; a
/// query with none is left as it is. Each query's result depends only on its own rows,
/// whatever the thread count.
public func groupedQueryAttention(q: UnsafePointer<Float>, qStride: Int, n: Int, heads: Int, kvHeads: Int, headDim hd: Int,
                                  keys: UnsafePointer<Float>, values: UnsafePointer<Float>, maxSlots: Int, threads: Int,
                                  out: UnsafeMutablePointer<Float>, slots: (Int, UnsafeMutablePointer<Int>) -> Int) {
    let group = heads / kvHeads, kvw = kvHeads * hd
    let scale = 1 / Float(hd).squareRoot()
    parallelChunks(n * kvHeads, threads: threads) { range in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, group * maxSlots)) { scores in
        withUnsafeTemporaryAllocation(of: Int.self, capacity: max(1, maxSlots)) { rows in
            var lastQuery = -1, count = 0
            for task in range {
                let i = task / kvHeads, g = task % kvHeads
                if i != lastQuery {
                    count = slots(i, rows.baseAddress!)
                    lastQuery = i
                }
                if count == 0 { continue }
                let head0 = i * qStride + g * group * hd
                attendHeads(q: q + head0, heads: group, keys: keys + g * hd, values: values + g * hd, rowStride: kvw,
                            slots: UnsafePointer(rows.baseAddress!), count: count, headDim: hd, scale: scale,
                            scores: scores.baseAddress!, out: out + head0)
            }
        }
        }
    }
}

func portableAttendHead(q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, rowStride: Int,
                        slots: UnsafePointer<Int>, count: Int, headDim hd: Int, scale: Float,
                        scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
    var m = -Float.infinity
    for s in 0..<count {
        let x = portableAttentionDot(q, keys + slots[s] * rowStride, hd) * scale
        scores[s] = x
        m = max(m, x)
    }
    var sum: Float = 0
    for s in 0..<count {
        let e = expf(scores[s] - m)
        scores[s] = e
        sum += e
    }
    for e in 0..<hd { out[e] = 0 }
    let inv = 1 / sum
    for s in 0..<count {
        let a = scores[s] * inv, v = values + slots[s] * rowStride
        let orw = UnsafeMutableRawPointer(out), vr = UnsafeRawPointer(v)
        let a8 = SIMD8<Float>(repeating: a)
        var e = 0
        while e + 8 <= hd {
            let cur = orw.loadUnaligned(fromByteOffset: 4 * e, as: SIMD8<Float>.self)
            orw.storeBytes(of: cur + a8 * vr.loadUnaligned(fromByteOffset: 4 * e, as: SIMD8<Float>.self), toByteOffset: 4 * e, as: SIMD8<Float>.self)
            e += 8
        }
        while e < hd {
            out[e] += a * v[e]
            e += 1
        }
    }
}

/// q · k: two 8-lane accumulators over 16 elements at a time, reduced pairwise, then an
/// in-order scalar tail; the order depends only on `hd`.
@inline(__always)
func portableAttentionDot(_ q: UnsafePointer<Float>, _ k: UnsafePointer<Float>, _ hd: Int) -> Float {
    let qr = UnsafeRawPointer(q), kr = UnsafeRawPointer(k)
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
    var e = 0
    while e + 16 <= hd {
        a0 += qr.loadUnaligned(fromByteOffset: 4 * e, as: SIMD8<Float>.self) * kr.loadUnaligned(fromByteOffset: 4 * e, as: SIMD8<Float>.self)
        a1 += qr.loadUnaligned(fromByteOffset: 4 * e + 32, as: SIMD8<Float>.self) * kr.loadUnaligned(fromByteOffset: 4 * e + 32, as: SIMD8<Float>.self)
        e += 16
    }
    let v = a0 + a1
    let h = v.lowHalf + v.highHalf
    var dot = (h[0] + h[2]) + (h[1] + h[3])
    while e < hd {
        dot += q[e] * k[e]
        e += 1
    }
    return dot
}
