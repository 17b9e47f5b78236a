import Foundation
import Testing
@testable import Vision

struct ImageDecodeTests {
    @Test func placeholder() { #expect(Bool(true)) }
}
