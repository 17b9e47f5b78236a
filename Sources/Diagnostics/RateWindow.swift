/// Rates over a sliding time window, as tqdm smooths its rate: a long job paused by its owner
/// (`kill -STOP` while a benchmark runs) or sharing its cores would otherwise report its whole
/// run's average, and an ETA hours off, long after it is back to full speed. `synth-data` and
/// `train-adapter` print their progress rates and ETAs from it.
public struct RateWindow: Sendable {
    public let window: Double
    private var marks: [(t: Double, items: Int, tokens: Int)] = []
    private var first = 0

    public init(window: Double = 60) { self.window = window }

    /// Records the cumulative counts at time `t` (seconds, non-decreasing) and returns the rates
    /// since the newest mark at least `window` seconds old (the oldest mark while the run is
    /// younger than that); nil for the first mark.
    public mutating func add(t: Double, items: Int, tokens: Int) -> (itemsPerSecond: Double, tokensPerSecond: Double)? {
        marks.append((t, items, tokens))
        while first + 1 < marks.count - 1 && marks[first + 1].t <= t - window { first += 1 }
        if first > 4096 { marks.removeFirst(first); first = 0 }
        let a = marks[first]
        guard marks.count - first >= 2, t > a.t else { return nil }
        return (Double(items - a.items) / (t - a.t), Double(tokens - a.tokens) / (t - a.t))
    }
}
