import Testing
import TraceModel
@testable import TraceWire

@Suite("OTLP protobuf writer")
struct OTLPProtobufWriterTests {
    // protobuf-c is the oracle: the writer must produce what protobuf-c packs from the same batch.
    @Test("writes the bytes protobuf-c packs, over generated batches", arguments: 0..<300)
    func sameBytesAsProtobufC(seed: Int) throws {
        var generator = SpanGenerator(seed: UInt64(seed) &+ 7_000)
        let batch = generator.batch()
        let written = OTLPProtobufWriter.request(batch)
        #expect(written == OTLPProtobufCodec().encodeRequestUsingProtobufC(batch))
        #expect(try OTLPProtobufCodec().decodeRequestUsingProtobufC(written) == batch)
    }

    // protobuf-c (the reference) and the reader the collector decodes with read the held form back: the
    // same batch but for every span's trace id (zero).
    @Test("the held form decodes to the batch with zero trace ids, at least 18 bytes a span smaller", arguments: 0..<100)
    func heldForm(seed: Int) throws {
        var generator = SpanGenerator(seed: UInt64(seed) &+ 9_000)
        let batch = generator.batch()
        var zeroed = batch
        for r in zeroed.resourceSpans.indices {
            for s in zeroed.resourceSpans[r].scopeSpans.indices {
                for i in zeroed.resourceSpans[r].scopeSpans[s].spans.indices { zeroed.resourceSpans[r].scopeSpans[s].spans[i].traceID = .zero }
            }
        }
        let held = OTLPProtobufWriter.request(batch, held: true)
        #expect(try OTLPProtobufCodec().decodeRequestUsingProtobufC(held) == zeroed)
        #expect(try OTLPProtobufCodec().decodeRequest(held) == zeroed)
        #expect(held.count <= OTLPProtobufWriter.request(batch).count - 18 * batch.spanCount)
    }

    @Test("zero values, empty strings in a oneof, large varints and big messages pack as protobuf-c packs them")
    func edgeCases() throws {
        let long = String(repeating: "x", count: 20_000)
        let span = Span(traceID: TraceID(high: 0, low: 0), spanID: .zero, parentSpanID: .zero, traceState: "", flags: 0xFFFF_FFFF,
                        name: long, kind: .consumer, startTimeUnixNano: 0, endTimeUnixNano: .max,
                        attributes: [Attribute("", .string("")), Attribute("i", .int(-1)), Attribute("z", .int(0)),
                                     Attribute("b", .bool(false)), Attribute("d", .double(0)), Attribute("e", .empty),
                                     Attribute("a", .array([])), Attribute("k", .keyValueList([])), Attribute("y", .bytes([]))],
                        droppedAttributesCount: .max,
                        events: [SpanEvent(timeUnixNano: 0, name: "", attributes: [])],
                        droppedEventsCount: 0,
                        links: [SpanLink(traceID: .zero, spanID: .zero, traceState: "", attributes: [], droppedAttributesCount: 0, flags: 0)],
                        droppedLinksCount: 1, status: SpanStatus(code: .error, message: ""))
        let batch = SpanBatch(resourceSpans: [
            ResourceSpans(resource: Resource(), scopeSpans: [ScopeSpans(spans: Array(repeating: span, count: 9))]),
            ResourceSpans(resource: Resource(), scopeSpans: []),
        ])
        #expect(OTLPProtobufWriter.request(batch) == OTLPProtobufCodec().encodeRequestUsingProtobufC(batch))
        #expect(OTLPProtobufWriter.request(SpanBatch()) == OTLPProtobufCodec().encodeRequestUsingProtobufC(SpanBatch()))
    }
}
