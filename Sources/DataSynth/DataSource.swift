import Foundation
import Sampling
import Shards

/// One prompt for the target to answer while writing training data.
public struct SynthPrompt: Sendable, Equatable {
    public var id: String
    /// User turns of the conversation, in order. `<image>` marks where an image goes.
    public var userTurns: [String]
    /// Image files referenced by `<image>` markers, in prompt order (all in the first user turn;
    /// without markers they go before its text).
    public var imagePaths: [String]
    /// The images' encoded bytes when the source made them itself (`imagePaths` then only names
    /// them); empty when they are read from `imagePaths`.
    public var imageBytes: [[UInt8]]
    public init(id: String, userTurns: [String], imagePaths: [String] = [], imageBytes: [[UInt8]] = []) {
        self.id = id; self.userTurns = userTurns; self.imagePaths = imagePaths; self.imageBytes = imageBytes
    }
}

/// Where `specdec synth-data` takes its prompts from (LLaVA JSON, JSONL, the built-in generator).
/// Random access by sample index, so that `--shard i/N` and resuming skip samples for free.
public protocol DataSource {
    /// Number of prompts available (`Int.max` for generators).
    var count: Int { get }
    /// What goes into the shard header's `source`.
    var info: SourceInfo { get }
    func prompt(at index: Int) throws -> SynthPrompt
}

/// The marker for an image in user text (LLaVA's convention).
public let imageMarker = "<image>"

/// The prompts of another source that have no image, renumbered 0, 1, 2, … (`--text-only`).
public struct TextOnlySource: DataSource {
    public let base: DataSource
    /// Index in `base` of each kept prompt.
    public let kept: [Int]
    public init(_ base: DataSource) throws {
        precondition(base.count != Int.max, "text-only filtering needs a finite source")
        self.base = base
        kept = try (0..<base.count).filter { try base.prompt(at: $0).imagePaths.isEmpty }
    }
    public var count: Int { kept.count }
    public var info: SourceInfo { var i = base.info; i.filter = "text-only"; return i }
    public func prompt(at index: Int) throws -> SynthPrompt {
        guard index >= 0, index < kept.count else {
            throw DataError(file: base.info.file ?? base.info.kind, field: "samples", reason: "no text-only prompt \(index): there are \(kept.count)")
        }
        return try base.prompt(at: kept[index])
    }
}

// MARK: - JSONL text prompts

/// One JSON object per line: `{"prompt": "..."}`, or `text`, `question`, `instruction` (+ `input`),
/// `turns: [..]` for several user turns, or `conversations` (LLaVA `from`/`value`) / `messages`
/// (`role`/`content`) whose human/user turns are kept. Optional `id` (string or number) and
/// `image` (string or list). Blank lines are skipped.
public struct JSONLPromptSource: DataSource {
    public let path: String
    public let prompts: [SynthPrompt]
    public let info: SourceInfo
    public var count: Int { prompts.count }

    public init(path: String) throws {
        self.path = path
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(file: path, field: "file", reason: "cannot read the prompt file")
        }
        let bytes = [UInt8](data)
        var out: [SynthPrompt] = []
        var lineNumber = 0
        let decoder = JSONDecoder()
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty { continue }
            let field = "line \(lineNumber)"
            let r: PromptRecord
            do { r = try decoder.decode(PromptRecord.self, from: Data(text.utf8)) } catch {
                throw dataError(error, file: path, field: field, notAnObject: "expected a JSON object")
            }
            var turns: [String]
            if let t = r.turns {
                guard !t.isEmpty else { throw DataError(file: path, field: "\(field).turns", reason: "expected a non-empty list of strings") }
                turns = t
            } else if let c = r.conversation {
                turns = try humanTurns(c, file: path, field: field)
            } else if var t = r.prompt {
                if r.isInstruction, let input = r.input, !input.isEmpty { t += "\n\n" + input }
                turns = [t]
            } else {
                throw DataError(file: path, field: field, reason: "no prompt (expected one of prompt, text, question, instruction, turns, conversations, messages)")
            }
            if let bad = turns.firstIndex(where: { $0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }) {
                throw DataError(file: path, field: field, reason: "user turn \(bad) is empty")
            }
            turns = try placeImages(turns, imageCount: r.images.count, file: path, field: field)
            out.append(SynthPrompt(id: r.id ?? "line-\(lineNumber)", userTurns: turns, imagePaths: r.images))
        }
        prompts = out
        info = SourceInfo(kind: "prompts-jsonl", file: (path as NSString).lastPathComponent, sha256: SHA256.hex(bytes))
    }

    public func prompt(at index: Int) throws -> SynthPrompt {
        guard index >= 0, index < prompts.count else {
            throw DataError(file: path, field: "samples", reason: "no prompt \(index): the file has \(prompts.count)")
        }
        return prompts[index]
    }
}

// MARK: - LLaVA JSON

/// LLaVA-format JSON: `[{"id", "image", "conversations": [{"from": "human", "value": "<image>\n..."},
/// {"from": "gpt", "value": ...}, ...]}, ...]`. The human turns are kept (the target answers them
/// itself); `image` is resolved against `imageDir` (default: the JSON file's folder).
public struct LLaVASource: DataSource {
    public let path: String
    public let imageDir: String
    public let prompts: [SynthPrompt]
    public let info: SourceInfo
    public var count: Int { prompts.count }

    public init(path: String, imageDir: String? = nil) throws {
        self.path = path
        let dir = imageDir ?? (path as NSString).deletingLastPathComponent
        self.imageDir = dir
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DataError(file: path, field: "file", reason: "cannot read the LLaVA JSON file")
        }
        let entries: [LLaVARecord]
        do { entries = try JSONDecoder().decode([LLaVARecord].self, from: data) } catch {
            throw dataError(error, file: path, field: "file", notAnObject: "expected a JSON list of samples", entryNotAnObject: "expected an object")
        }
        var out: [SynthPrompt] = []
        out.reserveCapacity(entries.count)
        for (k, e) in entries.enumerated() {
            let field = "[\(k)]"
            let id = e.id ?? "llava-\(k)"
            guard let conv = e.conversations else {
                throw DataError(file: path, field: "\(field).conversations", reason: "missing (sample \(id))")
            }
            var turns = try humanTurns(conv, file: path, field: field)
            let images = e.images.map { p -> String in p.hasPrefix("/") ? p : (dir as NSString).appendingPathComponent(p) }
            turns = try placeImages(turns, imageCount: images.count, file: path, field: field)
            out.append(SynthPrompt(id: id, userTurns: turns, imagePaths: images))
        }
        prompts = out
        info = SourceInfo(kind: "llava-json", file: (path as NSString).lastPathComponent, sha256: SHA256.hex([UInt8](data)))
    }

    public func prompt(at index: Int) throws -> SynthPrompt {
        guard index >= 0, index < prompts.count else {
            throw DataError(file: path, field: "samples", reason: "no sample \(index): the file has \(prompts.count)")
        }
        return prompts[index]
    }
}

// MARK: - the JSON records, decoded with Codable

/// A field that is wrong in a way `DecodingError` does not say well, at its coding path.
struct RecordError: Error {
    var codingPath: [CodingKey]
    var reason: String
}

/// `"id"`: a string or a number (some LLaVA files number their samples).
struct FlexibleID: Decodable {
    var value: String
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { value = s; return }
        if (try? c.decode(Bool.self)) != nil { throw RecordError(codingPath: decoder.codingPath, reason: "expected a string or a number") }
        if let i = try? c.decode(Int64.self) { value = String(i); return }
        if let d = try? c.decode(Double.self) { value = String(d); return }
        throw RecordError(codingPath: decoder.codingPath, reason: "expected a string or a number")
    }
}

/// `"image"`: a file name, a list of them, or null.
struct ImageField: Decodable {
    var paths: [String]
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { paths = []; return }
        if let s = try? c.decode(String.self) { paths = [s]; return }
        if let a = try? c.decode([String].self) { paths = a; return }
        throw RecordError(codingPath: decoder.codingPath, reason: "expected a file name or a list of them")
    }
}

/// One conversation turn: LLaVA's `from`/`value` or chat's `role`/`content`.
struct Turn: Decodable {
    var speaker: String?
    var text: String?
    enum Keys: String, CodingKey { case from, role, value, content }
    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        speaker = try c.decodeIfPresent(String.self, forKey: .from) ?? c.decodeIfPresent(String.self, forKey: .role)
        text = try c.decodeIfPresent(String.self, forKey: .value) ?? c.decodeIfPresent(String.self, forKey: .content)
    }
}

/// One line of a prompts JSONL file.
struct PromptRecord: Decodable {
    var id: String?
    var turns: [String]?
    var conversation: [Turn]?
    var prompt: String?
    var isInstruction = false
    var input: String?
    var images: [String] = []

    enum Keys: String, CodingKey { case id, turns, conversations, messages, prompt, text, question, instruction, input, image }
    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        id = try c.decodeIfPresent(FlexibleID.self, forKey: .id)?.value
        if c.contains(.turns) {
            do { turns = try c.decode([String].self, forKey: .turns) } catch {
                throw RecordError(codingPath: decoder.codingPath + [Keys.turns], reason: "expected a non-empty list of strings")
            }
        }
        conversation = try c.decodeIfPresent([Turn].self, forKey: .conversations) ?? c.decodeIfPresent([Turn].self, forKey: .messages)
        for key in [Keys.prompt, .text, .question, .instruction] where prompt == nil && c.contains(key) {
            do { prompt = try c.decode(String.self, forKey: key) } catch {
                throw RecordError(codingPath: decoder.codingPath + [key], reason: "the prompt must be a string")
            }
            isInstruction = key == .instruction
        }
        input = try? c.decodeIfPresent(String.self, forKey: .input)
        images = try c.decodeIfPresent(ImageField.self, forKey: .image)?.paths ?? []
    }
}

/// One sample of a LLaVA JSON list.
struct LLaVARecord: Decodable {
    var id: String?
    var conversations: [Turn]?
    var images: [String] = []
    enum Keys: String, CodingKey { case id, image, conversations }
    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        id = try c.decodeIfPresent(FlexibleID.self, forKey: .id)?.value
        conversations = try c.decodeIfPresent([Turn].self, forKey: .conversations)
        images = try c.decodeIfPresent(ImageField.self, forKey: .image)?.paths ?? []
    }
}

/// A decoding failure as a `DataError` naming the record and field: `field` is the record
/// ("line 3") or, for a list file, "file" (the entries are then named "[k]").
func dataError(_ error: Error, file: String, field: String, notAnObject: String, entryNotAnObject: String? = nil) -> DataError {
    func path(_ p: [CodingKey]) -> String {
        p.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }
    // For a list file the first path element is the entry: "[k]" replaces "file".
    func name(_ p: [CodingKey]) -> String {
        guard entryNotAnObject != nil, let first = p.first?.intValue else { return field + path(p) }
        return "[\(first)]" + path(Array(p.dropFirst()))
    }
    func turnField(_ p: [CodingKey], key: String) -> String {
        // conversations[i].from / .value, whichever spelling the file used.
        name(Array(p.prefix { $0.stringValue != key }))
    }
    switch error {
    case let e as DataError: return e
    case let e as RecordError:
        return DataError(file: file, field: name(e.codingPath), reason: e.reason)
    case DecodingError.dataCorrupted(let ctx) where ctx.codingPath.isEmpty:
        return DataError(file: file, field: field, reason: "not valid JSON")
    case DecodingError.typeMismatch(_, let ctx), DecodingError.valueNotFound(_, let ctx):
        let p = ctx.codingPath
        if p.isEmpty { return DataError(file: file, field: field, reason: notAnObject) }
        if entryNotAnObject != nil, p.count == 1 { return DataError(file: file, field: name(p), reason: entryNotAnObject!) }
        if let last = p.last?.stringValue, ["conversations", "messages"].contains(last) {
            return DataError(file: file, field: name(Array(p.dropLast())) + ".conversations", reason: "expected a list of turns")
        }
        if let last = p.last, last.intValue != nil, p.count >= 2, ["conversations", "messages"].contains(p[p.count - 2].stringValue) {
            return DataError(file: file, field: name(Array(p.dropLast(2))) + ".conversations[\(last.intValue!)]", reason: "expected an object")
        }
        if let last = p.last?.stringValue, ["from", "role"].contains(last) {
            return DataError(file: file, field: turnField(p, key: last) + ".from", reason: "the speaker must be a string")
        }
        if let last = p.last?.stringValue, ["value", "content"].contains(last) {
            return DataError(file: file, field: turnField(p, key: last) + ".value", reason: "the text must be a string")
        }
        return DataError(file: file, field: name(p), reason: "wrong type (\(ctx.debugDescription))")
    default:
        return DataError(file: file, field: field, reason: "\(error)")
    }
}

/// The human/user turns of a LLaVA (`from`/`value`) or chat (`role`/`content`) conversation.
func humanTurns(_ list: [Turn], file: String, field: String) throws -> [String] {
    var turns: [String] = []
    for (i, t) in list.enumerated() {
        guard let role = t.speaker else {
            throw DataError(file: file, field: "\(field).conversations[\(i)].from", reason: "missing speaker (from or role)")
        }
        guard let value = t.text else {
            throw DataError(file: file, field: "\(field).conversations[\(i)].value", reason: "missing text (value or content)")
        }
        switch role.lowercased() {
        case "human", "user": turns.append(value)
        case "gpt", "assistant", "bot", "model", "system": continue
        default: throw DataError(file: file, field: "\(field).conversations[\(i)].from", reason: "unknown speaker \"\(role)\"")
        }
    }
    guard !turns.isEmpty else { throw DataError(file: file, field: "\(field).conversations", reason: "no human turn") }
    return turns
}

/// Checks `<image>` markers against the images: without any marker, the images go before the
/// first turn's text (LLaVA's default); otherwise there must be one marker per image.
func placeImages(_ turns: [String], imageCount: Int, file: String, field: String) throws -> [String] {
    let markers = turns.reduce(0) { $0 + $1.components(separatedBy: imageMarker).count - 1 }
    if markers == imageCount { return turns }
    if markers == 0 {
        var t = turns
        t[0] = String(repeating: imageMarker + "\n", count: imageCount) + t[0]
        return t
    }
    throw DataError(file: file, field: field, reason: "\(markers) \(imageMarker) marker\(markers == 1 ? "" : "s") but \(imageCount) image\(imageCount == 1 ? "" : "s")")
}

// MARK: - built-in text prompts

/// Varied instructions, questions, code, list and arithmetic prompts from templates; prompt i depends
/// only on (seed, i). About one in eight has a follow-up user turn.
public struct TextPromptGenerator: DataSource {
    public let seed: UInt64
    public init(seed: UInt64) { self.seed = seed }
    public var count: Int { Int.max }
    public var info: SourceInfo { SourceInfo(kind: "generate-text", seed: seed) }

    struct Rand {
        var g: SeededGenerator
        mutating func int(_ n: Int) -> Int { Int(g.next() % UInt64(n)) }
        mutating func pick<T>(_ a: [T]) -> T { a[int(a.count)] }
        mutating func range(_ lo: Int, _ hi: Int) -> Int { lo + int(hi - lo + 1) }
    }

    static let topics = ["a lighthouse keeper", "the first day of spring", "a robot learning to paint", "an old map found in an attic",
                         "a city without cars", "a friendship between a cat and a crow", "the last bookstore in town", "a storm at sea",
                         "a chef who lost their sense of taste", "a journey across the desert", "a village on a floating island",
                         "a scientist who discovers a new colour", "the night the power went out", "a lost letter delivered fifty years late",
                         "a mountain that moves", "a library that never closes", "a detective who can hear plants", "a bridge between two rival towns"]
    static let forms = ["short story", "poem", "letter", "diary entry", "news report", "speech", "fable", "dialogue", "blog post", "product description"]
    static let whyQuestions = ["the sky is blue", "leaves change colour in autumn", "ice floats on water", "we dream", "the moon has phases",
                               "bread rises", "some metals rust", "birds migrate", "the ocean is salty", "we get hiccups", "cats purr",
                               "stars twinkle", "onions make people cry", "airplanes can fly", "the seasons change",
                               "volcanoes erupt", "we need sleep", "the Roman Empire fell", "coffee keeps people awake", "glass is transparent",
                               "some animals hibernate", "prices rise over time", "the Earth has a magnetic field", "we yawn", "plants need light"]
    static let howThings = ["a refrigerator", "the internet", "a vaccine", "a solar panel", "a compass", "GPS", "a bicycle gear",
                            "an electric motor", "photosynthesis", "a search engine", "a credit card payment", "a rainbow", "a microwave oven",
                            "public key encryption", "a hash table", "a heat pump", "a nuclear reactor", "a camera lens", "a bank loan",
                            "the human heart", "a compiler", "noise-cancelling headphones", "a 3D printer", "a touch screen"]
    static let pairs = [("a virus", "a bacterium"), ("weather", "climate"), ("a list", "a tuple in Python"), ("speed", "velocity"),
                        ("an alligator", "a crocodile"), ("TCP", "UDP"), ("a comet", "an asteroid"), ("empathy", "sympathy"),
                        ("RAM", "storage"), ("a democracy", "a republic"), ("baking soda", "baking powder"), ("a stack", "a queue"),
                        ("mitosis", "meiosis"), ("an app", "a website")]
    static let languages = ["Python", "JavaScript", "Swift", "C", "Rust", "Go", "Java", "C++", "Ruby", "TypeScript"]
    static let codeTasks = ["reverses a string", "checks whether a number is prime", "returns the n-th Fibonacci number",
                            "counts the words in a sentence", "removes duplicates from a list", "finds the largest element of an array",
                            "converts Celsius to Fahrenheit", "checks whether a string is a palindrome", "sorts a list with insertion sort",
                            "merges two sorted lists", "computes the factorial of n", "parses a date in the form YYYY-MM-DD",
                            "counts how often each character occurs", "flattens a nested list", "computes the greatest common divisor of two numbers",
                            "validates an email address", "reads a CSV file and sums a column", "implements binary search"]
    static let snippets = ["def f(xs):\n    return [x * x for x in xs if x % 2 == 0]",
                           "for i in range(1, 16):\n    print('FizzBuzz' if i % 15 == 0 else i)",
                           "const total = items.reduce((sum, item) => sum + item.price, 0);",
                           "int count = 0;\nwhile (n > 0) { count += n & 1; n >>= 1; }",
                           "let words = text.split(separator: \" \").map { $0.lowercased() }",
                           "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 3;",
                           "def g(n):\n    return n if n < 2 else g(n - 1) + g(n - 2)",
                           "x = {}\nfor w in words:\n    x[w] = x.get(w, 0) + 1"]
    static let listThings = ["tips for sleeping better", "ways to save water at home", "famous scientists and their discoveries",
                             "healthy breakfast ideas", "reasons to learn a second language", "things to pack for a camping trip",
                             "common mistakes new programmers make", "board games for a family evening", "ways to reduce stress",
                             "questions to ask in a job interview", "uses for a paper clip", "habits of good writers", "facts about octopuses",
                             "inventions that changed the world", "ideas for a rainy afternoon", "steps to start a vegetable garden"]
    static let concepts = ["gravity", "inflation", "machine learning", "the water cycle", "compound interest", "evolution", "electricity",
                           "recursion", "supply and demand", "black holes", "the immune system", "probability", "democracy",
                           "plate tectonics", "a neural network", "the greenhouse effect"]
    static let audiences = ["a five-year-old", "a high school student", "a grandparent", "a software engineer", "someone who has never heard of it",
                            "a curious teenager", "a busy manager"]
    static let sentences = ["the meeting has been moved to next week because many people are away",
                            "we could not finish the project on time due to unexpected problems",
                            "thanks for the help yesterday, it really made a difference",
                            "the new phone is fast but the battery does not last long",
                            "please send me the report before friday if you can",
                            "the food was cold and the waiter forgot our drinks",
                            "i think we should try a different approach next time",
                            "our team won the game in the last minute"]
    static let tones = ["more formal", "friendlier", "shorter", "more persuasive", "simpler", "more polite", "sound like a pirate"]
    static let codeQuestions = ["Explain what this code does:", "What does this code compute? Go through it line by line.",
                                "Is there a bug or a possible improvement in this code?", "Rewrite this code in another language and explain the changes:"]
    static let styles = ["", "", "", "", "Use simple language.", "Include an example.", "Use headings and short paragraphs.",
                         "Be precise.", "Explain your reasoning.", "Mention common pitfalls."]
    static let followUps = ["Can you give a concrete example?", "Now summarise your answer in three sentences.",
                            "What are the most common misconceptions about this?", "Can you explain that more simply?",
                            "What would you add if you had more space?", "Turn that into a short list of key points."]
    static let items = ["apples", "books", "pencils", "marbles", "stickers", "cookies", "tickets", "stamps"]
    static let names = ["Ana", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas"]

    public func prompt(at index: Int) -> SynthPrompt {
        var r = Rand(g: SeededGenerator(seed: mixSeed(seed, UInt64(index), salt: 0x7465_7874)))
        let text: String
        switch r.int(10) {
        case 0: text = "Write a \(r.pick(Self.forms)) about \(r.pick(Self.topics))."
        case 1:
            let w = r.pick(Self.whyQuestions)
            text = r.pick(["Can you explain why \(w)?", "Explain in detail why \(w).", "What is the scientific reason why \(w)?", "Why is it that \(w)?"])
        case 2:
            let h = r.pick(Self.howThings)
            text = r.pick(["How does \(h) work?", "Explain how \(h) works.", "Describe step by step how \(h) works."])
        case 3:
            let (a, b) = r.pick(Self.pairs)
            text = r.pick(["What is the difference between \(a) and \(b)?", "Compare \(a) and \(b).", "How do \(a) and \(b) differ, and what do they have in common?"])
        case 4: text = "Write a \(r.pick(Self.languages)) function that \(r.pick(Self.codeTasks))\(r.pick([".", ", with comments.", ", and show how to call it."]))"
        case 5: text = "\(r.pick(Self.codeQuestions))\n\n\(r.pick(Self.snippets))"
        case 6: text = "\(r.pick(["List", "Give me", "Name"])) \(r.range(3, 10)) \(r.pick(Self.listThings))."
        case 7: text = "Explain \(r.pick(Self.concepts)) to \(r.pick(Self.audiences))."
        case 8: text = "Rewrite this sentence to make it \(r.pick(Self.tones)): \"\(r.pick(Self.sentences))\""
        default:
            let n = r.pick(Self.names), m = r.pick(Self.names), it = r.pick(Self.items)
            let a = r.range(3, 40), b = r.range(2, 25)
            text = r.pick(["\(n) has \(a) \(it) and gives \(b) to \(m). How many \(it) does \(n) have left, if that is possible? Show your reasoning.",
                           "\(n) buys \(a) \(it) at \(b) dollars each. How much does \(n) pay in total? Explain each step.",
                           "A train travels \(a * 10) km in \(b) hours. What is its average speed? Explain how you get the answer."])
        }
        let style = r.pick(Self.styles)
        var turns = [style.isEmpty ? text : text + " " + style]
        if r.int(8) == 0 { turns.append(r.pick(Self.followUps)) }
        return SynthPrompt(id: "text-\(index)", userTurns: turns)
    }
}

/// A 64-bit seed from (seed, index): SplitMix64 finaliser over a mix of both.
public func mixSeed(_ seed: UInt64, _ index: UInt64, salt: UInt64 = 0) -> UInt64 {
    SplitMix64.finalize(seed ^ (index &* 0x9E37_79B9_7F4A_7C15) ^ (salt &* 0xD1B5_4A32_D192_ED03))
}
