import Foundation

/// Where specdec keeps what it fetched or measured once: `$SPECDEC_CACHE`, else
/// `~/.cache/specdec` (the model `scripts/setup.sh` fetched, verify-cost curves). The one rule;
/// `scripts/setup.sh` follows it too.
public enum CacheDirectory {
    public static var path: String {
        let env = ProcessInfo.processInfo.environment
        return env["SPECDEC_CACHE"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache/specdec")
    }

    public static let defaultModelName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    /// The target commands load without `-m`: `$SPECDEC_MODEL`, else the setup script's model.
    public static var defaultModel: String {
        if let m = ProcessInfo.processInfo.environment["SPECDEC_MODEL"], !m.isEmpty { return m }
        return path + "/" + defaultModelName
    }
}
