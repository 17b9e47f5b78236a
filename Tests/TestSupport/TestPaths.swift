import Foundation

/// Where tests find the real model and the shared golden data.
public enum TestPaths {
    /// Repository root, from this file's location (Tests/TestSupport/TestPaths.swift).
    public static let repoRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `../shared/reference` beside the checkout, or `SPECDEC_REFERENCE`.
    public static var referenceDir: URL {
        if let p = ProcessInfo.processInfo.environment["SPECDEC_REFERENCE"] { return URL(fileURLWithPath: p) }
        return repoRoot.deletingLastPathComponent().appendingPathComponent("shared/reference")
    }

    /// Whether the model `scripts/setup.sh` fetches is present (suites that need it are skipped,
    /// with the reason shown, when it is not).
    public static var hasModel: Bool { FileManager.default.fileExists(atPath: model) }
    /// Whether the float64 reference (`../shared/reference`) is present.
    public static var hasReference: Bool {
        FileManager.default.fileExists(atPath: referenceDir.appendingPathComponent("golden_public.json").path)
    }

    /// The built `specdec` binary: it sits beside the test bundle in the build folder (or above it,
    /// where the test binary lives inside a .xctest bundle folder).
    public static let specdecBinary: URL = {
        let exe = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        var dir = exe.deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("specdec").path), dir.path != "/" {
            dir = dir.deletingLastPathComponent()
        }
        return dir.appendingPathComponent("specdec")
    }()

    /// The model `scripts/setup.sh` fetched: `SPECDEC_MODEL`, else `$SPECDEC_CACHE` or ~/.cache/specdec.
    public static var model: String {
        let env = ProcessInfo.processInfo.environment
        if let m = env["SPECDEC_MODEL"] { return m }
        let cache = env["SPECDEC_CACHE"] ?? (NSHomeDirectory() + "/.cache/specdec")
        return cache + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    }
}

/// One record of `golden_public.json` (fields as `ref_llama.py` writes them).
public struct GoldenCase: Decodable, Sendable {
    public let name: String
    public let chat: Bool
    public let text: String
    public let input: String
    public let ids: [Int]
    public let last_top20: [[Double]]
    public let argmax_per_position: [Int]
    public let max_logit_per_position: [Double]
    public let greedy: [Int]
    public let greedy_text: String
    public let greedy_margins: [Double]
    public let last_margin: Double

    /// Loads the golden cases; throws (failing the test) when the reference is absent.
    public static func load() throws -> [GoldenCase] {
        let url = TestPaths.referenceDir.appendingPathComponent("golden_public.json")
        return try JSONDecoder().decode([GoldenCase].self, from: Data(contentsOf: url))
    }
}
