import Foundation
import GGUF
import TestSupport
import Tokenizer

struct SetupMissing: Error, CustomStringConvertible {
    var description: String
}

/// The real SmolLM2 model, loaded once for all tests.
enum TestModel {
    private static let loaded: Result<Loaded, any Error> = Result {
        let path = TestPaths.model
        guard FileManager.default.fileExists(atPath: path) else {
            throw SetupMissing(description: "model not found at \(path): run scripts/setup.sh (or set SPECDEC_MODEL)")
        }
        let gguf = try GGUFFile(path: path)
        return Loaded(gguf: gguf, tokenizer: try BPETokenizer(gguf: gguf))
    }

    struct Loaded: Sendable {
        let gguf: GGUFFile
        let tokenizer: BPETokenizer
    }

    static func gguf() throws -> GGUFFile { try loaded.get().gguf }
    static func tokenizer() throws -> BPETokenizer { try loaded.get().tokenizer }

    /// The same vocabulary and merges with another pre-tokenizer.
    static func tokenizer(pre: PreTokenizer) throws -> BPETokenizer {
        let g = try gguf()
        let t = try tokenizer()
        return try BPETokenizer(tokens: t.tokens, tokenTypes: t.tokenTypes,
                                merges: try g.stringArray("tokenizer.ggml.merges"), preTokenizer: pre,
                                bosTokenId: t.bosTokenId.map(Int.init), eosTokenId: t.eosTokenId.map(Int.init),
                                addBosToken: t.addBosToken, source: g.path)
    }
}

/// Small deterministic generator (SplitMix64) so that randomized tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A byte-level vocabulary: the 256 single bytes (ids 0...255, in byte order), then `extra`.
func byteVocabulary(_ extra: [String] = []) -> [String] {
    ByteLevel.byteToScalar.map { String(Character($0)) } + extra
}

extension BPETokenizer {
    /// What `decode(encode(s))` must give: the bytes of `s` without those that have no token.
    func encodableBytes(_ s: String) -> [UInt8] {
        s.utf8.filter { !unencodableBytes.contains($0) }
    }

    /// What `decodeString(encode(s))` must give (`s` itself unless it has bytes without a token).
    func encodable(_ s: String) -> String {
        String(decoding: encodableBytes(s), as: UTF8.self)
    }
}
