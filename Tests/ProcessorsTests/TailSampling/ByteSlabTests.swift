import Testing
@testable import Processors

/// Held spans' bytes: written into pages, read back whole, pages reused once nothing refers to them.
@Suite("tail sampling: the byte slab")
struct ByteSlabTests {
    /// `count` bytes counting up from `seed`.
    static func bytes(_ count: Int, seed: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: seed &+ $0 &* 7) }
    }

    @Test("chunks read back as written, across page boundaries and in a page of their own when larger")
    func readBack() {
        var slab = ByteSlab()
        let sizes = [1000, 300_000, 500_000, 400_000, ByteSlab.pageSize + 5, 10, 0, 700_000]
        let written = sizes.enumerated().map { Self.bytes($1, seed: $0) }
        let chunks = written.map { slab.append($0) }
        for (chunk, expected) in zip(chunks, written) {
            #expect(ByteSlab.join([chunk]) == expected)
        }
        #expect(ByteSlab.join(Array(chunks.prefix(3))) == written[0] + written[1] + written[2])
        // 1000 + 300,000 + 500,000 fill less than a page; 400,000 more does not fit: a second page.
        #expect(chunks[2].page === chunks[0].page)
        #expect(chunks[3].page !== chunks[0].page)
        #expect(chunks[4].page.capacity == ByteSlab.pageSize + 5)
    }

    @Test("a page no chunk refers to is written again from its start, and what is still held stays intact")
    func reuse() {
        var slab = ByteSlab()
        var first: [ByteSlab.Chunk]? = (0..<3).map { slab.append(Self.bytes(400_000, seed: $0)) }
        let firstPage = ObjectIdentifier(first![0].page)
        let held = slab.append(Self.bytes(600_000, seed: 9))  // the second page
        first = nil
        // The third page is needed: the first, now free, is taken rather than a new one.
        let again = slab.append(Self.bytes(700_000, seed: 5))
        #expect(ObjectIdentifier(again.page) == firstPage)
        #expect(again.offset == 0)
        #expect(ByteSlab.join([again]) == Self.bytes(700_000, seed: 5))
        #expect(ByteSlab.join([held]) == Self.bytes(600_000, seed: 9))
    }
}
