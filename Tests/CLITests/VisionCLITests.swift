import Foundation
import Testing
import TestSupport

/// `specdec decode --mmproj --image`, `make-demo-tower`, `inspect` on a tower, and bad images or
/// towers as one-line errors.
@Suite(.serialized) struct VisionCLITests {
    static let tower = TestPaths.repoRoot.appendingPathComponent("checkpoints/demo-tower.gguf").path
    static func image(_ n: String) -> String { TestPaths.repoRoot.appendingPathComponent("checkpoints/images/\(n).png").path }

    @Test func decodeAnswersAboutABundledImage() throws {
        let r = try CLI.run(["decode", "--mmproj", Self.tower, "--image", Self.image("green"),
                             "-p", "What color is this image?", "-n", "12", "--json", "-t", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        let o = try CLI.json(r.stdout)
        #expect((o["text"] as? String)?.lowercased().contains("green") == true, "\(o["text"] ?? "")")
        let prompt = try #require(o["prompt_tokens"] as? [Int])
        #expect(prompt.filter { $0 == -1 }.count == 4)  // the image's four rows
        let stats = try #require(o["stats"] as? [String: Any])
        #expect(stats["image_count"] as? Int == 1)
        #expect(stats["image_token_count"] as? Int == 4)
        #expect((stats["image_seconds"] as? Double ?? -1) >= 0)
        #expect(stats["prompt_token_count"] as? Int == prompt.count)
    }

    @Test func twoImagesInPromptOrder() throws {
        let r = try CLI.run(["decode", "--mmproj", Self.tower, "--image", Self.image("red"), "--image", Self.image("blue"),
                             "-p", "First <image>, then <image>. Name both colors.", "-n", "4", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let stats = try #require(try CLI.json(r.stdout)["stats"] as? [String: Any])
        #expect(stats["image_count"] as? Int == 2 && stats["image_token_count"] as? Int == 8)
        let streamed = try CLI.run(["decode", "--mmproj", Self.tower, "--image", Self.image("red"), "-p", "Color?", "-n", "2"])
        #expect(streamed.status == 0 && streamed.stderr.contains("images: 1, 4 positions"), "\(streamed.stderr)")
    }

    @Test func makeDemoTowerIsDeterministic() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("specdec-tower-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("t.gguf").path
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let r = try CLI.run(["make-demo-tower", "--out", out, "--images", dir.appendingPathComponent("img").path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(FileManager.default.contents(atPath: out) == FileManager.default.contents(atPath: Self.tower))
        for n in ["red", "white", "red-square"] {
            #expect(FileManager.default.contents(atPath: dir.appendingPathComponent("img/\(n).png").path)
                    == FileManager.default.contents(atPath: Self.image(n)))
        }
    }

    @Test func benchMeasuresImagePrefill() throws {
        let r = try CLI.run(["bench", "--pp", "8", "--tg", "1", "--verify", "", "--bandwidth-mib", "0", "--reps", "1",
                             "--mmproj", Self.tower, "--image", Self.image("red"), "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let i = try #require(try CLI.json(r.stdout)["image_prefill"] as? [String: Any])
        #expect(i["image_rows"] as? Int == 4)
        let encode = try #require(i["encode_ms"] as? Double), prefill = try #require(i["prefill_ms"] as? Double)
        let total = try #require(i["total_ms"] as? Double)
        #expect(encode > 0 && prefill > 0 && total >= encode + prefill - 1e-6)
        let plain = try CLI.run(["bench", "--pp", "8", "--tg", "1", "--verify", "", "--bandwidth-mib", "0", "--reps", "1", "--json"])
        #expect(plain.status == 0, "\(plain.stderr)")
        let plainJSON = try CLI.json(plain.stdout)
        #expect(plainJSON["image_prefill"] == nil)
    }

    @Test func inspectShowsTheTower() throws {
        let r = try CLI.run(["inspect", Self.tower])
        #expect(r.status == 0)
        #expect(r.stdout.contains("clip.projector_type") && r.stdout.contains("\"mlp\""))
        #expect(r.stdout.contains("v.patch_embd.weight") && r.stdout.contains("mm.2.weight"))
    }

    @Test func brokenImagesAndTowersAreOneLineErrors() throws {
        let cut = try temporaryFile(Array(try Data(contentsOf: URL(fileURLWithPath: Self.image("red"))).prefix(100)), name: "cut.png")
        let r1 = try CLI.run(["decode", "--mmproj", Self.tower, "--image", cut, "-p", "Color?", "-n", "1"])
        expectCleanFailure(r1, mentioning: cut)
        expectCleanFailure(r1, mentioning: "truncated")

        var huge = Array(try Data(contentsOf: URL(fileURLWithPath: Self.image("red"))))
        huge.replaceSubrange(16..<24, with: [0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0])  // 100000×100000 (the header CRC no longer matches)
        let hugePath = try temporaryFile(huge, name: "huge.png")
        expectCleanFailure(try CLI.run(["decode", "--mmproj", Self.tower, "--image", hugePath, "-p", "Color?"]), mentioning: hugePath)

        let missing = try CLI.run(["decode", "--mmproj", Self.tower, "--image", "/nonexistent/x.png", "-p", "Color?"])
        expectCleanFailure(missing, mentioning: "/nonexistent/x.png")

        let notTower = try CLI.run(["decode", "--mmproj", Self.image("red"), "--image", Self.image("red"), "-p", "Color?"])
        expectCleanFailure(notTower, mentioning: Self.image("red"))

        expectCleanFailure(try CLI.run(["decode", "--image", Self.image("red"), "-p", "Color?"]), mentioning: "--mmproj")
        expectCleanFailure(try CLI.run(["decode", "--mmproj", Self.tower, "--image", Self.image("red"),
                                        "-p", "<image> <image>"]), mentioning: "2 <image> markers")
    }
}
