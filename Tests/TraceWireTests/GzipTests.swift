import NIOCore
import Testing
@testable import TraceWire

@Suite("gzip")
struct GzipTests {
    @Test("inflates what deflate produced")
    func roundTrip() throws {
        let original = ByteBuffer(bytes: Array(repeating: UInt8(ascii: "a"), count: 100_000) + Array("tail".utf8))
        let compressed = try Gzip.deflate(original)
        #expect(compressed.readableBytes < 2000)
        #expect(try Gzip.inflate(compressed, limit: 200_000) == original)
    }

    @Test("a bomb stops at the limit")
    func bomb() throws {
        let compressed = try Gzip.deflate(ByteBuffer(bytes: Array(repeating: 0, count: 50 << 20)))
        #expect(throws: GzipError.tooLarge(limit: 1 << 20)) { try Gzip.inflate(compressed, limit: 1 << 20) }
    }

    @Test("non-gzip input is corrupt")
    func corrupt() {
        #expect(throws: GzipError.corrupt) { try Gzip.inflate(ByteBuffer(string: "definitely not gzip"), limit: 1 << 20) }
    }
}

@Suite("gzip limits")
struct GzipLimitTests {
    @Test("the limit is exact: one byte over is refused, exactly the limit is accepted", arguments: [1 << 20, 4 << 20, 1000])
    func exactLimit(limit: Int) throws {
        let atLimit = try Gzip.deflate(ByteBuffer(bytes: Array(repeating: UInt8(ascii: "x"), count: limit)))
        #expect(try Gzip.inflate(atLimit, limit: limit).readableBytes == limit)
        let over = try Gzip.deflate(ByteBuffer(bytes: Array(repeating: UInt8(ascii: "x"), count: limit + 1)))
        #expect(throws: GzipError.tooLarge(limit: limit)) { try Gzip.inflate(over, limit: limit) }
    }
}

@Suite("gzip members")
struct GzipMemberTests {
    @Test("every member of a multi-member stream is inflated, in order (RFC 1952 §2.2)")
    func members() throws {
        var joined = try Gzip.deflate(ByteBuffer(string: "first,"))
        var second = try Gzip.deflate(ByteBuffer(string: "second"))
        joined.writeBuffer(&second)
        #expect(try Gzip.inflate(joined, limit: 100) == ByteBuffer(string: "first,second"))
    }

    @Test("the limit covers all members together")
    func membersShareTheLimit() throws {
        let member = try Gzip.deflate(ByteBuffer(bytes: Array(repeating: 0, count: 600)))
        var bomb = member
        for _ in 0..<3 { var copy = member; bomb.writeBuffer(&copy) }
        #expect(throws: GzipError.tooLarge(limit: 1000)) { try Gzip.inflate(bomb, limit: 1000) }
    }

    @Test("bytes after a member that are not gzip are corrupt")
    func trailingGarbage() throws {
        var body = try Gzip.deflate(ByteBuffer(string: "ok"))
        body.writeString("garbage")
        #expect(throws: GzipError.corrupt) { try Gzip.inflate(body, limit: 100) }
    }
}
