import Foundation
import Testing
import Tokenizer

/// Random strings tokenized by HF `tokenizers` with the SmolLM2 vocabulary and each pre-tokenizer
/// (Fixtures/make_tokenizer_fixture.py regenerates the file).
@Suite("Randomized cross-check against HF tokenizers")
struct CrossCheckTests {
    struct Case: Decodable {
        let s: String
        let ids: [Int32]
    }

    static func fixture() throws -> [String: [Case]] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tokenizer_crosscheck.json")
        return try JSONDecoder().decode([String: [Case]].self, from: Data(contentsOf: url))
    }

    @Test("Same ids as HF for every fixture string", arguments: PreTokenizer.allCases)
    func crossCheck(_ pre: PreTokenizer) throws {
        let cases = try #require(try Self.fixture()[pre.rawValue])
        #expect(cases.count >= 350)
        let tok = pre == .smollm ? try TestModel.tokenizer() : try TestModel.tokenizer(pre: pre)
        var failures = 0
        for c in cases {
            let ids = tok.encode(c.s)
            if ids != c.ids {
                failures += 1
                if failures <= 10 {
                    Issue.record("\(pre.rawValue): \(c.s.debugDescription): got \(ids), HF \(c.ids); pieces \(pre.split(c.s))")
                }
            }
        }
        #expect(failures == 0, "\(failures) of \(cases.count) strings differ")
    }
}
