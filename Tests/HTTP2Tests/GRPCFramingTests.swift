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
