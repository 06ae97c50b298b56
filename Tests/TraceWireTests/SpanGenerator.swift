import TraceModel

/// A seeded generator of arbitrary but valid span batches, for property tests.
struct SpanGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    }

    mutating func next() -> UInt64 {
        // xorshift64*
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }

    mutating func string() -> String {
        let alphabet = Array("abcXYZ09 ._-/\"\\\n\té漢字🙂")
        return String((0..<int(0...12)).map { _ in alphabet[int(0...(alphabet.count - 1))] })
    }

    mutating func value(depth: Int = 0) -> AttributeValue {
        switch int(0...(depth < 3 ? 7 : 5)) {
        case 0: return .string(string())
        case 1: return .bool(next() & 1 == 0)
        case 2: return .int(Int64(bitPattern: next()))
        case 3: return .double([0.0, -1.5, 1e300, Double(int(0...1000)) / 7, -0.0][int(0...4)])
        case 4: return .bytes((0..<int(0...9)).map { _ in UInt8(truncatingIfNeeded: next()) })
        case 5: return .empty
        case 6: return .array((0..<int(0...3)).map { _ in value(depth: depth + 1) })
        default: return .keyValueList(attributes(depth: depth + 1))
        }
    }

    mutating func attributes(depth: Int = 0) -> [Attribute] {
        (0..<int(0...4)).map { index in Attribute("key.\(index).\(string())", value(depth: depth)) }
    }

    mutating func traceID() -> TraceID { TraceID(high: next(), low: next() | 1) }
    mutating func spanID() -> SpanID { SpanID(next() | 1) }

    mutating func span() -> Span {
        let start = next() >> 2
        return Span(
            traceID: traceID(), spanID: spanID(), parentSpanID: next() & 1 == 0 ? .zero : spanID(),
            traceState: next() & 1 == 0 ? "" : "vendor=\(int(0...99))", flags: UInt32(truncatingIfNeeded: next()) & 0x3FF,
            name: string(), kind: SpanKind(rawValue: Int32(int(0...5)))!, startTimeUnixNano: start,
            endTimeUnixNano: start + UInt64(int(0...1_000_000_000)), attributes: attributes(),
            droppedAttributesCount: UInt32(int(0...3)),
            events: (0..<int(0...2)).map { _ in SpanEvent(timeUnixNano: next() >> 2, name: string(), attributes: attributes(),
                                                          droppedAttributesCount: UInt32(int(0...2))) },
            droppedEventsCount: UInt32(int(0...2)),
            links: (0..<int(0...2)).map { _ in SpanLink(traceID: traceID(), spanID: spanID(), traceState: string(),
                                                        attributes: attributes(), droppedAttributesCount: UInt32(int(0...2)),
                                                        flags: UInt32(int(0...0x301))) },
            droppedLinksCount: UInt32(int(0...2)),
            status: SpanStatus(code: SpanStatus.Code(rawValue: Int32(int(0...2)))!, message: string())
        )
    }

    mutating func batch() -> SpanBatch {
        SpanBatch(resourceSpans: (0..<int(1...3)).map { _ in
            ResourceSpans(
                resource: Resource(attributes: attributes() + [Attribute("service.name", .string(string()))],
                                   droppedAttributesCount: UInt32(int(0...2))),
                scopeSpans: (0..<int(1...3)).map { _ in
                    ScopeSpans(scope: InstrumentationScope(name: string(), version: string(), attributes: attributes(),
                                                           droppedAttributesCount: UInt32(int(0...1))),
                               spans: (0..<int(0...5)).map { _ in span() }, schemaURL: string())
                },
                schemaURL: string())
        })
    }
}
