// One query head's softmax attention over cached key/value rows (AVX2 + FMA).
//
// The result for a query depends only on the query, the rows its slot list names (in that
// order), `headDim` and `scale`: never on how many other queries a forward carries, so a token
// verified inside a draft tree gets the same bits as when decoded alone.

import CKernelsSupport

/// e^x for x ≤ 0 (softmax exponents), Cephes' expf: x = n·ln2 + r with |r| ≤ ln2/2, a degree-7
/// polynomial for e^r, and 2^n built in the exponent bits. Inputs below −87.3 give ≈ 2^−126
/// instead of 0 (harmless next to the maximum's e^0 = 1). About 1 ulp; fixed operation order.
@inline(__always)
func exp8(_ v: SIMD8<Float>) -> SIMD8<Float> {
    let x = v.replacing(with: -87.336_54, where: v .< -87.336_54)
    // n = round(x·log2 e) (x·log2 e = x + 0.4427·x): adding 1.5·2^23 rounds to an integer held
    // in the low mantissa bits (Swift's generic SIMD rounding and Float→Int32 conversion are
    // slow per-lane loops, so neither is used).
    let shifted = x.addingProduct(x, 0.442_695_04) + 12_582_912
    let n = shifted - 12_582_912
    var r = x.addingProduct(n, -0.693_359_375)                                      // ln 2 in two parts
    r = r.addingProduct(n, 2.121_944_4e-4)
    var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
    p = SIMD8(repeating: 1.398_199_95e-3).addingProduct(p, r)
    p = SIMD8(repeating: 8.333_451_9e-3).addingProduct(p, r)
    p = SIMD8(repeating: 4.166_579_6e-2).addingProduct(p, r)
    p = SIMD8(repeating: 1.666_666_55e-1).addingProduct(p, r)
    p = SIMD8(repeating: 5.000_000_1e-1).addingProduct(p, r)
    let y = (r + 1).addingProduct(p, r * r)
    // 2^n: shifted + 127 holds n + 127 in its low mantissa bits; the shift moves them into the
    // exponent field and drops the rest.
    let biased = unsafeBitCast(shifted + 127, to: SIMD8<UInt32>.self)
    return y * unsafeBitCast(biased &<< 23, to: SIMD8<Float>.self)
}

/// q · k over `hd` (a multiple of 8) elements: two FMA accumulators over 16 at a time.
@inline(__always)
func attentionDot8(_ q: UnsafeRawPointer, _ k: UnsafeRawPointer, _ hd: Int) -> Float {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
    var e = 0
    while e + 16 <= hd {
        a0 = a0.addingProduct(q.loadUnaligned(fromByteOffset: 4 * e, as: SIMD8<Float>.self),
                              k.loadUnaligned(fromByteOffset: 4 * e, as: SIMD8<Float>.self))
        a1 = a1.addingProduct(q.loadUnaligned(fromByteOffset: 4 * e + 32, as: SIMD8<Float>.self),
                              k.loadUnaligned(fromByteOffset: 4 * e + 32, as: SIMD8<Float>.self))
        e += 16
    }
    if e < hd {
        a0 = a0.addingProduct(q.loadUnaligned(fromByteOffset: 4 * e, as: SIMD8<Float>.self),
                              k.loadUnaligned(fromByteOffset: 4 * e, as: SIMD8<Float>.self))
    }
    return hsum8(a0 + a1)
}

/// Keys ahead whose rows the first head of a group asks for. The cache is read in slot order, a
/// key/value head's rows interleaved with the other heads' (strided), and on Zen 1 the hardware
/// prefetcher fell behind: a third of the kernel's time stalled on the key loads. Measured there
/// (`bench`, 2 threads, three interleaved rounds): 0 / 8 / 16 / 24 / 64 keys; 8 best, tg64 after
/// a 500-token prompt 63.9 -> 73.1 tok/s, a verify of 2 tokens at context 1024 33.0 -> 22.9 ms.
let attentionPrefetch = 8

/// Prefetches the `bytes` bytes of a cached row.
@inline(__always)
func prefetchRow(_ p: UnsafeRawPointer, bytes: Int) {
    var o = 0
    while o < bytes { specdec_prefetch(p + o); o &+= 64 }
    specdec_prefetch(p + (bytes &- 1))
}

/// Rows per block: the keys and values of a block (16 KB each at headDim 64) stay in L1 while
/// every head of the group reads them, so the cache is streamed from L2/L3 once per group
/// instead of once per head.
let attentionBlock = 64

/// For each of `heads` consecutive query heads h (q + h·headDim, out + h·headDim) that share
/// one key/value head: `out_h = Σ_s softmax_s(scale · q_h·k_s) · v_s` over the rows
/// `keys + slots[s] * rowStride` (values likewise), s < count. `scores` holds heads × count
/// floats of scratch. Each head's arithmetic is the same whatever `heads` is (the grouping only
/// changes the memory traffic). `headDim` must be a multiple of 8 and count ≥ 1.
@inline(never)
public func avx2AttendHeads(q: UnsafePointer<Float>, heads: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                            rowStride: Int, slots: UnsafePointer<Int>, count: Int, headDim hd: Int, scale: Float,
                            scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
    var maxima = (SIMD8<Float>(repeating: -.infinity), SIMD8<Float>(repeating: -.infinity))
    var b0 = 0
    while b0 < count {
        let b1 = min(count, b0 + attentionBlock)
        for h in 0..<heads {
            let qr = UnsafeRawPointer(q + h &* hd), sc = scores + h &* count
            var m = h < 8 ? maxima.0[h] : maxima.1[h - 8]
            for s in b0..<b1 {
                if h == 0, s &+ attentionPrefetch < count {
                    prefetchRow(UnsafeRawPointer(keys + slots[s &+ attentionPrefetch] &* rowStride), bytes: 4 &* hd)
                }
                let x = attentionDot8(qr, UnsafeRawPointer(keys + slots[s] &* rowStride), hd) * scale
                sc[s] = x
                m = max(m, x)
            }
            if h < 8 { maxima.0[h] = m } else { maxima.1[h - 8] = m }
        }
        b0 = b1
    }
    var inverse = (SIMD8<Float>(), SIMD8<Float>())
    for h in 0..<heads {
        let inv = 1 / softmaxNumerators(scores + h &* count, count, h < 8 ? maxima.0[h] : maxima.1[h - 8])
        if h < 8 { inverse.0[h] = inv } else { inverse.1[h - 8] = inv }
    }
    // Σ w_s v_s with 64 output dims held in 8 registers, block by block (the partial sums
    // round-trip through `out` between blocks, which leaves every bit as in one pass).
    let vr = UnsafeRawPointer(values)
    b0 = 0
    while b0 < count {
        let b1 = min(count, b0 + attentionBlock)
        for h in 0..<heads {
            let sc = scores + h &* count, inv = h < 8 ? inverse.0[h] : inverse.1[h - 8]
            let orw = UnsafeMutableRawPointer(out + h &* hd)
            var c = 0
            while c + 64 <= hd {
                let o = orw + 4 &* c
                var o0 = SIMD8<Float>(), o1 = SIMD8<Float>(), o2 = SIMD8<Float>(), o3 = SIMD8<Float>()
                var o4 = SIMD8<Float>(), o5 = SIMD8<Float>(), o6 = SIMD8<Float>(), o7 = SIMD8<Float>()
                if b0 > 0 {
                    o0 = o.loadUnaligned(as: SIMD8<Float>.self); o1 = o.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
                    o2 = o.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self); o3 = o.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self)
                    o4 = o.loadUnaligned(fromByteOffset: 128, as: SIMD8<Float>.self); o5 = o.loadUnaligned(fromByteOffset: 160, as: SIMD8<Float>.self)
                    o6 = o.loadUnaligned(fromByteOffset: 192, as: SIMD8<Float>.self); o7 = o.loadUnaligned(fromByteOffset: 224, as: SIMD8<Float>.self)
                }
                for s in b0..<b1 {
                    if h == 0, c == 0, s &+ attentionPrefetch < count {
                        prefetchRow(vr + 4 &* (slots[s &+ attentionPrefetch] &* rowStride), bytes: 4 &* hd)
                    }
                    let w = SIMD8<Float>(repeating: sc[s] * inv)
                    let row = vr + 4 &* (slots[s] &* rowStride &+ c)
                    o0 = o0.addingProduct(w, row.loadUnaligned(as: SIMD8<Float>.self))
                    o1 = o1.addingProduct(w, row.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self))
                    o2 = o2.addingProduct(w, row.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self))
                    o3 = o3.addingProduct(w, row.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self))
                    o4 = o4.addingProduct(w, row.loadUnaligned(fromByteOffset: 128, as: SIMD8<Float>.self))
                    o5 = o5.addingProduct(w, row.loadUnaligned(fromByteOffset: 160, as: SIMD8<Float>.self))
                    o6 = o6.addingProduct(w, row.loadUnaligned(fromByteOffset: 192, as: SIMD8<Float>.self))
                    o7 = o7.addingProduct(w, row.loadUnaligned(fromByteOffset: 224, as: SIMD8<Float>.self))
                }
                o.storeBytes(of: o0, as: SIMD8<Float>.self); o.storeBytes(of: o1, toByteOffset: 32, as: SIMD8<Float>.self)
                o.storeBytes(of: o2, toByteOffset: 64, as: SIMD8<Float>.self); o.storeBytes(of: o3, toByteOffset: 96, as: SIMD8<Float>.self)
                o.storeBytes(of: o4, toByteOffset: 128, as: SIMD8<Float>.self); o.storeBytes(of: o5, toByteOffset: 160, as: SIMD8<Float>.self)
                o.storeBytes(of: o6, toByteOffset: 192, as: SIMD8<Float>.self); o.storeBytes(of: o7, toByteOffset: 224, as: SIMD8<Float>.self)
                c += 64
            }
            while c < hd {
                let o = orw + 4 &* c
                var o0 = b0 > 0 ? o.loadUnaligned(as: SIMD8<Float>.self) : SIMD8<Float>()
                for s in b0..<b1 {
                    let row = vr + 4 &* (slots[s] &* rowStride &+ c)
                    o0 = o0.addingProduct(SIMD8<Float>(repeating: sc[s] * inv), row.loadUnaligned(as: SIMD8<Float>.self))
                }
                o.storeBytes(of: o0, as: SIMD8<Float>.self)
                c += 8
            }
        }
        b0 = b1
    }
}

/// scores[s] = e^(scores[s] − m) for s < count, 8 at a time (the last partial group padded
/// with −∞, whose lanes are neither stored nor summed); returns their sum.
@inline(__always)
func softmaxNumerators(_ scores: UnsafeMutablePointer<Float>, _ count: Int, _ m: Float) -> Float {
    let sr = UnsafeMutableRawPointer(scores)
    let mv = SIMD8<Float>(repeating: m)
    var acc = SIMD8<Float>()
    var s = 0
    while s + 8 <= count {
        let e = exp8(sr.loadUnaligned(fromByteOffset: 4 * s, as: SIMD8<Float>.self) - mv)
        sr.storeBytes(of: e, toByteOffset: 4 * s, as: SIMD8<Float>.self)
        acc += e
        s += 8
    }
    var sum = hsum8(acc)
    if s < count {
        var tail = SIMD8<Float>(repeating: -.infinity)
        for i in 0..<(count - s) { tail[i] = scores[s + i] }
        let e = exp8(tail - mv)
        for i in 0..<(count - s) { scores[s + i] = e[i]; sum += e[i] }
    }
    return sum
}
