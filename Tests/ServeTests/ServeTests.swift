import AsyncHTTPClient
@testable import Serve
import Foundation
import NIOCore
import NIOHTTP1
import Testing
import TestSupport
import Vision

// Integration tests of `specdec serve`: the real executable on a free loopback port, spoken to
// over HTTP by AsyncHTTPClient. Greedy answers are compared with `specdec decode`'s.

/// A running `specdec serve` process.
final class ServerProcess: @unchecked Sendable {
    let process: Process
    let url: String
    private let stderrPipe: Pipe

    init(_ args: [String]) throws {
        let (p, out, err) = SpecdecCLI.process(["serve", "--port", "0", "-t", "2"] + args)
        process = p
        stderrPipe = err
        try p.run()
        // The one line the server prints once it listens.
        var line = Data()
        let handle = out.fileHandleForReading
        while true {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty { break }
            if byte == Data("\n".utf8) {
                if String(decoding: line, as: UTF8.self).contains("listening on") { break }
                line.removeAll()
            } else { line.append(byte) }
        }
        let s = String(decoding: line, as: UTF8.self)
        guard let r = s.range(of: "http://") else {
            p.terminate()
            throw ServeTestError("the server did not start: \(s) \(String(decoding: err.fileHandleForReading.availableData, as: UTF8.self))")
        }
        url = String(s[r.lowerBound...].prefix { $0 != " " })
    }

    /// SIGTERM, then the exit status.
    func stop() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { process.terminate() } }
}

struct ServeTestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

struct Reply {
    var status: Int
    var headers: HTTPHeaders
    var body: String
    var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
    var errorMessage: String { ((json["error"] as? [String: Any])?["message"] as? String) ?? "" }
}

let client = HTTPClient(eventLoopGroupProvider: .singleton)

/// A sample's value in Prometheus text (a gauge may print as `0` or `0.0`, whichever the library writes).
func metric(_ name: String, in text: String) -> Double? {
    for line in text.split(separator: "\n") {
        let parts = line.split(separator: " ")
        if parts.count == 2, parts[0] == name { return Double(parts[1]) }
    }
    return nil
}

func call(_ server: ServerProcess, _ method: HTTPMethod = .POST, _ path: String, body: String? = nil,
          headers: [(String, String)] = []) async throws -> Reply {
    var req = HTTPClientRequest(url: server.url + path)
    req.method = method
    req.headers.add(name: "Content-Type", value: "application/json")
    for (k, v) in headers { req.headers.add(name: k, value: v) }
    if let body { req.body = .bytes(ByteBuffer(string: body)) }
    let resp = try await client.execute(req, timeout: .seconds(300))
    let buf = try await resp.body.collect(upTo: 1 << 26)
    return Reply(status: Int(resp.status.code), headers: resp.headers, body: String(buffer: buf))
}

/// Polls `/metrics` until `done` holds for its text, for up to 180 s of wall time (not a count of
/// polls: under the suite's load each poll may wait long); whether it held, and the text seen last.
/// A passing wait returns as soon as `done` holds; the bound only decides when a failing one gives
/// up. 30 s was too short on a slow 2-vCPU Zen 1 running the whole suite: the serve test took
/// 448 s there (19 s alone), and a dropped stream's cancellation was still pending at 30 s.
func awaitMetrics(_ server: ServerProcess, headers: [(String, String)] = [], pause: Duration = .milliseconds(50),
                  _ done: (String) -> Bool) async throws -> (Bool, String) {
    var m = ""
    let deadline = Date().addingTimeInterval(180)
    while Date() < deadline {
        m = try await call(server, .GET, "/metrics", headers: headers).body
        if done(m) { return (true, m) }
        try await Task.sleep(for: pause)
    }
    return (false, m)
}

func json(_ object: [String: Any]) -> String {
    String(decoding: try! JSONSerialization.data(withJSONObject: object), as: UTF8.self)
}

/// `specdec decode`'s text for one user message (greedy).
func decodeText(_ prompt: String, n: Int, extra: [String] = []) throws -> String {
    let r = try SpecdecCLI.run(["decode", "-p", prompt, "-n", String(n), "--json", "-t", "2"] + extra)
    guard r.status == 0 else { throw ServeTestError("decode failed: \(r.stderr)") }
    return try SpecdecCLI.json(r.stdout)["text"] as! String
}

func chatBody(_ content: Any, maxTokens: Int, stream: Bool = false) -> String {
    json(["model": "any", "messages": [["role": "user", "content": content]], "temperature": 0,
          "max_tokens": maxTokens, "stream": stream])
}

func dataURL(_ path: String) throws -> String {
    "data:image/png;base64," + (try Data(contentsOf: URL(fileURLWithPath: path))).base64EncodedString()
}

/// The text of a server-sent event stream, checking its framing.
func streamedText(_ body: String, chat: Bool = true) throws -> String {
    let events = body.components(separatedBy: "\n\n").filter { !$0.isEmpty }
    guard events.last == "data: [DONE]" else { throw ServeTestError("the stream does not end with data: [DONE]: \(body.suffix(200))") }
    var text = ""
    for e in events.dropLast() {
        guard e.hasPrefix("data: ") else { throw ServeTestError("not an SSE data line: \(e)") }
        let obj = try JSONSerialization.jsonObject(with: Data(e.dropFirst(6).utf8)) as! [String: Any]
        guard let choice = (obj["choices"] as? [[String: Any]])?.first else { continue }
        if chat { text += ((choice["delta"] as? [String: Any])?["content"] as? String) ?? "" } else { text += choice["text"] as? String ?? "" }
    }
    return text
}

let towerPath = TestPaths.repoRoot.appendingPathComponent("checkpoints/demo-tower.gguf").path
let draftPath = TestPaths.repoRoot.appendingPathComponent("checkpoints/vispec-draft.safetensors").path
let imagePath = TestPaths.repoRoot.appendingPathComponent("checkpoints/images/red-blue.png").path

/// An HTTP/1.1 client on a blocking loopback socket, for the tests that hang up mid-request:
/// each call runs on the caller's thread at once, and `reset` closes with a TCP reset, as a
/// client process that dies does.
final class RawHTTPConnection {
    private let fd: Int32
    private let host: String

    init(_ url: String) throws {
        guard let rest = url.split(separator: "//").last, let colon = rest.lastIndex(of: ":"),
              let port = UInt16(rest[rest.index(after: colon)...]) else { throw ServeTestError("no port in \(url)") }
        host = String(rest)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ServeTestError("socket() failed") }
        var timeout = timeval(tv_sec: 120, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { close(fd); throw ServeTestError("connect to \(url) failed") }
    }

    func post(_ path: String, body: String, headers: [(String, String)] = []) throws {
        let extra = headers.map { "\($0.0): \($0.1)\r\n" }.joined()
        let request = "POST \(path) HTTP/1.1\r\nHost: \(host)\r\nContent-Type: application/json\r\n\(extra)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
        let bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw ServeTestError("send failed") }
            sent += n
        }
    }

    /// Reads until `marker` has arrived (or throws after the receive timeout).
    func readUntil(_ marker: String) throws {
        var seen = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while !String(decoding: seen, as: UTF8.self).contains(marker) {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw ServeTestError("the connection ended before \(marker): \(String(decoding: seen, as: UTF8.self))") }
            seen += buf[..<n]
        }
    }

    /// Closes with an RST (SO_LINGER 0), so the server sees the client gone at once.
    func reset() {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}

@Suite("specdec serve over HTTP", .serialized, .enabled(if: FileManager.default.fileExists(atPath: TestPaths.model), "needs the model (scripts/setup.sh)"))
struct ServeTests {
    /// With the tower and the ViSpec draft: answers equal decode's (text, image, streamed, raw,
    /// 8 concurrent clients), bad input gets 4xx JSON, a dropped stream is cancelled, and
    /// SIGTERM exits 0.
    @Test func servesLikeDecodeAndRefusesBadInput() async throws {
        // The shipped draft with context matching merged into its trees (what the README runs).
        let server = try ServerProcess(["--mmproj", towerPath, "--draft", draftPath + "+ngram", "--parallel", "8", "--ctx", "512", "--max-body-mb", "1"])

        // Text, alone: speculative, and the same text as decode (with and without the draft).
        let prompt = "Write one sentence about the sea."
        let solo = try await call(server, .POST, "/v1/chat/completions", body: chatBody(prompt, maxTokens: 40))
        #expect(solo.status == 200, "\(solo.body)")
        let message = ((solo.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
        let decoded = try decodeText(prompt, n: 40)
        #expect(message == decoded)
        #expect(try decodeText(prompt, n: 40, extra: ["--draft", draftPath]) == decoded)
        let usage = solo.json["usage"] as? [String: Any]
        #expect((usage?["completion_tokens"] as? Int ?? 0) > 0)
        #expect((usage?["prompt_tokens"] as? Int ?? 0) > 5)
        #expect((solo.json["specdec"] as? [String: Any])?["mode"] as? String == "speculative")
        #expect((solo.json["specdec"] as? [String: Any])?["tau"] != nil)

        // Streamed: the same text in chunks, ending with [DONE].
        let streamed = try await call(server, .POST, "/v1/chat/completions", body: chatBody(prompt, maxTokens: 40, stream: true))
        #expect(streamed.status == 200)
        #expect(streamed.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true)
        #expect(try streamedText(streamed.body) == decoded)

        // An image as a data: URL, placed before the text as decode places --image.
        let question = "What colours are in this picture?"
        let imageReply = try await call(server, .POST, "/v1/chat/completions", body: chatBody(
            [["type": "image_url", "image_url": ["url": try dataURL(imagePath)]], ["type": "text", "text": question]], maxTokens: 24))
        #expect(imageReply.status == 200, "\(imageReply.body)")
        let imageText = ((imageReply.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String
        #expect(imageText == (try decodeText(question, n: 24, extra: ["--mmproj", towerPath, "--image", imagePath])))

        // Raw completions equal decode --raw.
        let raw = try await call(server, .POST, "/v1/completions", body: json(["prompt": "The capital of France is", "max_tokens": 12, "temperature": 0]))
        #expect(raw.status == 200, "\(raw.body)")
        #expect((raw.json["choices"] as? [[String: Any]])?.first?["text"] as? String == (try decodeText("The capital of France is", n: 12, extra: ["--raw"])))

        // A repetitive continuation: context-matched tokens are accepted, reported apart from τ.
        // (A list that repeats itself: with a measured verify cost only matches that have been
        // right are verified, and a counting sequence's matches never are.)
        let repeating = "red, green, blue, red, green, blue, red, green, blue,"
        let counted = try await call(server, .POST, "/v1/completions", body: json(["prompt": repeating, "max_tokens": 24, "temperature": 0]))
        #expect((counted.json["choices"] as? [[String: Any]])?.first?["text"] as? String == (try decodeText(repeating, n: 24, extra: ["--raw"])))
        let countedReport = counted.json["specdec"] as? [String: Any]
        #expect((countedReport?["context_tokens_per_step"] as? Double ?? 0) > 0, "\(counted.body)")

        // A stop sequence cuts the text where decode's text first has it, and the stop string
        // itself is not sent (streamed, where it may arrive split across chunks).
        let counting = "1, 2, 3, 4,"
        let full = try decodeText(counting, n: 30, extra: ["--raw"])
        let stopAt = try #require(full.range(of: " 7"), "the continuation should reach 7: \(full)")
        let stopped = try await call(server, .POST, "/v1/completions", body: json(["prompt": counting, "max_tokens": 30, "temperature": 0,
                                                                                 "stop": [" 7", "never-there"], "stream": true]))
        #expect(try streamedText(stopped.body, chat: false) == String(full[..<stopAt.lowerBound]))
        #expect(stopped.body.contains("\"finish_reason\":\"stop\""))

        // Eight concurrent clients: each answer equals its solo decode.
        let prompts = (0..<8).map { "Give me a short fact about the number \($0 + 2)." }
        let answers = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for (i, p) in prompts.enumerated() {
                group.addTask {
                    let r = try await call(server, .POST, "/v1/chat/completions", body: chatBody(p, maxTokens: 24, stream: i % 2 == 1))
                    if i % 2 == 1 { return (i, try streamedText(r.body)) }
                    return (i, ((r.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String)
                }
            }
            var out = [String?](repeating: nil, count: prompts.count)
            for try await (i, s) in group { out[i] = s }
            return out
        }
        for (i, p) in prompts.enumerated() { #expect(answers[i] == (try decodeText(p, n: 24)), "client \(i)") }

        // Bad input: a 4xx OpenAI-style error each, and the server keeps serving.
        func expectError(_ body: String?, _ status: Int, _ fragment: String, path: String = "/v1/chat/completions",
                         method: HTTPMethod = .POST, sourceLocation: SourceLocation = #_sourceLocation) async throws {
            let r = try await call(server, method, path, body: body)
            #expect(r.status == status, "\(r.body)", sourceLocation: sourceLocation)
            #expect(r.errorMessage.contains(fragment), "\(r.body)", sourceLocation: sourceLocation)
            #expect((r.json["error"] as? [String: Any])?["type"] is String, sourceLocation: sourceLocation)
        }
        try await expectError("{not json", 400, "not valid JSON")
        try await expectError(json(["messages": "hello"]), 400, "messages")
        try await expectError(json(["messages": [["role": "user", "content": "hi"]], "temperature": "hot"]), 400, "temperature")
        try await expectError(json(["messages": [] as [Any]]), 400, "messages is empty")
        try await expectError(json(["messages": [["role": "user", "content": "hi"]], "max_tokens": 100_000]), 400, "max_tokens")
        try await expectError(chatBody(String(repeating: "word ", count: 600), maxTokens: 8), 400, "context")
        try await expectError(chatBody([["type": "image_url", "image_url": ["url": "data:image/png;base64,iVBORw0KGgoAAAAA"]]], maxTokens: 8), 400, "content[0]")
        try await expectError(chatBody([["type": "image_url", "image_url": ["url": "https://example.com/cat.png"]]], maxTokens: 8), 400, "remote image URLs")
        try await expectError(chatBody([["type": "image_url", "image_url": ["url": oversizedPNGDataURL()]]], maxTokens: 8), 400, "larger than allowed")
        try await expectError(String(repeating: " ", count: 2 << 20), 413, "larger than the server's limit")
        try await expectError(nil, 404, "no route", path: "/v1/nothing-here", method: .GET)
        #expect(try await call(server, .GET, "/health").status == 200)

        // `ignore_eos` generates to max_tokens whatever the model would say.
        let fixed = try await call(server, .POST, "/v1/completions",
                                   body: json(["prompt": "The capital of France is", "max_tokens": 48, "temperature": 0, "ignore_eos": true]))
        #expect((fixed.json["usage"] as? [String: Any])?["completion_tokens"] as? Int == 48, "\(fixed.body)")
        #expect((fixed.json["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String == "length")

        // A client that drops mid-stream: its request is cancelled, and the server goes on. The
        // requests below are long whatever the model says (`ignore_eos`, most of the context), so
        // none can finish before the server sees the client go, on any machine's kernels.
        let long: [String: Any] = ["prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 480, "temperature": 1, "seed": 5, "ignore_eos": true]
        // The clients hang up on plain blocking sockets, not through AsyncHTTPClient: under the
        // suite's parallel load the cooperative threads can all be busy with other tests, and a
        // client task that cannot run to hang up would let the server finish the answer first
        // (seen on CI: the 480 tokens streamed to the end).
        /// `count` cancelled requests and none running.
        func awaitCancelled(_ count: Int) async throws -> (Bool, String) {
            try await awaitMetrics(server, pause: .milliseconds(100)) {
                metric("specdec_requests_cancelled_total", in: $0) == Double(count) && metric("specdec_active_requests", in: $0) == 0
            }
        }
        let dropped = try RawHTTPConnection(server.url)
        try dropped.post("/v1/completions", body: json(long.merging(["stream": true]) { $1 }))
        try dropped.readUntil("data: ")   // the first chunk, then hang up
        dropped.reset()
        var (cancelled, seen) = try await awaitCancelled(1)
        #expect(cancelled, "the dropped request was not cancelled; metrics:\n\(seen)")
        // The same for a non-streaming request whose client gives up once it is being generated.
        let impatient = try RawHTTPConnection(server.url)
        try impatient.post("/v1/completions", body: json(long))
        _ = try await awaitMetrics(server, pause: .milliseconds(10)) { metric("specdec_active_requests", in: $0) == 1 }
        impatient.reset()
        (cancelled, seen) = try await awaitCancelled(2)
        #expect(cancelled, "the abandoned non-streaming request was not cancelled; metrics:\n\(seen)")
        let after = try await call(server, .POST, "/v1/chat/completions", body: chatBody(prompt, maxTokens: 40))
        #expect(after.status == 200)
        let metrics = try await call(server, .GET, "/metrics").body
        #expect(metrics.contains("specdec_completion_tokens_total"))
        #expect(metric("specdec_queue_depth", in: metrics) == 0)

        #expect(server.stop() == 0, "SIGTERM must exit 0")
    }

    /// Without a tower or draft, with an API key and one slot and no queue: 401s, an image is
    /// refused, and a second simultaneous request gets 429 with Retry-After.
    @Test func apiKeyQueueAndMissingTower() async throws {
        let server = try ServerProcess(["--api-key", "sekrit", "--parallel", "1", "--queue", "0"])
        let auth = [("Authorization", "Bearer sekrit")]
        #expect(try await call(server, .GET, "/health").status == 200)
        let noKey = try await call(server, .GET, "/v1/models")
        #expect(noKey.status == 401 && noKey.errorMessage.contains("missing API key"))
        let wrong = try await call(server, .GET, "/v1/models", headers: [("Authorization", "Bearer nope")])
        #expect(wrong.status == 401 && wrong.errorMessage.contains("incorrect API key"))
        let models = try await call(server, .GET, "/v1/models", headers: auth)
        #expect(models.status == 200)
        #expect(((models.json["data"] as? [[String: Any]])?.first?["id"] as? String)?.contains("SmolLM2") == true)

        let image = try await call(server, .POST, "/v1/chat/completions", body: chatBody(
            [["type": "image_url", "image_url": ["url": try dataURL(imagePath)]], ["type": "text", "text": "What is this?"]], maxTokens: 8), headers: auth)
        #expect(image.status == 400 && image.errorMessage.contains("no vision tower"), "\(image.body)")

        // One slot, no queue: while one request streams, a second is refused with 429. The first
        // is long whatever the model says and its client is a blocking socket (see the dropped
        // stream above), so it is still running when the second arrives, however loaded the machine.
        let first = try RawHTTPConnection(server.url)
        try first.post("/v1/completions", body: json(["prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 2000, "temperature": 0,
                                                       "ignore_eos": true, "stream": true]), headers: auth)
        try first.readUntil("data: ")   // it is running
        let second = try await call(server, .POST, "/v1/chat/completions", body: chatBody("Hi", maxTokens: 8), headers: auth)
        #expect(second.status == 429, "\(second.body)")
        #expect(second.headers.first(name: "retry-after") != nil)
        first.reset()
        let (freed, seen) = try await awaitMetrics(server, headers: auth) { metric("specdec_active_requests", in: $0) == 0 }
        #expect(freed, "the hung-up request still runs: \(seen)")
        // A streamed answer from the free slot ends with [DONE].
        let streamed = try await call(server, .POST, "/v1/completions", body: json(["prompt": "1, 2, 3,", "max_tokens": 8, "temperature": 0, "stream": true]),
                                      headers: auth)
        #expect(streamed.status == 200 && streamed.body.hasSuffix("data: [DONE]\n\n"), "\(streamed.body)")
        // The slot is free again; without a draft, too, the answer is decode's.
        let again = try await call(server, .POST, "/v1/chat/completions", body: chatBody("Hi", maxTokens: 8), headers: auth)
        #expect(again.status == 200)
        #expect(((again.json["choices"] as? [[String: Any]])?.first?["message"] as? [String: Any])?["content"] as? String == (try decodeText("Hi", n: 8)))
        #expect((again.json["specdec"] as? [String: Any])?["mode"] as? String == "plain")
        #expect(server.stop() == 0)
    }
}

/// The stop-string matcher alone: text that may begin a stop string is held back until it is
/// known, the cut is at the earliest stop string, and pieces may split it anywhere.
@Test func stopMatcherHoldsBackAndCuts() {
    var m = StopMatcher(stops: ["END", "xy"])
    #expect(m.push("abc E") == "abc ")
    #expect(m.push("N") == "")
    #expect(m.push("Dzzz") == "")
    #expect(m.hit)
    var n = StopMatcher(stops: ["END"])
    #expect(n.push("EN") == "")
    #expect(n.push("ough") == "ENough")
    #expect(n.flush() == "")
    var o = StopMatcher(stops: ["b", "abc"])
    #expect(o.push("zabc") == "z" && o.hit)
    var none = StopMatcher(stops: [])
    #expect(none.push("E") == "E" && none.flush() == "")
}

/// A PNG whose header says 10000 × 10000 (refused from the header; no pixels follow).
func oversizedPNGDataURL() -> String {
    var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]
    for v in [UInt32(10_000), UInt32(10_000)] { png += [UInt8(v >> 24), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
    png += [8, 2, 0, 0, 0]
    let crc = crc32(png[12...])
    png += [UInt8(crc >> 24), UInt8(crc >> 16 & 255), UInt8(crc >> 8 & 255), UInt8(crc & 255)]
    return "data:image/png;base64," + Data(png).base64EncodedString()
}
