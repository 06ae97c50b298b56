import NIOCore
import Testing
@testable import HTTP2

@Suite("HTTP/2 input tracker")
struct HTTP2InputTrackerTests {
    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8]) -> [UInt8] {
        [UInt8(payload.count >> 16), UInt8(payload.count >> 8 & 0xFF), UInt8(payload.count & 0xFF), type, flags,
         UInt8(stream >> 24), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
    }

    @Test("mid-unit until the preface is complete, then between frames")
    func preface() {
        var tracker = HTTP2InputTracker()
        #expect(tracker.isMidUnit)
        tracker.consume(ByteBuffer(bytes: Self.preface.prefix(10)))
        #expect(tracker.isMidUnit)
        tracker.consume(ByteBuffer(bytes: Self.preface.dropFirst(10)))
        #expect(!tracker.isMidUnit)
    }

    @Test("a frame delivered a byte at a time is mid-unit until its last byte")
    func trickledFrame() {
        var tracker = HTTP2InputTracker()
        tracker.consume(ByteBuffer(bytes: Self.preface))
        let settings = Self.frame(type: 4, flags: 0, stream: 0, payload: [0, 3, 0, 0, 0, 100])
        for byte in settings.dropLast() {
            tracker.consume(ByteBuffer(bytes: [byte]))
            #expect(tracker.isMidUnit)
        }
        tracker.consume(ByteBuffer(bytes: [settings.last!]))
        #expect(!tracker.isMidUnit)
    }

    @Test("a header block stays open across CONTINUATION frames until END_HEADERS")
    func headerBlock() {
        var tracker = HTTP2InputTracker()
        var bytes = Self.preface + Self.frame(type: 1, flags: 0, stream: 1, payload: [0x82])
        bytes += Self.frame(type: 9, flags: 0, stream: 1, payload: [0x84])
        tracker.consume(ByteBuffer(bytes: bytes))
        #expect(tracker.inHeaderBlock && tracker.isMidUnit)
        tracker.consume(ByteBuffer(bytes: Self.frame(type: 9, flags: 0x4, stream: 1, payload: [0x86])))
        #expect(!tracker.isMidUnit)
    }
}
