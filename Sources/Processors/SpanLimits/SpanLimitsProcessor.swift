import Pipeline
import Prometheus
import TraceModel

/// `processors: span_limits:` — the OpenTelemetry SDKs' span limits, applied in the collector to spans
/// from any sender: "If a span has more attributes than the limit, the excess attributes are
/// discarded" and "values longer than the limit are truncated" (OpenTelemetry specification, Common:
/// Attribute Limits). Dropped attributes, events and links add to the span's `dropped_*_count`;
/// everything dropped or truncated is counted in /metrics.
public final class SpanLimitsProcessor: SpanProcessor {
    /// `processors: span_limits:` settings, named as the SDKs' environment variables name them.
    public struct Configuration: Sendable, Equatable {
        /// `attribute_count_limit`: attributes kept per span (the first ones). Default 128, as in the SDKs.
        public var attributeCountLimit = 128
        /// `attribute_value_length_limit`: characters kept of a string value (bytes of a bytes value),
        /// also inside arrays and maps. Default 0: no limit, as in the SDKs.
        public var attributeValueLengthLimit = 0
        /// `event_count_limit`: events kept per span. Default 128.
        public var eventCountLimit = 128
        /// `link_count_limit`: links kept per span. Default 128.
        public var linkCountLimit = 128
        /// `attribute_per_event_count_limit` and `attribute_per_link_count_limit`. Default 128.
        public var attributePerEventCountLimit = 128
        public var attributePerLinkCountLimit = 128

        public init() {}

        /// Reads the section, failing on unknown keys or bad values.
        public init(section: ConfigSection) throws(ConfigurationError) {
            attributeCountLimit = try section.int("attribute_count_limit", default: attributeCountLimit, in: 0...1_000_000)
            attributeValueLengthLimit = try section.int("attribute_value_length_limit", default: attributeValueLengthLimit, in: 0...(1 << 30))
            eventCountLimit = try section.int("event_count_limit", default: eventCountLimit, in: 0...1_000_000)
            linkCountLimit = try section.int("link_count_limit", default: linkCountLimit, in: 0...1_000_000)
            attributePerEventCountLimit = try section.int("attribute_per_event_count_limit", default: attributePerEventCountLimit, in: 0...1_000_000)
            attributePerLinkCountLimit = try section.int("attribute_per_link_count_limit", default: attributePerLinkCountLimit, in: 0...1_000_000)
            try section.finish()
        }
    }

    /// What one pass dropped and truncated.
    public struct Tally: Sendable, Equatable {
        public var droppedAttributes = 0
        public var truncatedValues = 0
        public var droppedEvents = 0
        public var droppedLinks = 0
    }

    public let configuration: Configuration
    private let droppedAttributes: Counter
    private let truncatedValues: Counter
    private let droppedEvents: Counter
    private let droppedLinks: Counter

    public init(configuration: Configuration, metrics: SelfMetrics, processor: String) {
        self.configuration = configuration
        let labels = [("processor", processor)]
        droppedAttributes = metrics.counter("agenttrace_span_limits_dropped_attributes_total",
                                            help: "Attributes dropped for attribute count limits.", labels: labels)
        truncatedValues = metrics.counter("agenttrace_span_limits_truncated_values_total",
                                          help: "Attribute values truncated to attribute_value_length_limit.", labels: labels)
        droppedEvents = metrics.counter("agenttrace_span_limits_dropped_events_total", help: "Span events dropped for event_count_limit.",
                                        labels: labels)
        droppedLinks = metrics.counter("agenttrace_span_limits_dropped_links_total", help: "Span links dropped for link_count_limit.",
                                       labels: labels)
    }

    /// Nil: every span passes on in the call that brought it.
    public var oldestHeldArrival: UInt64? { nil }

    public func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        var batch = batch
        let tally = Self.apply(configuration, to: &batch)
        if tally.droppedAttributes > 0 { droppedAttributes.increment(by: Int64(tally.droppedAttributes)) }
        if tally.truncatedValues > 0 { truncatedValues.increment(by: Int64(tally.truncatedValues)) }
        if tally.droppedEvents > 0 { droppedEvents.increment(by: Int64(tally.droppedEvents)) }
        if tally.droppedLinks > 0 { droppedLinks.increment(by: Int64(tally.droppedLinks)) }
        return [batch]
    }

    /// Applies the limits in place; returns what was dropped and truncated. Spans within every limit are
    /// read, never copied.
    public static func apply(_ limits: Configuration, to batch: inout SpanBatch) -> Tally {
        var tally = Tally()
        for r in batch.resourceSpans.indices {
            for s in batch.resourceSpans[r].scopeSpans.indices {
                for p in batch.resourceSpans[r].scopeSpans[s].spans.indices
                    where exceeds(limits, batch.resourceSpans[r].scopeSpans[s].spans[p]) {
                    limit(limits, &batch.resourceSpans[r].scopeSpans[s].spans[p], &tally)
                }
            }
        }
        return tally
    }

    private static func exceeds(_ limits: Configuration, _ span: Span) -> Bool {
        if span.attributes.count > limits.attributeCountLimit || span.events.count > limits.eventCountLimit
            || span.links.count > limits.linkCountLimit { return true }
        if span.events.contains(where: { $0.attributes.count > limits.attributePerEventCountLimit }) { return true }
        if span.links.contains(where: { $0.attributes.count > limits.attributePerLinkCountLimit }) { return true }
        guard limits.attributeValueLengthLimit > 0 else { return false }
        let length = limits.attributeValueLengthLimit
        return span.attributes.contains { tooLong($0.value, length) }
            || span.events.contains { $0.attributes.contains { tooLong($0.value, length) } }
            || span.links.contains { $0.attributes.contains { tooLong($0.value, length) } }
    }

    private static func limit(_ limits: Configuration, _ span: inout Span, _ tally: inout Tally) {
        span.droppedAttributesCount &+= limitAttributes(&span.attributes, limits.attributeCountLimit, limits.attributeValueLengthLimit, &tally)
        if span.events.count > limits.eventCountLimit {
            let dropped = span.events.count - limits.eventCountLimit
            span.events.removeLast(dropped)
            span.droppedEventsCount &+= UInt32(clamping: dropped)
            tally.droppedEvents += dropped
        }
        for e in span.events.indices {
            span.events[e].droppedAttributesCount &+= limitAttributes(&span.events[e].attributes, limits.attributePerEventCountLimit,
                                                                      limits.attributeValueLengthLimit, &tally)
        }
        if span.links.count > limits.linkCountLimit {
            let dropped = span.links.count - limits.linkCountLimit
            span.links.removeLast(dropped)
            span.droppedLinksCount &+= UInt32(clamping: dropped)
            tally.droppedLinks += dropped
        }
        for l in span.links.indices {
            span.links[l].droppedAttributesCount &+= limitAttributes(&span.links[l].attributes, limits.attributePerLinkCountLimit,
                                                                     limits.attributeValueLengthLimit, &tally)
        }
    }

    /// Keeps the first `count` attributes and truncates long values; returns how many were dropped.
    private static func limitAttributes(_ attributes: inout [Attribute], _ count: Int, _ length: Int, _ tally: inout Tally) -> UInt32 {
        var dropped = 0
        if attributes.count > count {
            dropped = attributes.count - count
            attributes.removeLast(dropped)
            tally.droppedAttributes += dropped
        }
        if length > 0 {
            for index in attributes.indices where tooLong(attributes[index].value, length) {
                attributes[index].value = truncated(attributes[index].value, length, &tally)
            }
        }
        return UInt32(clamping: dropped)
    }

    private static func tooLong(_ value: AttributeValue, _ length: Int) -> Bool {
        switch value {
        case .string(let text): text.utf8.count > length && text.count > length
        case .bytes(let bytes): bytes.count > length
        case .array(let values): values.contains { tooLong($0, length) }
        case .keyValueList(let pairs): pairs.contains { tooLong($0.value, length) }
        case .bool, .int, .double, .empty: false
        }
    }

    private static func truncated(_ value: AttributeValue, _ length: Int, _ tally: inout Tally) -> AttributeValue {
        switch value {
        case .string(let text) where text.utf8.count > length && text.count > length:
            tally.truncatedValues += 1
            return .string(String(text.prefix(length)))
        case .bytes(let bytes) where bytes.count > length:
            tally.truncatedValues += 1
            return .bytes(Array(bytes.prefix(length)))
        case .array(let values):
            return .array(values.map { truncated($0, length, &tally) })
        case .keyValueList(let pairs):
            return .keyValueList(pairs.map { Attribute($0.key, truncated($0.value, length, &tally)) })
        default:
            return value
        }
    }
}

/// Builds `span_limits` processors.
public struct SpanLimitsProcessorFactory: ProcessorFactory {
    public let type = "span_limits"

    public init() {}

    public func makeProcessor(section: ConfigSection, context: ComponentContext) throws -> any SpanProcessor {
        SpanLimitsProcessor(configuration: try SpanLimitsProcessor.Configuration(section: section), metrics: context.metrics,
                            processor: context.id.description)
    }
}
