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
