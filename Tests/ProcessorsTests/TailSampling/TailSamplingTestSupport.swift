import ConfigYAML
import Pipeline
import TraceModel
@testable import Processors

/// Builds test traces: spans of named services, with times in milliseconds from a fixed origin.
final class TraceBuilder {
    static let origin: UInt64 = 1_767_225_600_000_000_000
    let id: TraceID
    private(set) var spans: [(service: String, span: Span)] = []
    private var resourceAttributes: [String: [Attribute]] = [:]

    init(_ number: UInt64) {
        id = TraceID(high: 0xA0A0, low: number)
    }

    /// Adds a span of `service`; the first one added is the root, the others its children.
    @discardableResult
    func span(_ service: String = "svc", startMs: UInt64 = 0, durationMs: UInt64 = 10, error: Bool = false,
                       attributes: [Attribute] = [], traceState: String = "", flags: UInt32 = 0) -> Self {
        let number = UInt64(spans.count + 1)
        let span = Span(traceID: id, spanID: SpanID(number), parentSpanID: spans.isEmpty ? .zero : SpanID(1), traceState: traceState,
                        flags: flags, name: "op-\(number)", kind: .internal,
                        startTimeUnixNano: Self.origin + startMs * 1_000_000,
                        endTimeUnixNano: Self.origin + (startMs + durationMs) * 1_000_000, attributes: attributes,
                        status: SpanStatus(code: error ? .error : .unset))
        spans.append((service, span))
        return self
    }

    /// Sets attributes of a service's resource.
    @discardableResult
    func resource(_ service: String, _ attributes: [Attribute]) -> Self {
        resourceAttributes[service] = attributes
        return self
    }

    /// One chunk per span, as if each arrived in its own request.
    var chunks: [ResourceSpans] {
        spans.map { service, span in
            ResourceSpans(resource: Resource(attributes: [Attribute("service.name", .string(service))] + (resourceAttributes[service] ?? [])),
                          scopeSpans: [ScopeSpans(scope: InstrumentationScope(name: "test"), spans: [span])])
        }
    }

    var sampled: SampledTrace { SampledTrace(traceID: id, chunks: chunks) }

    /// All spans in one batch.
    var batch: SpanBatch { SpanBatch(resourceSpans: chunks) }

    /// The span ids in a batch's spans of this trace.
    static func spanIDs(_ batches: [SpanBatch], of id: TraceID) -> [UInt64] {
        var ids: [UInt64] = []
        for batch in batches { batch.forEachSpan { span, _, _ in if span.traceID == id { ids.append(span.spanID.value) } } }
        return ids.sorted()
    }
}

/// A policy from YAML text, as it would appear in a `policies:` list.
func policy(_ yaml: String) throws -> SamplingPolicy {
    try SamplingPolicy(section: ConfigSection(try ConfigValue.parse(yaml: yaml, environment: [:]), path: "policies[0]"))
}

/// A processor configuration from YAML text (the `tail_sampling:` section's contents).
func tailSampling(_ yaml: String) throws -> TailSamplingConfiguration {
    try TailSamplingConfiguration(section: ConfigSection(try ConfigValue.parse(yaml: yaml, environment: [:]), path: "processors.tail_sampling"))
}
