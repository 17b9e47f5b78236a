import Sampling
import Testing

// Every synthesized dataset, training run and random draft depends on these streams: a change
// here would silently change data that the checkpoints' READMEs say anyone can regenerate.
@Test func splitMix64MatchesTheReferenceImplementation() {
    // The first outputs of Vigna's splitmix64.c from state 0.
    var g = SplitMix64(seed: 0)
    #expect(g.next() == 0xE220_A839_7B1D_CDAF)
    #expect(g.next() == 0x6E78_9E6A_A1B9_65F4)
    #expect(SplitMix64.finalize(0x9E37_79B9_7F4A_7C15) == 0xE220_A839_7B1D_CDAF)
    #expect(SplitMix64.finalize(0) == 0)
}

@Test func openUnitDoubleIsTheTop53BitsPlusOne() {
    // (output >> 11) + 1 over 2^53, exactly: the + 1 is what keeps 0 out (a log's argument in
    // the draft's Box–Muller init); the first two outputs from state 0, as above.
    var g = SplitMix64(seed: 0)
    #expect(g.nextOpenUnitDouble() == Double(7_956_156_453_446_586) / 9_007_199_254_740_992)
    #expect(g.nextOpenUnitDouble() == Double(3_886_858_653_415_213) / 9_007_199_254_740_992)
}
