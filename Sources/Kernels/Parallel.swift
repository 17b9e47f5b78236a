import Dispatch

/// Splits `0..<count` into at most `threads` contiguous chunks and runs them concurrently.
/// Each index is processed by exactly one chunk, so results never depend on the thread count.
@inline(__always)
public func parallelChunks(_ count: Int, threads: Int, minChunk: Int = 1, _ body: (Range<Int>) -> Void) {
    let chunks = max(1, min(threads, count / max(minChunk, 1)))
    if chunks == 1 {
        body(0..<count)
        return
    }
    DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = count * c / chunks
        let hi = count * (c + 1) / chunks
        body(lo..<hi)
    }
}
