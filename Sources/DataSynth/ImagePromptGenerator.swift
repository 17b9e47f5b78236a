import Sampling
import Vision
import Shards

/// Synthetic pictures with questions about them, so that image data can be made offline with the
/// demo tower: solid colours, halves, quadrants, shapes on a background and simple scenes, drawn
/// from the tower's colour palette, each with a question from `templates`. Sample i depends only on
/// (seed, i); its template is `i mod templates.count`, so any run of that many consecutive indices
/// covers every template (the evaluation set relies on it).
///
/// The pictures are 64×64 PNGs of a few hundred bytes: the records embed them (path
/// `generated/<seed>/<index>.png`, SHA-256 of the PNG bytes), so a dataset never depends on files
/// outside it.
public struct ImagePromptGenerator: DataSource {
    public let seed: UInt64
    public let size: Int
    /// Which questions: `classic` (the 14 `templates`, one per index mod 14: the evaluation set's)
    /// or `varied` (training data: `templates` + `moreTemplates`, drawn at random, with an answer
    /// length asked for about half the time).
    public enum Questions: String, Sendable { case classic, varied }
    public let questions: Questions
    public init(seed: UInt64, size: Int = 64, questions: Questions = .classic) {
        self.seed = seed; self.size = size; self.questions = questions
    }
    public var count: Int { Int.max }
    public var info: SourceInfo { SourceInfo(kind: questions == .classic ? "generate-images" : "generate-images-varied", seed: seed) }

    /// A named colour of the demo tower's palette (RGB 0–255).
    struct Paint { var word: String; var rgb: (Int, Int, Int) }
    static let paints: [Paint] = [
        Paint(word: "red", rgb: (230, 20, 30)), Paint(word: "orange", rgb: (250, 145, 10)), Paint(word: "yellow", rgb: (250, 240, 20)),
        Paint(word: "green", rgb: (20, 150, 40)), Paint(word: "blue", rgb: (20, 30, 230)), Paint(word: "cyan", rgb: (20, 240, 240)),
        Paint(word: "purple", rgb: (130, 20, 140)), Paint(word: "pink", rgb: (250, 180, 195)), Paint(word: "brown", rgb: (135, 70, 20)),
        Paint(word: "black", rgb: (10, 10, 10)), Paint(word: "white", rgb: (248, 248, 248)), Paint(word: "gray", rgb: (128, 128, 128)),
    ]

    /// Question templates; `{c}` is a colour word, `{part}` a region of the picture.
    public static let templates = [
        "What is the main color of this picture?",
        "What colors can you see in this image?",
        "Describe this picture in detail.",
        "What color is the {part} of the picture?",
        "Is there anything {c} in this picture?",
        "How many different colors are there in this image?",
        "What shape is in this picture, and what color is it?",
        "Write a short story inspired by this picture.",
        "Write a poem about the colors in this image.",
        "What mood does this picture create, and why?",
        "Describe the layout of this image, part by part.",
        "What could this picture show? Give a few ideas.",
        "If this picture were a flag, what could it stand for?",
        "Compare the left and the right side of this image.",
    ]
    /// More phrasings for training data (LLaVA-style instructions, short and long answers).
    public static let moreTemplates = [
        "What do you see?", "Describe the image.", "Describe the colors in this image.",
        "What is in this image? Answer briefly.", "Give a detailed description of this image.",
        "Which color covers most of this picture?", "Name every color in this picture.",
        "Where is the {c} part of the image, if there is one?", "Is the {part} of this image light or dark?",
        "What would be a good title for this picture?", "Describe this image to someone who cannot see it.",
        "What colors would you mix to paint this picture?", "List the colors in this image from top to bottom.",
        "Does this image look like a landscape? Explain.", "What object could this picture be a photo of?",
        "Write a haiku about this image.", "Invent a name for the place in this picture.",
        "Which colors in this image go well together?", "Is this picture symmetric? Why or why not?",
        "If you could add one thing to this picture, what would it be?", "What time of day could this picture show?",
        "Summarize this image in one sentence.", "What feelings do the colors of this image bring up?",
        "Describe the {part} of the image.", "Explain what makes this picture simple or complex.",
        "Give three words that describe this image.", "What would a child say about this picture?",
    ]
    /// Answer-length requests appended to varied questions (empty: none).
    static let lengths = ["", "", "", "", "", "", " Answer in one word.", " Answer in one sentence.", " Keep it short.",
                          " Answer in two or three sentences.", " Answer in detail.", " Please answer with at least 200 words."]
    static let parts = ["top-left part", "top-right part", "bottom-left part", "bottom-right part", "top half", "bottom half",
                        "left side", "right side", "center"]

    struct Rand {
        var g: SeededGenerator
        mutating func int(_ n: Int) -> Int { Int(g.next() % UInt64(n)) }
        mutating func pick<T>(_ a: [T]) -> T { a[int(a.count)] }
        /// A palette colour with a little jitter, so that pictures of one colour are not all alike.
        mutating func paint(_ p: Paint) -> (Float, Float, Float) {
            func j(_ v: Int) -> Float { Float(min(255, max(0, v + int(17) - 8))) / 255 }
            return (j(p.rgb.0), j(p.rgb.1), j(p.rgb.2))
        }
    }

    /// The picture and question of sample `index`.
    public func sample(at index: Int) -> (image: RGBImage, question: String, scene: String) {
        var r = Rand(g: SeededGenerator(seed: mixSeed(seed, UInt64(index), salt: 0x696d_6167)))
        let s = size
        var img = RGBImage(width: s, height: s, fill: (0, 0, 0))
        func fill(_ inside: (Int, Int) -> Bool, _ c: (Float, Float, Float)) {
            for y in 0..<s {
                for x in 0..<s where inside(x, y) {
                    let i = 3 * (y * s + x)
                    (img.pixels[i], img.pixels[i + 1], img.pixels[i + 2]) = c
                }
            }
        }
        func distinct(_ n: Int) -> [Paint] {
            var out: [Paint] = []
            while out.count < n {
                let p = r.pick(Self.paints)
                if !out.contains(where: { $0.word == p.word }) { out.append(p) }
            }
            return out
        }
        let h = s / 2
        var scene: String
        switch r.int(6) {
        case 0:
            let p = r.pick(Self.paints)
            fill({ _, _ in true }, r.paint(p))
            scene = "solid \(p.word)"
        case 1:
            let c = distinct(2)
            let vertical = r.int(2) == 0
            fill({ _, _ in true }, r.paint(c[0]))
            fill({ x, y in vertical ? x >= h : y >= h }, r.paint(c[1]))
            scene = vertical ? "left \(c[0].word), right \(c[1].word)" : "top \(c[0].word), bottom \(c[1].word)"
        case 2:
            let c = (0..<4).map { _ in r.pick(Self.paints) }
            for q in 0..<4 { fill({ x, y in (x >= h ? 1 : 0) + (y >= h ? 2 : 0) == q }, r.paint(c[q])) }
            scene = "quadrants " + c.map(\.word).joined(separator: ",")
        case 3:
            // A shape of one colour on a background of another, filling one quadrant or the middle.
            let c = distinct(2)
            fill({ _, _ in true }, r.paint(c[0]))
            let shape = r.pick(["square", "circle", "triangle"])
            let q = r.int(5)   // 4 = centred and large
            let (cx, cy, rad): (Int, Int, Int) = q == 4 ? (h, h, h - 2) : ((q % 2) * h + h / 2, (q / 2) * h + h / 2, h / 2 - 1)
            fill({ x, y in
                let dx = x - cx, dy = y - cy
                switch shape {
                case "square": return abs(dx) <= rad && abs(dy) <= rad
                case "circle": return dx * dx + dy * dy <= rad * rad
                default: return dy <= rad && dy >= -rad && 2 * abs(dx) <= dy + rad   // apex up
                }
            }, r.paint(c[1]))
            scene = "\(c[1].word) \(shape) on \(c[0].word)" + (q == 4 ? " (centre)" : " (\(Self.parts[q]))")
        case 4:
            // Landscapes: sky over ground, sometimes a sun.
            let sky = r.pick([Self.paints[4], Self.paints[5], Self.paints[9], Self.paints[11], Self.paints[1]])
            let ground = r.pick([Self.paints[3], Self.paints[8], Self.paints[2], Self.paints[10], Self.paints[4]])
            fill({ _, y in y < h }, r.paint(sky))
            fill({ _, y in y >= h }, r.paint(ground))
            var text = "\(sky.word) sky over \(ground.word) ground"
            if r.int(2) == 0 {
                let sun = r.pick([Self.paints[2], Self.paints[10], Self.paints[1]])
                let cx = r.int(2) == 0 ? h / 2 : h + h / 2
                fill({ x, y in (x - cx) * (x - cx) + (y - h / 2) * (y - h / 2) <= (h / 2 - 1) * (h / 2 - 1) }, r.paint(sun))
                text += ", \(sun.word) sun"
            }
            scene = text
        default:
            // Stripes of two colours, horizontal or vertical.
            let c = distinct(2)
            let vertical = r.int(2) == 0, width = r.pick([4, 8, 16])
            fill({ x, y in ((vertical ? x : y) / width) % 2 == 0 }, r.paint(c[0]))
            fill({ x, y in ((vertical ? x : y) / width) % 2 == 1 }, r.paint(c[1]))
            scene = "\(vertical ? "vertical" : "horizontal") \(c[0].word) and \(c[1].word) stripes"
        }
        let template: String
        switch questions {
        case .classic: template = Self.templates[index % Self.templates.count]
        case .varied: template = r.pick(Self.templates + Self.moreTemplates) + r.pick(Self.lengths)
        }
        let question = template
            .replacingOccurrences(of: "{c}", with: r.pick(Self.paints).word)
            .replacingOccurrences(of: "{part}", with: r.pick(Self.parts))
        return (img, question, scene)
    }

    public func prompt(at index: Int) -> SynthPrompt {
        let s = sample(at: index)
        return SynthPrompt(id: "image-\(index)", userTurns: [s.question],
                           imagePaths: ["generated/\(seed)/\(index).png"], imageBytes: [ImageEncoder.png(s.image)])
    }
}
