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

    @Test("pages emptied together (a tick deciding many traces) are each written again, not faulted in anew")
    func burst() {
        var slab = ByteSlab()
        // Ten pages' worth, one 600 kB chunk a page.
        var early: [ByteSlab.Chunk]? = (0..<10).map { slab.append(Self.bytes(600_000, seed: $0)) }
        let earlyPages = Set(early!.map { ObjectIdentifier($0.page) })
        let stillHeld = slab.append(Self.bytes(600_000, seed: 99))
        early = nil
        // Nine more pages: every one of them is an emptied page.
        let later = (0..<9).map { slab.append(Self.bytes(600_000, seed: 20 + $0)) }
        #expect(later.allSatisfy { earlyPages.contains(ObjectIdentifier($0.page)) })
        #expect(Set(later.map { ObjectIdentifier($0.page) }).count == 9)
        #expect(slab.sparePageCount == 1)
        for (index, chunk) in later.enumerated() { #expect(ByteSlab.join([chunk]) == Self.bytes(600_000, seed: 20 + index)) }
        #expect(ByteSlab.join([stillHeld]) == Self.bytes(600_000, seed: 99))
    }

    @Test("at most sparePages empty pages wait for reuse")
    func spareBound() {
        var slab = ByteSlab()
        var early: [ByteSlab.Chunk]? = (0..<(ByteSlab.sparePages + 20)).map { slab.append(Self.bytes(600_000, seed: $0)) }
        _ = slab.append(Self.bytes(600_000, seed: 1))
        early = nil
        _ = early
        _ = slab.append(Self.bytes(600_000, seed: 2))
        #expect(slab.sparePageCount == ByteSlab.sparePages - 1)
        #expect(slab.pagesInUse == 2)
    }
}
