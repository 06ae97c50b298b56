import Testing
import TraceModel
@testable import TraceWire

@Suite("OTLP protobuf decoding")
struct OTLPProtobufTests {
    /// Hand-assembled wire bytes, so the decoder is checked against the field numbers, not against itself.
    static func field(_ number: Int, _ payload: [UInt8]) -> [UInt8] {
        varint(UInt64(number << 3 | 2)) + varint(UInt64(payload.count)) + payload
    }

    static func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var bytes: [UInt8] = []
        repeat {
            var byte = UInt8(value & 0x7F)
            value >>= 7
            if value != 0 { byte |= 0x80 }
            bytes.append(byte)
        } while value != 0
        return bytes
    }

    @Test("field numbers match the OTLP specification")
    func fieldNumbers() throws {
        let traceID: [UInt8] = Array(1...16)
        let spanID: [UInt8] = Array(21...28)
        let attribute = Self.field(1, Array("gen_ai.system".utf8)) + Self.field(2, Self.field(1, Array("openai".utf8)))
        let span = Self.field(1, traceID) + Self.field(2, spanID) + Self.field(5, Array("chat".utf8))
            + [6 << 3, 3]  // kind = CLIENT
            + [7 << 3 | 1] + [0x10, 0, 0, 0, 0, 0, 0, 0]  // start_time_unix_nano, fixed64
            + Self.field(9, attribute)
            + Self.field(15, [3 << 3, 2] + Self.field(2, Array("boom".utf8)))  // status: code=ERROR, message
        let scopeSpans = Self.field(2, span)
        let resourceSpans = Self.field(1, Self.field(1, Self.field(1, Array("service.name".utf8)) + Self.field(2, Self.field(1, Array("coder-agent".utf8)))))
            + Self.field(2, scopeSpans)
        let request = Self.field(1, resourceSpans)

        let batch = try OTLPProtobufCodec().decodeRequest(request)
        let decoded = try #require(batch.resourceSpans.first?.scopeSpans.first?.spans.first)
        #expect(batch.resourceSpans[0].resource.serviceName == "coder-agent")
        #expect(decoded.traceID == TraceID(bytes: traceID))
        #expect(decoded.spanID == SpanID(bytes: spanID))
        #expect(decoded.name == "chat")
        #expect(decoded.kind == .client)
        #expect(decoded.startTimeUnixNano == 16)
        #expect(decoded.attributes["gen_ai.system"] == .string("openai"))
        #expect(decoded.status == SpanStatus(code: .error, message: "boom"))
    }

    @Test("garbage is refused with a message, not a crash", arguments: [
        [UInt8]([0xFF]), [0x0A, 0x05, 0x01], [0x0A], Array(repeating: 0xFF, count: 64), [0x0F, 0x00],
    ])
    func garbage(bytes: [UInt8]) {
        #expect(throws: OTLPDecodingError.self) { try OTLPProtobufCodec().decodeRequest(bytes) }
    }

    @Test("every truncation of a valid request either decodes or is refused")
    func truncations() throws {
        var generator = SpanGenerator(seed: 7)
        let codec = OTLPProtobufCodec()
        let batch = generator.batch()
        let bytes = codec.encodeRequest(batch)
        let whole = try codec.decodeRequest(bytes)
        #expect(whole == batch)
        var refused = 0
        for length in 0..<bytes.count {
            do {
                // A cut on a field boundary is a valid, shorter request: never more spans than the whole.
                let prefix = try codec.decodeRequest(Array(bytes.prefix(length)))
                #expect(prefix.spanCount <= whole.spanCount, "a \(length)-byte prefix decoded to more spans than the whole")
            } catch {
                refused += 1
            }
        }
        // Most cuts land inside a length-delimited field, which protobuf-c must refuse.
        #expect(refused > bytes.count / 2, "only \(refused) of \(bytes.count) truncations were refused")
    }

    @Test("AnyValue nested beyond the limit is refused before protobuf-c recurses")
    func deepNesting() throws {
        // AnyValue{array_value{values: AnyValue{...}}} many levels deep, inside a span attribute.
        var value = Self.field(1, Array("leaf".utf8))
        for _ in 0..<100_000 { value = Self.field(5, Self.field(1, value)) }
        let span = Self.field(1, Array(repeating: 1, count: 16)) + Self.field(2, Array(repeating: 2, count: 8))
            + Self.field(9, Self.field(1, Array("deep".utf8)) + Self.field(2, value))
        let request = Self.field(1, Self.field(2, Self.field(2, span)))
        #expect(throws: OTLPDecodingError.self) { try OTLPProtobufCodec().decodeRequest(request) }

        // Moderate nesting is fine.
        var shallow = Self.field(1, Array("leaf".utf8))
        for _ in 0..<20 { shallow = Self.field(5, Self.field(1, shallow)) }
        let okSpan = Self.field(1, Array(repeating: 1, count: 16)) + Self.field(2, Array(repeating: 2, count: 8))
            + Self.field(9, Self.field(1, Array("deep".utf8)) + Self.field(2, shallow))
        let batch = try OTLPProtobufCodec().decodeRequest(Self.field(1, Self.field(2, Self.field(2, okSpan))))
        #expect(batch.spanCount == 1)
    }

    @Test("ids of the wrong length decode as zero, for the receiver to reject")
    func invalidIDs() throws {
        let span = Self.field(1, [1, 2, 3, 4]) + Self.field(2, Array(repeating: 9, count: 8))
        let batch = try OTLPProtobufCodec().decodeRequest(Self.field(1, Self.field(2, Self.field(2, span))))
        #expect(batch.resourceSpans[0].scopeSpans[0].spans[0].traceID == .zero)
    }

    @Test("responses and statuses round-trip")
    func responses() throws {
        let codec = OTLPProtobufCodec()
        #expect(codec.encodeResponse(rejectedSpans: 0, errorMessage: "").isEmpty)
        let partial = try codec.decodeResponse(codec.encodeResponse(rejectedSpans: 3, errorMessage: "bad ids"))
        #expect(partial.rejectedSpans == 3)
        #expect(partial.errorMessage == "bad ids")
        let status = try codec.decodeStatus(codec.encodeStatus(code: 3, message: "nope"))
        #expect(status.code == 3)
        #expect(status.message == "nope")
    }
}
