import Logging
import Pipeline
import ServiceGraph
import Testing
import TraceModel

@Suite("service graph edges for other components")
struct ServiceGraphEdgesTests {
    @Test("service_graph answers ServiceGraphEdges with its graph's call pairs")
    func edges() async throws {
        let context = ComponentContext(id: ComponentID("service_graph"), logger: Logger(label: "test"), metrics: SelfMetrics())
        #expect(ServiceGraphEdges.shared(in: context).edges() == nil)
        let processor = try ServiceGraphProcessorFactory().makeProcessor(section: ConfigSection(.mapping([]), path: "processors.service_graph"),
                                                                      context: context)
        // A CLIENT span of a and its SERVER child in b: the pair a -> b.
        let trace = TraceID(high: 1, low: 1)
        let client = Span(traceID: trace, spanID: SpanID(10), kind: .client, startTimeUnixNano: 1_000_000_000, endTimeUnixNano: 1_200_000_000)
        let server = Span(traceID: trace, spanID: SpanID(20), parentSpanID: SpanID(10), kind: .server, startTimeUnixNano: 1_000_000_000,
                          endTimeUnixNano: 1_100_000_000)
        func resource(_ name: String) -> Resource { Resource(attributes: [Attribute("service.name", .string(name))]) }
        _ = processor.process(SpanBatch(resourceSpans: [
            ResourceSpans(resource: resource("a"), scopeSpans: [ScopeSpans(spans: [client])]),
            ResourceSpans(resource: resource("b"), scopeSpans: [ScopeSpans(spans: [server])]),
        ]), now: 1_000_000_000)
        await (processor as? any HandOffSpanProcessor)?.drain()
        let edges = try #require(ServiceGraphEdges.shared(in: context).edges())
        #expect(edges.map { "\($0.0)->\($0.1)" } == ["a->b"])
    }
}
