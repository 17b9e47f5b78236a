import ArgumentParser
import Kernels

/// Hidden self-test: the tests run it under each OpenBLAS core type specdec may choose.
struct BLASCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blas-check", abstract: "Check OpenBLAS sgemm against a float64 reference.", shouldDisplay: false)

    struct Output: Encodable { var core: String; var max_relative_error: Double; var ok: Bool }

    func run() throws {
        let err = checkSgemm()
        let ok = err < 1e-5
        try printJSON(Output(core: OpenBLASCore.current, max_relative_error: err, ok: ok))
        if !ok { throw ExitCode.failure }
    }
}
