import Pipeline
import Synchronization
import TraceModel

/// `service_graph`: observes every span (passing batches on unchanged) and keeps the live graph.
public final class ServiceGraphProcessor: SpanProcessor {
    public let graph: ServiceGraph
    private let state: Mutex<ServiceGraphState>
    private let counted = Mutex<(dropped: Int, unpaired: Int)>((0, 0))

    public init(configuration: ServiceGraphConfiguration, metrics: SelfMetrics) {
        graph = ServiceGraph(configuration: configuration, metrics: metrics)
        state = Mutex(ServiceGraphState(configuration: configuration))
    }

    public func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        let observations = state.withLock { state in
            var observations: [EdgeObservation] = []
            for resourceSpans in batch.resourceSpans {
                state.observe(resource: resourceSpans.resource)
                for scopeSpans in resourceSpans.scopeSpans {
                    for span in scopeSpans.spans {
                        observations += state.observe(span, resource: resourceSpans.resource, now: now)
                    }
                }
            }
            return observations
        }
        record(observations)
        return [batch]
    }

    public func tick(now: UInt64) -> [SpanBatch] {
        record(state.withLock { $0.expire(now: now) })
        return []
    }

    public func flush() -> [SpanBatch] {
        record(state.withLock { $0.expireAll() })
        return []
    }

    /// The graph for the APIs.
    public func snapshot(since: UInt64? = nil, until: UInt64? = nil, service: String? = nil) -> GraphSnapshot {
        let (tokens, details) = state.withLock { ($0.tokens, $0.agentDetails) }
        return graph.snapshot(since: since, until: until, service: service, tokens: tokens, agentDetails: details)
    }

    /// The agent attribute keys (`agent.type`, …) seen so far on nodes, sorted: the node detail fields.
    public var nodeDetailKeys: [String] {
        state.withLock { state in Set(state.agentDetails.values.flatMap { $0.map(\.key) }) }.sorted()
    }

    private func record(_ observations: [EdgeObservation]) {
        graph.record(observations)
        let (dropped, unpaired) = state.withLock { ($0.droppedSpans, $0.unpairedSpans) }
        let delta = counted.withLock { counted in
            defer { counted = (dropped, unpaired) }
            return (dropped - counted.dropped, unpaired - counted.unpaired)
        }
        graph.countStore(dropped: delta.0, unpaired: delta.1)
    }
}

/// The service graphs built so far, for the admin API to read.
public final class ServiceGraphs: Sendable {
    private let processors = Mutex<[ServiceGraphProcessor]>([])

    public init() {}

    func add(_ processor: ServiceGraphProcessor) {
        processors.withLock { $0.append(processor) }
    }

    /// The first pipeline's graph, if any pipeline has one.
    public var first: ServiceGraphProcessor? { processors.withLock { $0.first } }
}

/// Builds `service_graph` processors.
public struct ServiceGraphProcessorFactory: ProcessorFactory {
    public let type = "service_graph"
    private let graphs: ServiceGraphs

    public init(graphs: ServiceGraphs) {
        self.graphs = graphs
    }

    public func makeProcessor(section: ConfigSection, context: ComponentContext) throws -> any SpanProcessor {
        let processor = ServiceGraphProcessor(configuration: try ServiceGraphConfiguration(section: section), metrics: context.metrics)
        graphs.add(processor)
        return processor
    }
}
