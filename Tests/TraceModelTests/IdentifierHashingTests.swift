import Testing
@testable import TraceModel

@Suite struct IdentifierHashingTests {
    /// Ids that differ only where a sender's counter would (the ones bench/rotate.lua writes) still land
    /// in different buckets: no bucket of a table the size of the ids gets more than a handful.
    @Test func nearbyIdsSpreadOverTheBuckets() {
        let count = 1 << 14
        for seed in [0, 1, 0x7f00_1234_5678] {
            var byHigh = [Int](repeating: 0, count: count)
            var byLow = [Int](repeating: 0, count: count)
            var bySpan = [Int](repeating: 0, count: count)
            for counter in 0..<UInt64(count) {
                byHigh[TraceID(high: 0xA6E7_0000_0000_0000 | counter << 32, low: 42)._rawHashValue(seed: seed) & (count - 1)] += 1
                byLow[TraceID(high: 7, low: counter)._rawHashValue(seed: seed) & (count - 1)] += 1
                bySpan[SpanID(counter)._rawHashValue(seed: seed) & (count - 1)] += 1
            }
            // A uniform hash puts at most about 11 of 16,384 keys in one of 16,384 buckets (2,700 trials of
            // random keys: 6 to 9 mostly); a hash that passed a word through (or dropped one) would put
            // thousands in one. The bound leaves room for the key drawn at random in each test run.
            #expect(byHigh.max()! <= 16, "seed \(seed)")
            #expect(byLow.max()! <= 16, "seed \(seed)")
            #expect(bySpan.max()! <= 16, "seed \(seed)")
        }
    }

    /// A key that makes one factor of the product a power of two (here forced through the seed) leaves its
    /// low bits all zero; without the finishing fold every counter id would land in one bucket.
    @Test func anEvenFactorStillSpreadsCounterIds() {
        let count = 1 << 14
        let seed = Int(bitPattern: UInt(7 ^ IdentifierHashing.key.0 ^ (1 << 20)))
        var byLow = [Int](repeating: 0, count: count)
        for counter in 0..<UInt64(count) {
            byLow[TraceID(high: 7, low: counter)._rawHashValue(seed: seed) & (count - 1)] += 1
        }
        #expect(byLow.max()! <= 16)
    }

    /// Three words are not combined by xor: pairs a sender could pick to cancel out do not collide.
    @Test func wordsDoNotCancelOut() {
        var hashes = Set<Int>()
        for value in 0..<UInt64(4096) {
            // trace.low ^ span is the same for every pair.
            hashes.insert(IdentifierHashing.hash(1, value, value ^ 0xFFFF, seed: 5))
        }
        #expect(hashes.count == 4096)
        #expect(IdentifierHashing.hash(1, 2, 3, seed: 5) != IdentifierHashing.hash(1, 3, 2, seed: 5))
    }

    /// Equal ids hash alike under one seed, as tables need; another table's seed moves them.
    @Test func equalIdsHashAlikeUnderOneSeed() {
        let id = TraceID(high: 0x0123_4567_89AB_CDEF, low: 0xFEDC_BA98_7654_3210)
        let same = TraceID(hex: "0123456789abcdeffedcba9876543210")!
        #expect(id._rawHashValue(seed: 99) == same._rawHashValue(seed: 99))
        #expect(id._rawHashValue(seed: 99) != id._rawHashValue(seed: 100))
        var table: [TraceID: Int] = [:]
        for counter in 0..<UInt64(1000) { table[TraceID(high: counter, low: counter)] = Int(counter) }
        #expect(table[TraceID(high: 500, low: 500)] == 500)
        #expect(table.count == 1000)
    }
}
