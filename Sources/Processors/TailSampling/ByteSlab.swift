import Synchronization

/// Where held spans' bytes live: appended one after another into pages of 1 MiB. Traces are decided
/// in about the order they arrived, so pages empty in order; an empty page is written again rather
/// than returned to the system, since a fresh page costs the kernel a zeroing fault per 4 KiB — more
/// than the encoding itself at full ingest. Up to `sparePages` empty pages wait for reuse; beyond that
/// they are let go.
struct ByteSlab {
    /// A page of bytes, shared by the chunks written into it.
    final class Page: Sendable {
        /// The bytes written so far; the page's room is the array's capacity, reserved once and never
        /// regrown (reserved, not filled: zeroing a fresh page first wrote every byte twice).
        let bytes: Mutex<[UInt8]>
        let capacity: Int

        init(capacity: Int) {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(capacity)
            self.bytes = Mutex(bytes)
            self.capacity = capacity
        }
    }

    /// Bytes written into a page.
    struct Chunk: Sendable {
        let page: Page
        let offset: Int32
        let count: Int32
    }

    static let pageSize = 1 << 20
    /// Empty pages kept for reuse at most. Decisions come in bursts (every trace due since the last
    /// tick, 50 ms of arrivals: 8 pages at 150 MB/s), and each page of a burst let go would be a fresh
    /// one, faulted in, a few appends later.
    static let sparePages = 64
    /// Pages some chunk may still refer to, oldest first; the last is the one being written. (An Array:
    /// its elements can be checked for a unique reference in place.)
    private var pages: [Page] = [Page(capacity: ByteSlab.pageSize)]
    /// Empty pages of `pageSize`, to be written again.
    private var spare: [Page] = []
    private var used = 0

    /// Copies `bytes` into the current page, moving to another when it is full (a chunk larger than a
    /// page gets a page of its own).
    mutating func append(_ bytes: [UInt8]) -> Chunk {
        if used + bytes.count > pages[pages.count - 1].capacity { nextPage(fitting: bytes.count) }
        let offset = used
        let page = pages[pages.count - 1]
        page.bytes.withLock { $0.append(contentsOf: bytes) }
        used += bytes.count
        return Chunk(page: page, offset: Int32(offset), count: Int32(bytes.count))
    }

    /// Pages written into and not yet spare (for tests).
    var pagesInUse: Int { pages.count }
    /// Empty pages waiting to be written again (for tests).
    var sparePageCount: Int { spare.count }

    private mutating func nextPage(fitting count: Int) {
        used = 0
        // Pages at the front that no chunk refers to any more are empty: they become spares.
        var front = 0
        while front < pages.count - 1, isKnownUniquelyReferenced(&pages[front]) { front += 1 }
        for page in pages[..<front] where page.capacity == Self.pageSize && spare.count < Self.sparePages {
            page.bytes.withLock { $0.removeAll(keepingCapacity: true) }
            spare.append(page)
        }
        pages.removeFirst(front)
        if count <= Self.pageSize, let reusable = spare.popLast() {
            pages.append(reusable)
        } else {
            pages.append(Page(capacity: max(Self.pageSize, count)))
        }
    }

    /// The bytes of `chunks`, one after another.
    static func join(_ chunks: [Chunk]) -> [UInt8] {
        var joined: [UInt8] = []
        joined.reserveCapacity(chunks.reduce(0) { $0 + Int($1.count) })
        for chunk in chunks {
            chunk.page.bytes.withLock { joined.append(contentsOf: $0[Int(chunk.offset)..<Int(chunk.offset + chunk.count)]) }
        }
        return joined
    }
}
