import Sampling
import Shards

/// `--generate text-varied`: text prompts over about 400 subjects in 16 kinds of task, against
/// `TextPromptGenerator`'s 150 subjects in 10. Why it exists: the target answers greedily, so two samples
/// with the same request have nearly the same answer. 20,000 samples of `--generate text` hold about
/// 8,200 distinct prompts but 3,200 distinct requests once the style sentence after them is left out
/// (2,000 of those are arithmetic with other numbers), and a draft trained on them learns those
/// answers: validation samples from the same generator are near-copies of training ones (validation τ
/// 1.8), while hand-written prompts get τ 0.6. Here a request is a task template × a subject × an
/// audience, count or second subject (7,456 distinct requests in 20,000), with length, format, tone and
/// context sentences on top (14,230 distinct prompts in 20,000, 1,898 in 2,000). Prompt i depends only on (seed, i). The subjects of the evaluation
/// set's hand-written text prompts (`EvaluationSet`) are left out on purpose, and a test checks it.
public struct VariedTextPromptGenerator: DataSource {
    public let seed: UInt64
    public init(seed: UInt64) { self.seed = seed }
    public var count: Int { Int.max }
    public var info: SourceInfo { SourceInfo(kind: "generate-text-varied", seed: seed) }

    /// Things that can be explained, summarised, taught or argued about.
    static let concepts = [
        "the stock market", "photosynthesis", "antibiotic resistance", "the French Revolution", "the printing press",
        "continental drift", "the placebo effect", "blockchain", "the Doppler effect", "interest rates", "the food chain",
        "the Pythagorean theorem", "natural selection", "the Renaissance", "cloud computing", "carbon dating", "the Silk Road",
        "quantum entanglement", "the Industrial Revolution", "vaccination", "tides", "the electoral college", "game theory",
        "the scientific method", "compound words", "the periodic table", "entropy", "impressionist painting", "the Cold War",
        "the human genome", "ocean currents", "supply chains", "the Big Bang", "cognitive biases", "the nitrogen cycle",
        "fractions", "open source software", "the Fibonacci sequence", "jazz improvisation", "the ozone layer", "minimalism",
        "the gig economy", "coral reefs", "the Olympic Games", "sleep cycles", "muscle memory", "cryptocurrency wallets",
        "the speed of light", "gerrymandering", "the circulatory system", "urban planning", "the Stone Age", "volcanic islands",
        "encryption", "the theory of relativity", "stoicism", "the water table", "microplastics", "the Moon landing",
        "the Great Wall of China", "dark matter", "antibodies", "the Magna Carta", "algorithms", "the Amazon rainforest",
        "public transport", "the Richter scale", "climate models", "the history of writing", "plate armour", "solar eclipses",
        "sourdough fermentation", "the Hubble telescope", "the metric system", "tax brackets", "the Mediterranean diet",
        "ancient Egyptian pyramids", "version control", "renewable energy", "the immune response to a cold", "the Baroque era",
        "wind turbines", "the Internet of Things", "virtual reality", "hurricanes", "the Treaty of Versailles", "the nervous system",
        "credit scores", "the Mars rovers", "tectonic earthquakes", "operating systems", "the Roman road network", "bees and pollination",
        "the Krebs cycle", "inflation targeting by central banks", "Shakespeare's sonnets", "the Hundred Years' War", "desalination",
        "glaciers", "the Byzantine Empire", "the Maillard reaction", "lithium-ion batteries", "the Apollo program", "memory in the brain",
    ]
    /// Activities someone can learn, start, plan or get better at (gerund phrases).
    static let activities = [
        "learning to swim", "baking bread at home", "training for a first marathon", "starting a podcast", "learning to draw",
        "keeping houseplants alive", "studying for an exam", "learning chess", "writing a novel", "running a small online shop",
        "learning a programming language", "public speaking", "budgeting on a low income", "taking better photos with a phone",
        "growing tomatoes on a balcony", "learning to knit", "starting to meditate", "cooking for a large group", "moving to a new country",
        "preparing for a job interview", "adopting a dog", "planning a wedding on a budget", "learning to ski", "building a personal website",
        "making friends in a new city", "keeping a journal", "fixing a flat bicycle tyre", "brewing coffee", "learning sign language",
        "organising a community clean-up", "teaching a child to read", "working from home", "training a puppy", "restoring old furniture",
        "starting a book club", "cycling to work", "learning to code as a teenager", "writing a cover letter", "saving for retirement",
        "climbing an indoor wall", "learning Spanish", "decluttering a house", "camping in winter", "making pottery", "running a meeting",
        "writing poetry", "volunteering at an animal shelter", "learning calligraphy", "preparing for a long flight", "caring for an elderly parent",
    ]
    /// Premises for stories, poems, letters and other creative pieces.
    static let premises = [
        "a clockmaker who can pause time for one minute a day", "two strangers stuck in a lift", "the first colony on Mars",
        "a dragon who is afraid of fire", "a town where it always rains on Tuesdays", "a message in a bottle", "a robot gardener",
        "the last tree in a desert city", "a child who finds a door in the garden wall", "an astronaut returning home after ten years",
        "a talking parrot that knows a secret", "a baker whose bread grants wishes", "a lighthouse on the edge of the world",
        "a musician who loses their hearing", "a river that flows uphill", "a museum where the paintings move at night",
        "a postman in a village of giants", "a time traveller stuck in the Middle Ages", "a cat who becomes mayor",
        "a storm that brings snow in summer", "an inventor whose machines keep running away", "a map that redraws itself",
        "the friendship between a whale and a seagull", "a ghost who is bad at haunting", "a school for young wizards",
        "a detective who solves crimes by smell", "a ship made of ice", "a festival of lanterns", "an old woman who collects clouds",
        "a village that wakes up speaking a new language", "the day the internet stopped", "a knight who refuses to fight",
        "a garden on the roof of a skyscraper", "a pair of shoes that walk on their own", "a fox who opens a bookshop",
        "the first snowfall in a tropical town", "a submarine exploring a hidden ocean", "a chess game that lasts a hundred years",
        "an umbrella that controls the weather", "a kingdom ruled by children",
    ]
    static let creativeForms = ["short story", "poem", "limerick", "fairy tale", "diary entry", "letter", "dialogue", "song",
                                "bedtime story", "short play scene", "myth", "news article", "monologue", "fable", "travel log"]
    /// Pairs to compare.
    static let pairs = [
        ("a lake", "a sea"), ("nuclear fission", "nuclear fusion"), ("renting", "buying a home"), ("tea", "coffee"),
        ("a hurricane", "a tornado"), ("stocks", "bonds"), ("frogs", "toads"), ("an idiom", "a proverb"), ("DNA", "RNA"),
        ("a CPU", "a GPU"), ("socialism", "capitalism"), ("a violin", "a viola"), ("a lion", "a tiger"), ("HTTP", "HTTPS"),
        ("weight", "mass"), ("a monarchy", "a dictatorship"), ("reading books", "listening to audiobooks"), ("running", "swimming"),
        ("a novel", "a novella"), ("an ocean", "a sea"), ("a recession", "a depression"), ("SQL", "NoSQL databases"),
        ("butter", "margarine"), ("electric cars", "petrol cars"), ("a rabbit", "a hare"), ("a fruit", "a vegetable"),
        ("an interpreter", "a compiler"), ("a planet", "a dwarf planet"), ("Greek myths", "Norse myths"), ("a museum", "a gallery"),
        ("memorising", "understanding"), ("a laptop", "a tablet"), ("a comet", "a meteor"), ("cotton", "wool"), ("jam", "jelly"),
        ("an introvert", "an extrovert"), ("a crown", "a tiara"), ("Python", "JavaScript"), ("a startup", "a large company"),
        ("weather forecasts", "climate projections"), ("a desert", "a tundra"), ("a debit card", "a credit card"),
    ]
    static let audiences = ["a seven-year-old", "a teenager", "a university student", "a retired teacher", "a busy parent",
                            "a complete beginner", "an expert in the field", "someone learning English", "a journalist", "a farmer",
                            "a nurse", "a history enthusiast"]
    static let lengths = ["", "", "", " Keep it under 100 words.", " Answer in one paragraph.", " Go into detail.",
                          " Use at most five sentences.", " Be thorough."]
    static let formats = ["", "", "", " Use a numbered list.", " Use bullet points.", " Use headings.", " End with a one-line summary.",
                          " Start with a short definition.", " Include a table."]
    /// Writing tasks with a purpose (emails, notes, announcements).
    static let messages = [
        "asking your landlord to repair the heating", "thanking a teacher who helped you", "cancelling a gym membership",
        "apologising for missing a friend's birthday", "asking for a deadline extension", "inviting neighbours to a street party",
        "complaining about a late delivery", "congratulating a colleague on a promotion", "requesting a day off next month",
        "welcoming a new team member", "asking a professor for a reference letter", "announcing a change in opening hours",
        "reminding a club about unpaid fees", "declining a job offer politely", "proposing a new weekly meeting time",
        "asking a neighbour to keep the noise down", "introducing yourself to a new client", "following up after an interview",
        "telling customers about a product recall", "asking a friend to return a borrowed book", "booking a table for twelve people",
        "reporting a broken streetlight to the council", "announcing a charity bake sale", "asking for feedback on a presentation",
    ]
    static let messageKinds = ["an email", "a short note", "a formal letter", "a text message", "an announcement"]
    static let tones = ["polite", "friendly", "formal", "firm but kind", "cheerful", "brief", "warm"]
    /// "What would happen if ..." premises.
    static let hypotheticals = [
        "the Moon disappeared", "humans could breathe underwater", "everyone spoke the same language", "the Earth stopped spinning",
        "money did not exist", "plants could walk", "nobody needed to sleep", "the internet went down for a month",
        "we found life on Europa", "cars had never been invented", "every day were 30 hours long", "bees went extinct",
        "people lived to 200", "it never rained again", "schools had no exams", "the oceans froze", "everyone worked four days a week",
        "animals could talk", "gravity were half as strong", "paper had never been invented",
    ]
    /// Personal situations for advice.
    static let situations = [
        "I keep procrastinating on a big project", "my roommate never cleans the kitchen", "I want to change careers at 40",
        "I feel nervous before presentations", "my team disagrees about which tool to use", "I have too many browser tabs open all day",
        "I can't decide between two job offers", "my plants keep dying", "I want to read more books this year",
        "my child doesn't like vegetables", "I spend too much money on takeaway food", "I find it hard to wake up early",
        "my code review comments upset a colleague", "I forget people's names right after meeting them",
        "I want to run 5 km without stopping", "my small business has few online reviews", "I have a long commute",
        "I get distracted by my phone while studying", "I want to be more confident speaking a foreign language",
        "I have to give feedback to a friend about their business idea",
    ]
    static let codeTasks = [
        "counts the vowels in a string", "returns the median of a list of numbers", "checks whether two strings are anagrams",
        "converts a Roman numeral to an integer", "rotates an array by k positions", "finds the longest word in a sentence",
        "groups a list of words by their first letter", "checks whether a date falls on a weekend", "computes a running average",
        "transposes a matrix", "generates all subsets of a small set", "capitalises the first letter of every word",
        "finds the most common element of a list", "checks whether brackets in a string are balanced", "converts a number to binary",
        "merges two dictionaries", "computes the distance between two points", "removes all whitespace from a string",
        "splits a list into chunks of size n", "finds pairs in a list that sum to a target", "computes compound interest",
        "validates a password's strength", "converts seconds to hours, minutes and seconds", "shuffles a list",
        "implements a simple stack class", "reads a text file and counts its lines", "finds the intersection of two lists",
        "computes the n-th triangular number", "checks whether a number is a perfect square", "formats a number with thousands separators",
    ]
    static let languages = ["Python", "JavaScript", "Swift", "C", "Rust", "Go", "Java", "Kotlin", "C#", "Ruby", "TypeScript", "PHP", "Haskell"]
    static let snippets = [
        "def h(s):\n    return s == s[::-1]",
        "nums = [3, 1, 4, 1, 5]\nprint(sum(nums) / len(nums))",
        "let squares = (1...5).map { $0 * $0 }.filter { $0 % 2 == 1 }",
        "for (let i = 0; i < arr.length; i++) {\n  if (arr[i] > max) max = arr[i];\n}",
        "SELECT city, AVG(price) FROM houses WHERE rooms >= 3 GROUP BY city ORDER BY 2 DESC;",
        "words = text.split()\nlongest = max(words, key=len)",
        "fn add(a: i32, b: i32) -> i32 { a + b }",
        "while queue:\n    node = queue.pop(0)\n    visit(node)\n    queue.extend(node.children)",
        "const unique = [...new Set(list)];",
        "int total = 0;\nfor (int i = 1; i <= 100; i++) total += i;",
        "data = {k: v for k, v in pairs if v is not None}",
        "git rebase -i HEAD~3",
    ]
    static let codeAsks = ["Explain what this code does:", "Find a possible bug or edge case in this code:",
                           "How could this code be made faster or clearer?", "Add comments to this code and explain each line:",
                           "What does this print or return, and why?"]
    /// Everyday sentences to rewrite.
    static let sentences = [
        "the train was late again so i missed the start of the meeting", "can you send me the files when you get a chance",
        "our new product is cheaper and better than the old one", "the weather ruined our picnic but we still had fun",
        "i am writing to inform you that your order has shipped", "the library will be closed on monday for repairs",
        "he said the test was easy but nobody else thought so", "please remember to turn off the lights before leaving",
        "we regret to inform you that the event is cancelled", "this app helps you track your daily water intake",
        "the concert was loud, crowded and absolutely wonderful", "our profits went down last quarter because costs went up",
    ]
    static let rewriteGoals = ["more formal", "more casual", "shorter", "more exciting", "suitable for a child", "more persuasive",
                               "sound like a news headline", "sound like a Shakespeare character", "clearer", "more positive"]
    static let listSubjects = [
        "ways to make a small kitchen feel bigger", "signs that a website might be a scam", "things to do on a rainy weekend",
        "benefits of learning to cook", "reasons people enjoy gardening", "questions to ask before adopting a pet",
        "ideas for a science fair project", "habits that improve concentration", "ways to reduce food waste", "mistakes to avoid when buying a used car",
        "fun facts about the deep sea", "tips for writing clear emails", "ways to stay warm without turning up the heating",
        "snacks for a long hike", "skills every programmer should learn", "ways to make a presentation memorable",
        "things to check before a long road trip", "ways to celebrate a birthday at home", "classic novels worth reading",
        "reasons cities plant trees", "good habits for online security", "ideas for a team-building day", "facts about owls",
        "low-cost hobbies", "ways to learn new vocabulary", "things that make a good teacher",
    ]
    static let people = ["Mia", "Noah", "Priya", "Lucas", "Sofia", "Omar", "Yuki", "Elena", "Kwame", "Lena", "Tom", "Aisha"]
    static let followUps = ["Can you shorten that to three sentences?", "Give one more example.", "What is the most important point?",
                            "How would you explain it to a child?", "What are the main criticisms of this?", "Turn it into a checklist.",
                            "Can you make it funnier?", "What should I read next to learn more?"]

    public func prompt(at index: Int) -> SynthPrompt {
        var r = TextPromptGenerator.Rand(g: SeededGenerator(seed: mixSeed(seed, UInt64(index), salt: 0x7661_7269)))
        let text: String
        // Kinds whose requests are few (situations, code questions, rewrites) come up less often, and the
        // ones with the most combinations (explanations, stories, concept pairs, essays) more.
        var kind = r.int(20)
        if kind >= 16 { kind = [0, 3, 13, 14][kind - 16] }
        switch kind {
        case 0:
            let c = r.pick(Self.concepts)
            text = r.pick(["Explain \(c) to \(r.pick(Self.audiences)).", "What is \(c), and why does it matter?",
                           "Give a short introduction to \(c).", "Summarise the key ideas behind \(c)."]) + r.pick(Self.lengths) + r.pick(Self.formats)
        case 1:
            let c = r.pick(Self.concepts)
            text = r.pick(["What are three common misconceptions about \(c)?", "Write five quiz questions about \(c), with answers.",
                           "Tell me the history of \(c) in a few paragraphs.", "What is one surprising fact about \(c)? Explain it.",
                           "How would a teacher introduce \(c) in a first lesson?"]) + r.pick(Self.lengths)
        case 2:
            let a = r.pick(Self.activities)
            text = r.pick(["Give \(r.range(3, 8)) tips for \(a).", "What are the most common mistakes people make when \(a)?",
                           "Make a four-week plan for \(a).", "I am interested in \(a). Where should I start?",
                           "What equipment or resources do I need for \(a)?"]) + r.pick(Self.formats)
        case 3:
            text = "Write a \(r.pick(Self.creativeForms)) about \(r.pick(Self.premises))." + r.pick(["", "", " Give it a title.",
                   " Make it funny.", " Make it sad.", " Keep it for children.", " Use vivid descriptions.", " End with a twist."])
        case 4:
            let (a, b) = r.pick(Self.pairs)
            let (x, y) = r.int(2) == 0 ? (a, b) : (b, a)
            text = r.pick(["What is the difference between \(x) and \(y)?", "Compare \(x) and \(y).",
                           "What do \(x) and \(y) have in common, and how do they differ?", "Should I choose \(x) or \(y)? Give the pros and cons."])
                   + r.pick(Self.formats)
        case 5:
            text = "Write \(r.pick(Self.messageKinds)) \(r.pick(Self.messages)). Make it \(r.pick(Self.tones))."
                   + r.pick(["", "", " Sign it as \(r.pick(Self.people)).", " Keep it under 120 words.", " Mention a date and a time."])
        case 6:
            text = r.pick(["What would happen if \(r.pick(Self.hypotheticals))?", "Imagine \(r.pick(Self.hypotheticals)). Describe the first week.",
                           "If \(r.pick(Self.hypotheticals)), how would daily life change?"]) + r.pick(Self.lengths)
        case 7:
            text = "\(r.pick(Self.situations).capitalizedFirst). " + r.pick(["What should I do?", "Any advice?", "How can I deal with this?",
                                                             "What are my options?", "Can you help me make a plan?"])
                   + r.pick(["", "", " I have about an hour a day for it.", " I am on a tight budget.", " I have tried the obvious things already.",
                             " Please be honest.", " Keep it practical."])
        case 8:
            text = "Write a \(r.pick(Self.languages)) function that \(r.pick(Self.codeTasks))" + r.pick([".", ", with comments.",
                   ", and show an example call.", ", and explain its time complexity.", ", and add a few tests."])
        case 9:
            text = "\(r.pick(Self.codeAsks))" + r.pick(["", " Assume the input can be empty.", " Answer for a beginner.", " Keep it brief."])
                   + "\n\n\(r.pick(Self.snippets))"
        case 10:
            text = "Rewrite this sentence to make it \(r.pick(Self.rewriteGoals)): \"\(r.pick(Self.sentences))\""
                   + r.pick(["", " Give two versions.", " Then explain what you changed."])
        case 11:
            text = "\(r.pick(["List", "Give me", "Suggest", "Name"])) \(r.range(3, 12)) \(r.pick(Self.listSubjects))."
                   + r.pick(["", "", " Explain each briefly.", " Order them by importance.", " One line each."])
        case 12:
            text = Self.wordProblem(&r)
        case 13:
            let c = r.pick(Self.concepts), d = r.pick(Self.concepts)
            text = r.pick(["How is \(c) related to \(d), if at all?", "Write a short essay that connects \(c) and \(d)."])
        case 14:
            let a = r.pick(Self.activities), c = r.pick(Self.concepts)
            text = r.pick(["Write a blog post about \(a).", "Write a persuasive paragraph about why everyone should try \(a).",
                           "Describe a typical day for someone who loves \(a).", "Write a short speech about \(c) for a school assembly.",
                           "Write a product description for a course on \(a)."]) + r.pick(Self.lengths)
        default:
            text = r.pick(["Define \(r.pick(Self.concepts)) in one sentence, then give an example.",
                           "Give a step-by-step guide to \(r.pick(Self.activities)).",
                           "Write a dialogue between \(r.pick(Self.people)) and \(r.pick(Self.people)) about \(r.pick(Self.concepts)).",
                           "Write a riddle whose answer is \(r.pick(Self.concepts)), then explain the answer."])
        }
        var turns = [text]
        if r.int(8) == 0 { turns.append(r.pick(Self.followUps)) }
        return SynthPrompt(id: "text-\(index)", userTurns: turns)
    }

    /// Arithmetic with fresh numbers, so the answers' digits vary.
    static func wordProblem(_ r: inout TextPromptGenerator.Rand) -> String {
        let n = r.pick(people), m = r.pick(people)
        let a = r.range(2, 60), b = r.range(2, 30), c = r.range(5, 95)
        switch r.int(6) {
        case 0: return "\(n) reads \(a) pages a day. How many days does \(n) need for a book of \(a * b + r.range(0, a - 1)) pages? Explain."
        case 1: return "A jacket costs \(a * 5) dollars and is reduced by \(c) percent. What is the new price? Show your working."
        case 2: return "A rectangle is \(a) cm long and \(b) cm wide. What are its area and perimeter? Explain each step."
        case 3: return "\(n) is \(a) years old and \(m) is \(b) years old. How old will each be when their ages add up to \(a + b + 2 * c)?"
        case 4: return "A recipe for \(r.range(2, 6)) people needs \(a * 10) grams of flour. How much flour is needed for \(r.range(7, 20)) people?"
        default: return "A car uses \(r.range(4, 12)) litres of fuel per 100 km. How much fuel does it need for \(a * 25) km, and what does it cost at \(r.range(1, 2)).\(r.range(10, 99)) per litre?"
        }
    }
}

extension String {
    /// "my plants keep dying" → "My plants keep dying".
    var capitalizedFirst: String { prefix(1).uppercased() + dropFirst() }
}
