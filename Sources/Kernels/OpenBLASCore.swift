#if canImport(Glibc)
import Glibc
#endif
import COpenBLAS

/// Makes sure OpenBLAS runs kernels that fit the CPU. Debian's OpenBLAS 0.3.21 does not know
/// recent Xeons and falls back to its SSE3 "Prescott" kernels, 4.5× slower on sgemm. The core
/// type can only be chosen through `OPENBLAS_CORETYPE` before the library loads, so a process
/// that finds itself on a fallback core re-executes itself once with the variable set.
public enum OpenBLASCore {
    /// Core type OpenBLAS picked in this process.
    public static var current: String { String(cString: openblas_get_corename()) }

    /// Cores OpenBLAS falls back to when it does not recognise a CPU.
    static let fallbackCores: Set<String> = ["Prescott", "Core2", "Nehalem", "Barcelona", "Atom", "Generic"]

    /// The core type to force, or nil when the detected one is fine (or the user chose one).
    public static func override(detected: String, cpuFlags: Set<String>, environment: [String: String]) -> String? {
        guard environment["OPENBLAS_CORETYPE"] == nil, fallbackCores.contains(detected) else { return nil }
        if cpuFlags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]) { return "SkylakeX" }
        if cpuFlags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// Flags of the first processor in /proc/cpuinfo (empty elsewhere).
    public static func cpuFlags() -> Set<String> {
        guard let f = fopen("/proc/cpuinfo", "r") else { return [] }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>?
        var cap = 0
        defer { free(line) }
        while getline(&line, &cap, f) > 0, let l = line {
            let s = String(cString: l)
            if s.hasPrefix("flags") {
                let value = s.split(separator: ":", maxSplits: 1).last ?? ""
                return Set(value.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init))
            }
        }
        return []
    }

    /// Call first thing in `main`: re-executes the program with `OPENBLAS_CORETYPE` set when
    /// OpenBLAS fell back to slow kernels on a CPU that has fast ones. Returns if nothing is to be
    /// done or the re-exec fails (the program then simply runs on the slower kernels).
    public static func reexecIfNeeded() {
        var env: [String: String] = [:]
        if getenv("OPENBLAS_CORETYPE") != nil { env["OPENBLAS_CORETYPE"] = "set" }
        guard let core = override(detected: current, cpuFlags: cpuFlags(), environment: env) else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        let args = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", args)
        // execv only returns on failure: carry on with the kernels we have.
        unsetenv("OPENBLAS_CORETYPE")
    }
}
