import Pipeline
import Testing
import TraceModel
@testable import Processors

@Suite("span_limits")
struct SpanLimitsProcessorTests {
    static func batch(_ span: Span) -> SpanBatch {
        SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: [span])])])
    }

    var limits: SpanLimitsProcessor.Configuration {
        var limits = SpanLimitsProcessor.Configuration()
        limits.attributeCountLimit = 3
        limits.attributeValueLengthLimit = 4
        limits.eventCountLimit = 1
        return limits
    }

    @Test("keeps the first attributes, counts the rest in dropped_attributes_count")
    func attributeCount() {
        var span = Span(traceID: TraceID(high: 1, low: 1), spanID: SpanID(1))
        span.attributes = (0..<10).map { Attribute("k\($0)", .int(Int64($0))) }
        span.droppedAttributesCount = 2
        var batch = Self.batch(span)
        let tally = SpanLimitsProcessor.apply(limits, to: &batch)
        let limited = batch.resourceSpans[0].scopeSpans[0].spans[0]
        #expect(limited.attributes.map(\.key) == ["k0", "k1", "k2"])
        #expect(limited.droppedAttributesCount == 9)
        #expect(tally.droppedAttributes == 7)
    }

    @Test("truncates strings (by characters) and bytes, inside arrays and maps too")
    func valueLength() {
        var span = Span(traceID: TraceID(high: 1, low: 1), spanID: SpanID(1))
        span.attributes = [Attribute("s", "日本語です!"), Attribute("b", .bytes([1, 2, 3, 4, 5])),
                           Attribute("a", .array(["short", "ok"])), Attribute("n", 12345678)]
        var batch = Self.batch(span)
        var limits = self.limits
        limits.attributeCountLimit = 10
        let tally = SpanLimitsProcessor.apply(limits, to: &batch)
        let attributes = batch.resourceSpans[0].scopeSpans[0].spans[0].attributes
        #expect(attributes["s"] == "日本語で")
        #expect(attributes["b"] == .bytes([1, 2, 3, 4]))
        #expect(attributes["a"] == .array(["shor", "ok"]))
        #expect(attributes["n"] == 12345678)
        #expect(tally.truncatedValues == 3)
    }

    @Test("drops events past the limit and counts them")
    func events() {
        var span = Span(traceID: TraceID(high: 1, low: 1), spanID: SpanID(1))
        span.events = [SpanEvent(timeUnixNano: 1, name: "a"), SpanEvent(timeUnixNano: 2, name: "b")]
        var batch = Self.batch(span)
        let tally = SpanLimitsProcessor.apply(limits, to: &batch)
        #expect(batch.resourceSpans[0].scopeSpans[0].spans[0].events.map(\.name) == ["a"])
        #expect(batch.resourceSpans[0].scopeSpans[0].spans[0].droppedEventsCount == 1)
        #expect(tally.droppedEvents == 1)
    }

    @Test("spans within every limit are left as they are")
    func untouched() {
        var span = Span(traceID: TraceID(high: 1, low: 1), spanID: SpanID(1))
        span.attributes = [Attribute("k", "v")]
        var batch = Self.batch(span)
        #expect(SpanLimitsProcessor.apply(limits, to: &batch) == SpanLimitsProcessor.Tally())
        #expect(batch == Self.batch(span))
    }
}

extension SpanLimitsProcessorTests {
    /// The OpenTelemetry specification's SDK defaults: attribute, event, link and per-event/per-link
    /// attribute counts 128; attribute value length "Infinity" (no limit).
    @Test("with no settings: 128 attributes, events, links and attributes per event and link; values never cut")
    func defaults() throws {
        let configuration = try SpanLimitsProcessor.Configuration(section: section("{}", path: "processors.span_limits"))
        let many = (0..<200).map { Attribute("k\($0)", .int(Int64($0))) }
        var span = Span(traceID: TraceID(high: 1, low: 1), spanID: SpanID(1))
        span.attributes = many + [Attribute("long", .string(String(repeating: "x", count: 100_000)))]
        span.events = (0..<200).map { SpanEvent(timeUnixNano: UInt64($0), name: "e\($0)", attributes: many) }
        span.links = (0..<200).map { SpanLink(traceID: TraceID(high: 2, low: 2), spanID: SpanID(UInt64($0 + 1)), attributes: many) }
        var batch = Self.batch(span)
        _ = SpanLimitsProcessor.apply(configuration, to: &batch)
        let limited = batch.resourceSpans[0].scopeSpans[0].spans[0]
        #expect(limited.attributes.count == 128)
        #expect(limited.droppedAttributesCount == 73)
        #expect(limited.events.count == 128)
        #expect(limited.links.count == 128)
        #expect(limited.events.allSatisfy { $0.attributes.count == 128 })
        #expect(limited.links.allSatisfy { $0.attributes.count == 128 })

        // Value length: no limit by default, so a 100 000-character value kept as the 128th-or-earlier attribute stays whole.
        var long = Span(traceID: TraceID(high: 1, low: 1), spanID: SpanID(2))
        long.attributes = [Attribute("long", .string(String(repeating: "x", count: 100_000)))]
        var longBatch = Self.batch(long)
        #expect(SpanLimitsProcessor.apply(configuration, to: &longBatch) == SpanLimitsProcessor.Tally())
        #expect(longBatch == Self.batch(long))
    }
}
