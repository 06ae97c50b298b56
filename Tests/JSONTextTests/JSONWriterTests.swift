import Foundation
import Testing
@testable import JSONText

@Suite struct JSONWriterTests {
    /// Ids as hex: the same 16 digits as the standard library's radix-16 text, zero-padded.
    @Test func hexMatchesRadixText() {
        var generator = SystemRandomNumberGenerator()
        let words: [UInt64] = [0, 1, 9, 10, 15, 16, 0xFFFF_FFFF, 0x1_0000_0000, .max, 0x0123_4567_89AB_CDEF, 0xA0B0_C0D0_E0F0_0A0B]
            + (0..<500).map { _ in generator.next() }
        for word in words {
            var writer = JSONWriter()
            writer.hex(word)
            let digits = String(word, radix: 16)
            #expect(String(decoding: writer.bytes, as: UTF8.self) == "\"" + String(repeating: "0", count: 16 - digits.count) + digits + "\"")
        }
        var writer = JSONWriter()
        writer.hex(0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210)
        #expect(String(decoding: writer.bytes, as: UTF8.self) == "\"0123456789abcdeffedcba9876543210\"")
    }

    /// The word-at-a-time test finds exactly the bytes JSON must escape, at every place in a word and in the tail.
    @Test func escapingTestAgreesWithEachByte() {
        var generator = SystemRandomNumberGenerator()
        let special: [UInt8] = [0x00, 0x01, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x5B, 0x5C, 0x5D, 0x7F, 0x80, 0xA2, 0xDC, 0xFF]
        for length in 0..<40 {
            for _ in 0..<60 {
                let bytes = (0..<length).map { _ in
                    Bool.random(using: &generator) ? special.randomElement(using: &generator)! : UInt8.random(in: 0x20...0x7E, using: &generator)
                }
                let expected = bytes.contains { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C }
                #expect(bytes.withUnsafeBufferPointer { JSONWriter.needsEscaping($0) } == expected, "\(bytes)")
            }
            // One byte to escape, alone among harmless ones, at each place.
            for place in 0..<length {
                for byte in [UInt8(0x1F), 0x22, 0x5C] {
                    var bytes = [UInt8](repeating: 0x41, count: length)
                    bytes[place] = byte
                    #expect(bytes.withUnsafeBufferPointer { JSONWriter.needsEscaping($0) })
                }
                var harmless = [UInt8](repeating: 0xC3, count: length)
                harmless[place] = 0x20
                #expect(!harmless.withUnsafeBufferPointer { JSONWriter.needsEscaping($0) })
            }
        }
    }

    /// Strings written are read back unchanged by Foundation's JSON parser, whatever they hold.
    @Test func stringsRoundTripThroughFoundation() throws {
        let pieces = ["a", "\"", "\\", "\n", "\t", "\u{01}", "\u{1F}", "é", "日本", "🙂", " ", "agent.name", "0123456789"]
        var generator = SystemRandomNumberGenerator()
        var texts = ["", "short", "exactly8", "a string longer than fifteen bytes", "tail\u{7}"]
        for _ in 0..<300 {
            texts.append((0..<Int.random(in: 0...12, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined())
        }
        for text in texts {
            var writer = JSONWriter()
            writer.beginArray()
            writer.string(text)
            writer.endArray()
            let parsed = try JSONSerialization.jsonObject(with: Data(writer.bytes)) as? [String]
            #expect(parsed == [text], "\(text.debugDescription)")
        }
    }
}
