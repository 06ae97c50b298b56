import Testing
import TraceModel
@testable import Processors

func batch(spans: Int) -> SpanBatch {
    SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: (0..<spans).map {
        Span(traceID: TraceID(high: 1, low: 1), spanID: SpanID(UInt64($0 + 1)))
    })])])
}

@Suite("batch processor state machine")
struct BatchProcessorTests {
    func configuration(size: Int, max: Int = 0, timeout: Duration = .milliseconds(200)) -> BatchProcessor.Configuration {
        var configuration = BatchProcessor.Configuration()
        configuration.sendBatchSize = size
        configuration.sendBatchMaxSize = max
        configuration.timeout = timeout
        return configuration
    }

    @Test("a batch leaves once it reaches send_batch_size")
    func size() {
        var machine = BatchProcessor.StateMachine(configuration: configuration(size: 10))
        #expect(machine.add(batch(spans: 4), now: 0).isEmpty)
        #expect(machine.add(batch(spans: 5), now: 1).isEmpty)
        let out = machine.add(batch(spans: 3), now: 2)
        #expect(out.map(\.spanCount) == [12])
        #expect(machine.flush().isEmpty)
    }

    @Test("a batch leaves timeout after its first span, not after the last")
    func timeout() {
        var machine = BatchProcessor.StateMachine(configuration: configuration(size: 100, timeout: .milliseconds(200)))
        _ = machine.add(batch(spans: 1), now: 1_000_000_000)
        _ = machine.add(batch(spans: 1), now: 1_150_000_000)
        #expect(machine.tick(now: 1_199_999_999).isEmpty)
        #expect(machine.tick(now: 1_200_000_000).map(\.spanCount) == [2])
        #expect(machine.tick(now: 9_000_000_000).isEmpty)
    }

    @Test("send_batch_max_size splits large batches without losing spans")
    func maxSize() {
        var machine = BatchProcessor.StateMachine(configuration: configuration(size: 5, max: 5))
        let out = machine.add(batch(spans: 12), now: 0)
        #expect(out.map(\.spanCount) == [5, 5, 2])
    }

    @Test("split keeps resources and scopes with their spans")
    func splitKeepsGroups() {
        var input = SpanBatch()
        for service in ["a", "b"] {
            input.resourceSpans.append(ResourceSpans(
                resource: Resource(attributes: [Attribute("service.name", .string(service))]),
                scopeSpans: [ScopeSpans(scope: InstrumentationScope(name: "s1"), spans: batch(spans: 3).resourceSpans[0].scopeSpans[0].spans),
                             ScopeSpans(scope: InstrumentationScope(name: "s2"), spans: batch(spans: 2).resourceSpans[0].scopeSpans[0].spans)]))
        }
        let parts = input.split(maxSpans: 4)
        #expect(parts.map(\.spanCount) == [4, 4, 2])
        var services: [String] = []
        for part in parts { part.forEachSpan { _, resource, scope in services.append("\(resource.serviceName!)/\(scope.name)") } }
        #expect(services == ["a/s1", "a/s1", "a/s1", "a/s2", "a/s2", "b/s1", "b/s1", "b/s1", "b/s2", "b/s2"])
    }
}
