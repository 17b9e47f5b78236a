import Foundation
import Testing
import TestSupport
import Tokenizer

@Suite("Encoding speed (printed, not asserted)")
struct SpeedTests {
    @Test("tokens/s on a long text")
    func speed() throws {
        let tok = try TestModel.tokenizer()
        let base = try GoldenCase.load().map(\.text).joined(separator: "\n\n")
        var text = ""
        var i = 0
        while text.utf8.count < 1_000_000 {
            text += base + " \(i) "
            i += 1
        }
        // Cold: a fresh tokenizer (empty cache); warm: the same text again.
        let fresh = try TestModel.tokenizer(pre: .smollm)
        let clock = ContinuousClock()
        var ids: [Int32] = []
        let cold = clock.measure { ids = fresh.encode(text) }
        var again: [Int32] = []
        let warm = clock.measure { again = fresh.encode(text) }
        #expect(ids == again)
        #expect(ids == tok.encode(text))
        func rate(_ d: Duration) -> String {
            let s = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            return String(format: "%.2f M tokens/s, %.1f MB/s", Double(ids.count) / s / 1e6, Double(text.utf8.count) / s / 1e6)
        }
        print("tokenizer speed: \(ids.count) tokens from \(text.utf8.count) bytes; cold \(rate(cold)); warm \(rate(warm))")
        #expect(tok.decodeString(ids) == text)
    }
}
