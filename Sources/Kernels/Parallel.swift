/// Splits `0..<count` into contiguous chunks of at least `minChunk` indices (a few per thread,
/// so that a late or preempted thread leaves little for the others to wait on) and runs them on
/// up to `threads` threads of the shared pool, the caller included. Each index is processed by
/// exactly one chunk, so results never depend on the thread count.
@inline(__always)
public func parallelChunks(_ count: Int, threads: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
    let chunks = threads <= 1 ? 1 : max(1, min(threads * chunksPerThread, count / max(minChunk, 1)))
    if chunks == 1 {
        body(0..<count)
        return
    }
    parallelFor(chunks, threads: threads) { c in
        body((count * c / chunks)..<(count * (c + 1) / chunks))
    }
}

/// Chunks per thread that `parallelChunks` and `PackedMatrix.multiply` aim for.
let chunksPerThread = 4
