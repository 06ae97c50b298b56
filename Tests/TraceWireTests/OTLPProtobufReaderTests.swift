import Testing
import TraceModel
@testable import TraceWire

/// The reader against libprotobuf-c, the reference: the same batches from the same bytes, the same
/// refusals, and the three documented departures (U+0000 kept, singular messages merged as the
/// specification says, field numbers beyond 2^29 - 1 refused).
@Suite("OTLP protobuf reader")
struct OTLPProtobufReaderTests {
    static let field = OTLPProtobufTests.field
    static let varint = OTLPProtobufTests.varint

    /// Reads `bytes` both ways; both refuse, or both read the same batch.
    static func expectSameAsProtobufC(_ bytes: [UInt8], _ comment: Comment? = nil,
                                      sourceLocation: SourceLocation = #_sourceLocation) {
        let codec = OTLPProtobufCodec()
        let read = Result { () throws(OTLPDecodingError) in try codec.decodeRequest(bytes) }
        let merged = codec.lastRequestMergedSingularMessage
        let reference = Result { () throws(OTLPDecodingError) in try codec.decodeRequestUsingProtobufC(bytes) }
        switch (read, reference) {
        case (.success(let batch), .success(let expected)):
            if !merged, !batch.containsNUL {
                #expect(batch == expected, comment, sourceLocation: sourceLocation)
            }
        case (.failure, .failure):
            break
        case (.failure(let error), .success) where error.message == OTLPDecodingError.fieldNumberTooLarge.message:
            break  // a departure of protobuf-c's: see fieldNumbersBeyondTheSpecification
        case (.success(let batch), .failure(let error)):
            Issue.record("read \(batch.spanCount) spans; protobuf-c refuses: \(error.message). \(comment?.rawValue ?? "")",
                         sourceLocation: sourceLocation)
        case (.failure(let error), .success(let expected)):
            Issue.record("refused (\(error.message)); protobuf-c reads \(expected.spanCount) spans. \(comment?.rawValue ?? "")",
                         sourceLocation: sourceLocation)
        }
    }

    @Test("reads what protobuf-c reads, over generated batches", arguments: 0..<300)
    func generated(seed: Int) throws {
        var generator = SpanGenerator(seed: UInt64(seed) &+ 31_000)
        let batch = generator.batch()
        let bytes = OTLPProtobufCodec().encodeRequestUsingProtobufC(batch)
        #expect(try OTLPProtobufCodec().decodeRequest(bytes) == batch)
        Self.expectSameAsProtobufC(bytes)
    }

    @Test("agrees with protobuf-c on mutated requests: flipped, inserted, deleted and repeated bytes", arguments: 0..<40)
    func mutated(seed: Int) {
        var generator = SpanGenerator(seed: UInt64(seed) &+ 77_000)
        let original = OTLPProtobufWriter.request(generator.batch())
        for round in 0..<60 {
            var bytes = original
            for _ in 0..<generator.int(1...3) where !bytes.isEmpty {
                let at = generator.int(0...(bytes.count - 1))
                switch generator.int(0...4) {
                case 0: bytes[at] ^= UInt8(1 << generator.int(0...7))
                case 1: bytes.insert(UInt8(truncatingIfNeeded: generator.next()), at: at)
                case 2: bytes.remove(at: at)
                case 3: bytes[at] = [0x00, 0x7F, 0x80, 0xFF, 0x08, 0x12][generator.int(0...5)]
                default:
                    let length = min(generator.int(1...24), bytes.count - at)
                    bytes.insert(contentsOf: bytes[at..<(at + length)], at: at)
                }
            }
            Self.expectSameAsProtobufC(bytes, "seed \(seed) round \(round)")
        }
    }

    static let traceID = Self.field(1, Array(1...16))
    static let spanID = Self.field(2, Array(21...28))

    static func request(span: [UInt8]) -> [UInt8] {
        Self.field(1, Self.field(2, Self.field(2, span)))
    }

    static func request(attributeValue: [UInt8]) -> [UInt8] {
        request(span: traceID + spanID + Self.field(9, Self.field(1, Array("k".utf8)) + Self.field(2, attributeValue)))
    }

    static func value(_ bytes: [UInt8]) throws -> AttributeValue {
        let batch = try OTLPProtobufCodec().decodeRequest(request(attributeValue: bytes))
        return try #require(batch.resourceSpans.first?.scopeSpans.first?.spans.first?.attributes.first).value
    }

    @Test("a known field with the wrong wire type is refused, as protobuf-c refuses it")
    func wrongWireType() {
        let nameAsVarint = Self.request(span: Self.traceID + Self.spanID + [5 << 3, 1])
        let kindAsBytes = Self.request(span: Self.traceID + Self.spanID + Self.field(6, [1]))
        let startAsFixed32 = Self.request(span: Self.traceID + Self.spanID + [7 << 3 | 5, 1, 0, 0, 0])
        for bytes in [nameAsVarint, kindAsBytes, startAsFixed32] {
            #expect(throws: OTLPDecodingError.self) { try OTLPProtobufCodec().decodeRequest(bytes) }
            Self.expectSameAsProtobufC(bytes)
        }
    }

    @Test("unknown fields of every wire type are skipped; groups and wire types 6 and 7 are refused")
    func unknownFields() throws {
        let unknown: [UInt8] = Self.varint(40 << 3 | 0) + [0x96, 0x01] + Self.varint(41 << 3 | 1) + Array(repeating: 7, count: 8)
            + Self.field(42, [1, 2, 3]) + Self.varint(43 << 3 | 5) + [1, 2, 3, 4] + Self.varint(1_000_000 << 3 | 2) + [0]
            + Self.varint(17 << 3 | 0) + [1]
        let bytes = Self.request(span: Self.traceID + unknown + Self.spanID + Self.field(5, Array("chat".utf8)) + unknown)
        let span = try #require(try OTLPProtobufCodec().decodeRequest(bytes).resourceSpans.first?.scopeSpans.first?.spans.first)
        #expect(span.name == "chat")
        #expect(span.spanID == SpanID(bytes: Array(21...28)))
        Self.expectSameAsProtobufC(bytes)
        for wireType: UInt8 in [3, 4, 6, 7] {
            let refused = Self.request(span: Self.traceID + Self.varint(40 << 3 | UInt64(wireType)) + [0])
            #expect(throws: OTLPDecodingError.self) { try OTLPProtobufCodec().decodeRequest(refused) }
            Self.expectSameAsProtobufC(refused)
        }
    }

    @Test("keys and lengths longer than 5 bytes, varints longer than 10 and field number 0 are refused")
    func overlongEncodings() throws {
        // Field 5 (name) as a padded 6-byte key; a length padded to 6 bytes; an 11-byte varint; key 0.
        let paddedKey = Self.request(span: Self.traceID + [0x2A | 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 1, 0x61])
        let paddedLength = Self.request(span: Self.traceID + [5 << 3 | 2, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0x61])
        let longVarint = Self.request(span: Self.traceID + [6 << 3] + Array(repeating: 0x80, count: 10) + [0])
        let zeroKey = Self.request(span: Self.traceID + [0x00, 0x00])
        for bytes in [paddedKey, paddedLength, longVarint, zeroKey] {
            #expect(throws: OTLPDecodingError.self) { try OTLPProtobufCodec().decodeRequest(bytes) }
            Self.expectSameAsProtobufC(bytes)
        }
        // Padded but within the limits: a 5-byte key and a 10-byte varint are fine.
        let fiveByteKey = Self.request(span: Self.traceID + [0x2A | 0x80, 0x80, 0x80, 0x80, 0x00, 1, 0x61])
        let tenByteVarint = Self.request(span: Self.traceID + [6 << 3] + [0x83] + Array(repeating: 0x80, count: 8) + [0])
        #expect(try OTLPProtobufCodec().decodeRequest(fiveByteKey).resourceSpans[0].scopeSpans[0].spans[0].name == "a")
        #expect(try OTLPProtobufCodec().decodeRequest(tenByteVarint).resourceSpans[0].scopeSpans[0].spans[0].kind == .client)
        Self.expectSameAsProtobufC(fiveByteKey)
        Self.expectSameAsProtobufC(tenByteVarint)
    }

    @Test("a field number beyond 2^29 - 1 is refused, where protobuf-c skips it as an unknown field")
    func fieldNumbersBeyondTheSpecification() throws {
        // The span's name key (field 5, length-delimited: 0x2A) padded to five bytes with 0x10 in the fifth:
        // field 2^29 + 5. The protobuf specification caps field numbers at 2^29 - 1 (keys fit 32 bits);
        // protobuf-c keeps 32 bits of field number and skips the field; a name field follows.
        let name = Self.field(5, Array("b".utf8))
        let beyond = Self.request(span: Self.traceID + [0x2A | 0x80, 0x80, 0x80, 0x80, 0x10, 1, 0x61] + name)
        do {
            _ = try OTLPProtobufCodec().decodeRequest(beyond)
            Issue.record("read a field number beyond 2^29 - 1")
        } catch {
            #expect(error.message == "malformed protobuf: a field number beyond 2^29 - 1")
        }
        #expect(try OTLPProtobufCodec().decodeRequestUsingProtobufC(beyond).resourceSpans[0].scopeSpans[0].spans[0].name == "b")
        // Field 2^29 - 1 itself (key 0xFFFFFFFA, five bytes) is unknown to a span and skipped by both.
        let widest = Self.request(span: Self.traceID + [0xFA, 0xFF, 0xFF, 0xFF, 0x0F, 1, 0x61] + name)
        #expect(try OTLPProtobufCodec().decodeRequest(widest).resourceSpans[0].scopeSpans[0].spans[0].name == "b")
        Self.expectSameAsProtobufC(widest)
    }

    @Test("AnyValue: the last member sent wins; bool of any wire type; the profiles string index reads as empty")
    func anyValueEdges() throws {
        let stringThenInt = Self.field(1, Array("x".utf8)) + [3 << 3, 0x7F]
        #expect(try Self.value(stringThenInt) == .int(127))
        // bool_value (field 2) as a fixed64 with a bit set, as a length-delimited empty value, as varint 0x80 0x00.
        #expect(try Self.value([2 << 3 | 1, 0, 0, 0, 0, 0, 0, 0x01, 0]) == .bool(true))
        #expect(try Self.value([2 << 3 | 2, 0]) == .bool(false))
        #expect(try Self.value([2 << 3, 0x80, 0x00]) == .bool(false))
        #expect(try Self.value(Self.field(1, Array("x".utf8)) + [8 << 3, 4]) == .empty)
        for value: [UInt8] in [stringThenInt, [2 << 3 | 1, 0, 0, 0, 0, 0, 0, 0x01, 0], [2 << 3 | 2, 0], [2 << 3, 0x80, 0x00],
                      Self.field(1, Array("x".utf8)) + [8 << 3, 4]] {
            Self.expectSameAsProtobufC(Self.request(attributeValue: value))
        }
    }

    @Test("entity_refs of a resource are checked as protobuf-c checks them, and not kept")
    func entityRefs() throws {
        let entity = Self.field(1, Array("https://schema".utf8)) + Self.field(2, Array("service".utf8))
            + Self.field(3, Array("service.name".utf8))
        let resource = Self.field(1, Self.field(1, Array("service.name".utf8)) + Self.field(2, Self.field(1, Array("a".utf8))))
            + Self.field(3, entity)
        let good = Self.field(1, Self.field(1, resource) + Self.field(2, Self.field(2, Self.traceID + Self.spanID)))
        #expect(try OTLPProtobufCodec().decodeRequest(good).resourceSpans[0].resource.serviceName == "a")
        Self.expectSameAsProtobufC(good)
        let badEntity = Self.field(1, Self.field(1, Self.field(3, [2 << 3, 1])))  // type as a varint
        #expect(throws: OTLPDecodingError.self) { try OTLPProtobufCodec().decodeRequest(badEntity) }
        Self.expectSameAsProtobufC(badEntity)
    }

    @Test("strings keep U+0000, where protobuf-c cuts them")
    func embeddedNUL() throws {
        let bytes = Self.request(span: Self.traceID + Self.spanID + Self.field(5, Array("ab\u{0}cd".utf8)))
        let span = try OTLPProtobufCodec().decodeRequest(bytes).resourceSpans[0].scopeSpans[0].spans[0]
        #expect(span.name == "ab\u{0}cd")
        #expect(try OTLPProtobufCodec().decodeRequestUsingProtobufC(bytes).resourceSpans[0].scopeSpans[0].spans[0].name == "ab")
        // And it survives the writer: the OTLP encoding of the span says the same.
        #expect(try OTLPProtobufCodec().decodeRequest(OTLPProtobufWriter.request(
            SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: [span])])]))).resourceSpans[0].scopeSpans[0].spans[0] == span)
    }

    @Test("a singular message sent twice merges as the protobuf specification says")
    func mergedSingularMessages() throws {
        // Resource twice: attributes concatenate, the first dropped count stays when the second has none.
        let first = Self.field(1, Self.field(1, Array("a".utf8)) + Self.field(2, Self.field(1, Array("1".utf8)))) + [2 << 3, 5]
        let second = Self.field(1, Self.field(1, Array("b".utf8)) + Self.field(2, Self.field(1, Array("2".utf8))))
        let bytes = Self.field(1, Self.field(1, first) + Self.field(1, second))
        let codec = OTLPProtobufCodec()
        let resource = try codec.decodeRequest(bytes).resourceSpans[0].resource
        #expect(codec.lastRequestMergedSingularMessage)
        #expect(resource.attributes == [Attribute("a", .string("1")), Attribute("b", .string("2"))])
        #expect(resource.droppedAttributesCount == 5)
        _ = try codec.decodeRequest(Self.request(span: Self.traceID + Self.spanID))
        #expect(!codec.lastRequestMergedSingularMessage)
    }

    @Test("a request that would expand beyond 32 times its size is refused")
    func expansionLimit() throws {
        // 100,000 empty spans: 2 bytes each on the wire, a whole Span each in the model.
        let spans = [UInt8](repeating: 0, count: 200_000).enumerated().map { $0.offset % 2 == 0 ? UInt8(2 << 3 | 2) : 0 }
        let bytes = Self.field(1, Self.field(2, spans))
        #expect(throws: OTLPDecodingError.self) { try OTLPProtobufCodec().decodeRequest(bytes) }
        // A thousand are fine (the limit is at least a megabyte).
        let few = Self.field(1, Self.field(2, Array(spans.prefix(2_000))))
        #expect(try OTLPProtobufCodec().decodeRequest(few).spanCount == 1_000)
    }

    @Test("nesting of exactly the limit reads; one more level is refused", arguments: [false, true])
    func nestingLimit(oneMore: Bool) throws {
        // Below the request: ResourceSpans 1, ScopeSpans 2, Span 3, KeyValue 4, the attribute's AnyValue 5;
        // each array adds an ArrayValue and an AnyValue. After 29 arrays the innermost AnyValue is at 63;
        // its empty array_value is at 64, the limit; an element inside it would be at 65.
        var value = Self.field(5, oneMore ? Self.field(1, []) : [])
        for _ in 0..<29 { value = Self.field(5, Self.field(1, value)) }
        let bytes = Self.request(attributeValue: value)
        if oneMore {
            #expect(throws: OTLPDecodingError.self) { try OTLPProtobufCodec().decodeRequest(bytes) }
        } else {
            #expect(try OTLPProtobufCodec().decodeRequest(bytes).spanCount == 1)
        }
        Self.expectSameAsProtobufC(bytes)
    }
}
