import Testing
@testable import HTTP2

@Suite("gRPC framing")
struct GRPCFramingTests {
    @Test("frames and unframes messages")
    func roundTrip() throws {
        let framed = GRPCFraming.frame([1, 2, 3]) + GRPCFraming.frame([])
        #expect(Array(framed.prefix(5)) == [0, 0, 0, 0, 3])
        let messages = try GRPCFraming.messages(in: framed, maxMessageSize: 10)
        #expect(messages == [GRPCFraming.Message(compressed: false, bytes: [1, 2, 3]), GRPCFraming.Message(compressed: false, bytes: [])])
    }

    @Test("the prefix is the compressed flag and the length as four big-endian bytes")
    func prefix() {
        // gRPC over HTTP/2: Compressed-Flag (1 byte), Message-Length (4 bytes, big endian), Message.
        #expect(GRPCFraming.prefix(length: 0x0102_0304, compressed: false) == [0, 1, 2, 3, 4])
        #expect(GRPCFraming.prefix(length: 4 << 20, compressed: true) == [1, 0, 0x40, 0, 0])
        #expect(GRPCFraming.prefix(length: 0, compressed: false) == [0, 0, 0, 0, 0])
    }

    @Test("body parts are the prefix and the message itself, unjoined, and read back as that message")
    func bodyParts() throws {
        let message = Array(0..<200).map { UInt8($0) }
        let parts = GRPCFraming.bodyParts(message, compressed: true)
        #expect(parts.count == 2)
        #expect(parts[0] == [1, 0, 0, 0, 200])
        #expect(parts[1] == message)
        let messages = try GRPCFraming.messages(in: parts.flatMap { $0 }, maxMessageSize: 1000)
        #expect(messages == [GRPCFraming.Message(compressed: true, bytes: message)])
    }

    @Test("a wrong length prefix is truncation, an oversized one is refused, a bad flag is refused")
    func errors() {
        #expect(throws: GRPCFraming.FramingError.truncated) { try GRPCFraming.messages(in: [0, 0, 0, 0, 9, 1, 2], maxMessageSize: 100) }
        #expect(throws: GRPCFraming.FramingError.truncated) { try GRPCFraming.messages(in: [0, 0, 0], maxMessageSize: 100) }
        #expect(throws: GRPCFraming.FramingError.tooLarge(declared: 1 << 24, limit: 100)) {
            try GRPCFraming.messages(in: [0, 1, 0, 0, 0], maxMessageSize: 100)
        }
        #expect(throws: GRPCFraming.FramingError.invalidFlag(7)) { try GRPCFraming.messages(in: [7, 0, 0, 0, 0], maxMessageSize: 100) }
        #expect(GRPCFraming.declaredLength([0, 0, 1, 0]) == nil)
        #expect(GRPCFraming.declaredLength([0, 0, 1, 0, 0]) == 65536)
    }

    @Test("grpc-message is percent-encoded outside printable ASCII")
    func percentEncoding() {
        #expect(GRPCResponse.percentEncoded("bad 100% é\n") == "bad 100%25 %C3%A9%0A")
    }
}
