import Foundation

/// Runs the built `specdec` binary the way a user does, with the test model as SPECDEC_MODEL.
public enum SpecdecCLI {
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    public struct NotJSON: Error, CustomStringConvertible {
        public var text: String
        public var description: String { "not a JSON object: \(text.prefix(300))" }
    }

    /// A configured, not yet started process and its output pipes. `env` sets variables, `unset`
    /// removes inherited ones (e.g. a CI's SLURM variables that would shard a synth-data run).
    public static func process(_ args: [String], env: [String: String] = [:], unset: [String] = []) -> (Process, Pipe, Pipe) {
        let p = Process()
        p.executableURL = TestPaths.specdecBinary
        p.arguments = args
        var e = ProcessInfo.processInfo.environment
        e["SPECDEC_MODEL"] = TestPaths.model
        for k in unset { e[k] = nil }
        for (k, v) in env { e[k] = v }
        p.environment = e
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        return (p, out, err)
    }

    /// Runs to completion; stdout and stderr are read concurrently so that neither pipe fills up.
    public static func run(_ args: [String], env: [String: String] = [:], unset: [String] = []) throws -> Result {
        let (p, out, err) = process(args, env: env, unset: unset)
        try p.run()
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        done.wait()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: errBox.data, as: UTF8.self))
    }

    public static func json(_ s: String) throws -> [String: Any] {
        guard let o = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] else { throw NotJSON(text: s) }
        return o
    }
}
