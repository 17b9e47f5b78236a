/// Keys and values of a decoder's layers: `capacity` slots of `width` floats per layer (slot i of
/// layer l at `keys(l) + i · width`). The one cache type of the target session and the draft:
/// the session's is sized to its context once; the draft's grows as entries arrive.
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    /// Floats per slot: kv heads × head size.
    public let width: Int
    public private(set) var capacity: Int
    private var keyStore: [UnsafeMutablePointer<Float>]
    private var valueStore: [UnsafeMutablePointer<Float>]

    public init(layers: Int, width: Int, capacity: Int) {
        self.layers = layers; self.width = width; self.capacity = max(capacity, 1)
        keyStore = (0..<layers).map { _ in .allocate(capacity: max(capacity, 1) * width) }
        valueStore = (0..<layers).map { _ in .allocate(capacity: max(capacity, 1) * width) }
    }

    deinit {
        keyStore.forEach { $0.deallocate() }
        valueStore.forEach { $0.deallocate() }
    }

    @inline(__always) public func keys(_ layer: Int) -> UnsafeMutablePointer<Float> { keyStore[layer] }
    @inline(__always) public func values(_ layer: Int) -> UnsafeMutablePointer<Float> { valueStore[layer] }

    /// Makes room for `slots` slots, keeping the filled ones (at least doubling, so appends stay
    /// amortised O(1)). Pointers from `keys`/`values` are invalid afterwards.
    public func grow(toHold slots: Int) {
        guard slots > capacity else { return }
        let newCapacity = max(slots, capacity * 2)
        for l in 0..<layers {
            for store in [\KVCache.keyStore, \KVCache.valueStore] {
                let old = self[keyPath: store][l]
                let new = UnsafeMutablePointer<Float>.allocate(capacity: newCapacity * width)
                new.update(from: old, count: capacity * width)
                old.deallocate()
                self[keyPath: store][l] = new
            }
        }
        capacity = newCapacity
    }

    /// Keeps the batch entries `kept` (ascending indices into the batch that starts at slot
    /// `batchStart`, e.g. the accepted path of a draft tree) and moves them, in every layer, to
    /// consecutive slots from `batchStart` on.
    public func compact(batchStart: Int, keeping kept: [Int], filled: Int) {
        for (dst, src) in kept.enumerated() where dst != src {
            precondition(src > dst && batchStart + src < filled, "compact: kept entries must be ascending batch indices")
            for l in 0..<layers {
                (keyStore[l] + (batchStart + dst) * width).update(from: keyStore[l] + (batchStart + src) * width, count: width)
                (valueStore[l] + (batchStart + dst) * width).update(from: valueStore[l] + (batchStart + src) * width, count: width)
            }
        }
    }
}
