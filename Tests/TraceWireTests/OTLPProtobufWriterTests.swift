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
    // same batch but for every span's trace id (zero) and resource (empty).
    @Test("the held form decodes to the batch with zero trace ids and empty resources, at least 18 bytes a span smaller",
          arguments: 0..<100)
    func heldForm(seed: Int) throws {
        var generator = SpanGenerator(seed: UInt64(seed) &+ 9_000)
        let batch = generator.batch()
        var zeroed = batch
        for r in zeroed.resourceSpans.indices {
            for s in zeroed.resourceSpans[r].scopeSpans.indices {
                for i in zeroed.resourceSpans[r].scopeSpans[s].spans.indices { zeroed.resourceSpans[r].scopeSpans[s].spans[i].traceID = .zero }
            }
        }
        for r in zeroed.resourceSpans.indices { zeroed.resourceSpans[r].resource = Resource() }
        let held = Self.held(batch)
        #expect(try OTLPProtobufCodec().decodeRequestUsingProtobufC(held) == zeroed)
        #expect(try OTLPProtobufCodec().decodeRequest(held) == zeroed)
        #expect(held.count <= OTLPProtobufWriter.request(batch).count - 18 * batch.spanCount)
    }

    // A selection picks runs of spans across scopes; protobuf-c reads back exactly those spans, in
    // their scopes and order (scopes with none picked left out), with zero trace ids and no resource.
    @Test("the held form of a selection holds the picked spans and nothing else", arguments: 0..<100)
    func heldSelection(seed: Int) throws {
        var generator = SpanGenerator(seed: UInt64(seed) &+ 13_000)
        let request = OTLPProtobufCodec().encodeRequestUsingProtobufC(generator.batch())
        let batch = try OTLPProtobufCodec().decodeRequest(request)
        for resourceSpans in batch.resourceSpans {
            // Every other span, in runs of up to two.
            var selection = SpanSelection(of: resourceSpans)
            var expected = ResourceSpans(schemaURL: resourceSpans.schemaURL)
            for (scopeIndex, scopeSpans) in resourceSpans.scopeSpans.enumerated() {
                var picked = ScopeSpans(scope: scopeSpans.scope, spans: [], schemaURL: scopeSpans.schemaURL)
                for start in stride(from: 0, to: scopeSpans.spans.count, by: 4) {
                    let end = min(start + 2, scopeSpans.spans.count)
                    selection.append(scope: scopeIndex, spans: start..<end)
                    for index in start..<end {
                        var span = scopeSpans.spans[index]
                        span.traceID = .zero
                        picked.spans.append(span)
                    }
                }
                if !picked.spans.isEmpty { expected.scopeSpans.append(picked) }
            }
            let held = OTLPProtobufWriter.heldRequest(selection, received: batch.received)
            let decoded = try OTLPProtobufCodec().decodeRequestUsingProtobufC(held)
            #expect(decoded.resourceSpans == [expected])
            #expect(try OTLPProtobufCodec().decodeRequest(held).resourceSpans == [expected])
        }
    }

    /// The held form of each of the batch's resource spans, whole, one after another: one request.
    static func held(_ batch: SpanBatch) -> [UInt8] {
        batch.resourceSpans.flatMap { OTLPProtobufWriter.heldRequest(SpanSelection(whole: $0), received: batch.received) }
    }

    /// `batch` with every span's trace id zero and every resource empty: what the held form decodes to.
    static func withZeroTraceIDs(_ batch: SpanBatch) -> SpanBatch {
        var zeroed = batch
        for r in zeroed.resourceSpans.indices {
            zeroed.resourceSpans[r].resource = Resource()
            for s in zeroed.resourceSpans[r].scopeSpans.indices {
                for i in zeroed.resourceSpans[r].scopeSpans[s].spans.indices { zeroed.resourceSpans[r].scopeSpans[s].spans[i].traceID = .zero }
            }
        }
        return zeroed
    }

    // The request comes from protobuf-c (the reference packer); the held form must carry each unchanged span's
    // bytes as they arrived (but for the leading trace id) and the changed ones as they are now.
    @Test("the held form copies spans unchanged since they arrived and encodes changed ones", arguments: 0..<100)
    func heldFormCopiesReceivedSpans(seed: Int) throws {
        var generator = SpanGenerator(seed: UInt64(seed) &+ 11_000)
        let request = OTLPProtobufCodec().encodeRequestUsingProtobufC(generator.batch())
        var batch = try OTLPProtobufCodec().decodeRequest(request)
        #expect(batch.received.serial != 0)
        var unchanged: [ArraySlice<UInt8>] = []
        var count = 0
        for r in batch.resourceSpans.indices {
            for s in batch.resourceSpans[r].scopeSpans.indices {
                for i in batch.resourceSpans[r].scopeSpans[s].spans.indices {
                    count += 1
                    if count % 3 == 0 {
                        batch.resourceSpans[r].scopeSpans[s].spans[i].name += " (changed)"
                    } else {
                        let bytes = try #require(batch.received.bytes(at: batch.resourceSpans[r].scopeSpans[s].spans[i].received))
                        unchanged.append(bytes.dropFirst(18))
                    }
                }
            }
        }
        let held = Self.held(batch)
        #expect(try OTLPProtobufCodec().decodeRequestUsingProtobufC(held) == Self.withZeroTraceIDs(batch))
        for bytes in unchanged { #expect(held.firstRange(of: bytes) != nil) }
    }

    // Spans moved into a batch decoded from another request point into that other request: they are encoded.
    @Test("spans from another request are encoded, not read from this one's bytes")
    func heldFormOtherRequest() throws {
        var first = SpanGenerator(seed: 12_001)
        var second = SpanGenerator(seed: 12_002)
        let codec = OTLPProtobufCodec()
        var batch = try codec.decodeRequest(codec.encodeRequestUsingProtobufC(first.batch()))
        let other = try codec.decodeRequest(codec.encodeRequestUsingProtobufC(second.batch()))
        #expect(other.received.serial != batch.received.serial)
        batch.append(contentsOf: other)
        #expect(try codec.decodeRequestUsingProtobufC(Self.held(batch)) == Self.withZeroTraceIDs(batch))
    }

    @Test("changing any field of a span forgets where it arrived")
    func changesForgetReceivedBytes() throws {
        var generator = SpanGenerator(seed: 12_003)
        let codec = OTLPProtobufCodec()
        let batch = try codec.decodeRequest(codec.encodeRequestUsingProtobufC(generator.batch()))
        let span = try #require(batch.resourceSpans.first?.scopeSpans.first?.spans.first)
        #expect(span.received.request == batch.received.serial)
        let changes: [(inout Span) -> Void] = [
            { $0.traceID = TraceID(high: 1, low: 2) }, { $0.spanID = SpanID(3) }, { $0.parentSpanID = SpanID(4) },
            { $0.traceState += "x" }, { $0.flags ^= 1 }, { $0.name += "x" }, { $0.kind = $0.kind == .client ? .server : .client },
            { $0.startTimeUnixNano += 1 }, { $0.endTimeUnixNano += 1 }, { $0.attributes.append(Attribute("k", "v")) },
            { $0.droppedAttributesCount += 1 }, { $0.events.append(SpanEvent(name: "e")) }, { $0.droppedEventsCount += 1 },
            { $0.links.append(SpanLink(traceID: .zero, spanID: .zero)) }, { $0.droppedLinksCount += 1 },
            { $0.status.message += "x" },
        ]
        for change in changes {
            var changed = span
            change(&changed)
            #expect(changed.received.request == 0)
            #expect(batch.received.bytes(at: changed.received) == nil)
        }
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
