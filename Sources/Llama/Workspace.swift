/// The activation buffers of one forward pass (llama2.c's `RunState`). A session keeps one and
/// reuses it from call to call, so that a decode or verify step allocates only its outputs (a
/// batched step of several sessions uses its first session's).
final class Workspace {
    let rows: Int
    /// The residual stream, the normed input of each sub-block, and the attention's queries,
    /// output and projection: rows × width.
    let x, h, q, attn, proj: UnsafeMutablePointer<Float>
    /// Keys and values: rows × kvWidth.
    let k, v: UnsafeMutablePointer<Float>
    /// The feed-forward's gate and up projections: rows × ffnWidth.
    let gate, up: UnsafeMutablePointer<Float>

    init(config c: LlamaConfig, rows n: Int) {
        rows = n
        let d = c.width
        x = .allocate(capacity: n * d); h = .allocate(capacity: n * d); q = .allocate(capacity: n * d)
        attn = .allocate(capacity: n * d); proj = .allocate(capacity: n * d)
        k = .allocate(capacity: n * c.kvWidth); v = .allocate(capacity: n * c.kvWidth)
        gate = .allocate(capacity: n * c.ffnWidth); up = .allocate(capacity: n * c.ffnWidth)
    }

    deinit {
        for p in [x, h, q, attn, proj, k, v, gate, up] { p.deallocate() }
    }
}
