import Prometheus

/// The server's Prometheus metrics (`GET /metrics`, text format 0.0.4).
final class ServeMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let requests, errors, rejected, cancelled, promptTokens, completionTokens, speculativeRequests: Counter
    let queueDepth, active, tokensPerSecond, tau: Gauge
    let requestTokensPerSecond: ValueHistogram

    init() {
        requests = registry.makeCounter(descriptor: .init(namespace: "specdec", metricName: "requests", unitName: "total", helpText: "Generation requests answered (any status)"))
        errors = registry.makeCounter(descriptor: .init(namespace: "specdec", metricName: "request_errors", unitName: "total", helpText: "Requests answered with a 4xx or 5xx error"))
        rejected = registry.makeCounter(descriptor: .init(namespace: "specdec", metricName: "requests_rejected", unitName: "total", helpText: "Requests refused because the queue was full (429)"))
        cancelled = registry.makeCounter(descriptor: .init(namespace: "specdec", metricName: "requests_cancelled", unitName: "total", helpText: "Requests whose client went away before the end"))
        promptTokens = registry.makeCounter(descriptor: .init(namespace: "specdec", metricName: "prompt_tokens", unitName: "total", helpText: "Prompt tokens prefilled"))
        completionTokens = registry.makeCounter(descriptor: .init(namespace: "specdec", metricName: "completion_tokens", unitName: "total", helpText: "Tokens generated"))
        queueDepth = registry.makeGauge(descriptor: .init(namespace: "specdec", metricName: "queue", unitName: "depth", helpText: "Requests waiting for a slot"))
        active = registry.makeGauge(descriptor: .init(namespace: "specdec", metricName: "active", unitName: "requests", helpText: "Requests being decoded"))
        tokensPerSecond = registry.makeGauge(descriptor: .init(namespace: "specdec", metricName: "decode_tokens_per", unitName: "second", helpText: "Decode speed of the last finished request"))
        tau = registry.makeGauge(descriptor: .init(namespace: "specdec", metricName: "tau", unitName: "", helpText: "Accepted draft tokens per target forward of the last speculative request"))
        speculativeRequests = registry.makeCounter(descriptor: .init(namespace: "specdec", metricName: "speculative_requests", unitName: "total", helpText: "Requests decoded speculatively"))
        requestTokensPerSecond = registry.makeValueHistogram(
            descriptor: .init(namespace: "specdec", metricName: "request_decode_tokens_per", unitName: "second",
                              helpText: "Decode speed per finished request"),
            buckets: [10, 25, 50, 75, 100, 150, 200, 300, 500])
    }

    func record(_ c: Completion) {
        promptTokens.increment(by: Int64(c.promptTokens))
        completionTokens.increment(by: Int64(c.completionTokens))
        tokensPerSecond.set(c.report.decode_tokens_per_s)
        requestTokensPerSecond.record(c.report.decode_tokens_per_s)
        if c.report.mode == "speculative" { speculativeRequests.increment() }
    }

    func text() -> [UInt8] { registry.emitToBuffer() }
}
