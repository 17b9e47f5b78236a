import Foundation
import Kernels
import Testing

@Suite struct OpenBLASCoreTests {
    @Test func overrideOnlyWhenFallenBackOnAFasterCPU() {
        let avx512: Set<String> = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"]
        #expect(OpenBLASCore.override(detected: "Prescott", cpuFlags: avx512, environment: [:]) == "SkylakeX")
        #expect(OpenBLASCore.override(detected: "Prescott", cpuFlags: ["avx2", "fma"], environment: [:]) == "Haswell")
        #expect(OpenBLASCore.override(detected: "Prescott", cpuFlags: ["sse3"], environment: [:]) == nil)
        #expect(OpenBLASCore.override(detected: "Zen", cpuFlags: avx512, environment: [:]) == nil)
        #expect(OpenBLASCore.override(detected: "SkylakeX", cpuFlags: avx512, environment: [:]) == nil)
        #expect(OpenBLASCore.override(detected: "Prescott", cpuFlags: avx512, environment: ["OPENBLAS_CORETYPE": "Prescott"]) == nil)
    }

    /// sgemm is right under the core specdec runs on by default (after any re-exec) and under each
    /// core type it may force on this CPU.
    @Test func sgemmIsCorrectUnderEveryCoreTypeSpecdecMayChoose() throws {
        let flags = OpenBLASCore.cpuFlags()
        var cores: [String?] = [nil]
        if let c = OpenBLASCore.override(detected: "Prescott", cpuFlags: flags, environment: [:]) { cores.append(c) }
        for core in cores {
            let r = try CLI.run(["blas-check"], env: core.map { ["OPENBLAS_CORETYPE": $0] } ?? [:])
            #expect(r.status == 0, "core \(core ?? "default"): \(r.stdout) \(r.stderr)")
            let o = try CLI.json(r.stdout)
            #expect(o["ok"] as? Bool == true)
            if let core { #expect(o["core"] as? String == core) }
            // The default never stays on a fallback core when the CPU has a better one.
            if core == nil, OpenBLASCore.override(detected: "Prescott", cpuFlags: flags, environment: [:]) != nil {
                #expect(o["core"] as? String != "Prescott")
            }
        }
    }
}
