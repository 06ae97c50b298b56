import Dispatch
import Pipeline
import Synchronization
import TraceModel

/// `service_graph`: observes every span (passing batches on unchanged) and keeps the live graph.
///
/// The pairing work is sharded by trace id: every span of a trace goes to the same shard, and each
/// shard runs on its own serial dispatch queue (threads the processor owns through Dispatch, never the
/// caller's), so the graph uses as many cores as it has shards while the pipeline only hands the batch
/// over. At most `queueSize` batches wait per shard; past that the pipeline awaits `waitForRoom()`
/// (suspending, not blocking), so the graph sees every span and the pipeline's own bound pushes back
/// on senders.
public final class ServiceGraphProcessor: HandOffSpanProcessor {
    public let graph: ServiceGraph
    private let shards: [Shard]

    /// Batches waiting per shard before `process` waits for the shard.
    static let queueSize = 8

    /// One trace-id shard: its pairing store, the queue it runs on and the bound on work handed to it.
    private final class Shard: Sendable {
        struct Counts {
            var pairing: ServiceGraphState
            var reportedDropped = 0
            var reportedUnpaired = 0
            var reportedSkipped = 0
            /// The next time expiry runs (`store_expiration_loop`).
            var nextExpiry: UInt64 = 0
        }

        /// Work handed over and not yet done, and the pipeline waiting for room, if it is.
        struct Backlog {
            var pending = 0
            var waiter: CheckedContinuation<Void, Never>?
        }

        let queue: DispatchQueue
        let backlog = Mutex(Backlog())
        let state: Mutex<Counts>

        init(index: Int, configuration: ServiceGraphConfiguration, halves: StoreBudget, agentItems: StoreBudget) {
            queue = DispatchQueue(label: "agenttrace.service-graph.\(index)")
            state = Mutex(Counts(pairing: ServiceGraphState(configuration: configuration, halves: halves, agentItems: agentItems)))
        }

        /// True while fewer than `queueSize` pieces of work wait.
        var hasRoom: Bool { backlog.withLock { $0.pending < ServiceGraphProcessor.queueSize } }

        /// Suspends until fewer than `queueSize` pieces of work wait. One caller at a time (the pipeline).
        func waitForRoom() async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = backlog.withLock { backlog in
                    guard backlog.pending >= ServiceGraphProcessor.queueSize else { return true }
                    backlog.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
        }

        /// Runs `work` on the shard's state and records what it produced, off the caller's thread; never waits.
        func submit(to graph: ServiceGraph, _ work: @escaping @Sendable (inout ServiceGraphState, inout [EdgeObservation]) -> Void) {
            backlog.withLock { $0.pending += 1 }
            queue.async {
                self.run(graph, work)
                let waiter = self.backlog.withLock { backlog -> CheckedContinuation<Void, Never>? in
                    backlog.pending -= 1
                    guard backlog.pending < ServiceGraphProcessor.queueSize else { return nil }
                    defer { backlog.waiter = nil }
                    return backlog.waiter
                }
                waiter?.resume()
            }
        }

        /// Suspends until the work handed over so far is done.
        func drain() async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                queue.async { continuation.resume() }
            }
        }

        func run(_ graph: ServiceGraph, _ work: (inout ServiceGraphState, inout [EdgeObservation]) -> Void) {
            var observations: [EdgeObservation] = []
            let (dropped, unpaired, skipped) = state.withLock { counts in
                work(&counts.pairing, &observations)
                let pairing = counts.pairing
                defer { (counts.reportedDropped, counts.reportedUnpaired, counts.reportedSkipped) = (pairing.droppedSpans, pairing.unpairedSpans, pairing.skippedSpans) }
                return (pairing.droppedSpans - counts.reportedDropped, pairing.unpairedSpans - counts.reportedUnpaired,
                        pairing.skippedSpans - counts.reportedSkipped)
            }
            graph.record(observations)
            graph.countStore(dropped: dropped, unpaired: unpaired, skipped: skipped)
        }
    }

    public init(configuration: ServiceGraphConfiguration, metrics: SelfMetrics) {
        graph = ServiceGraph(configuration: configuration, metrics: metrics)
        // `max_items` bounds the shards' stores together.
        let halves = StoreBudget(limit: configuration.maxItems)
        let agentItems = StoreBudget(limit: configuration.maxItems)
        shards = (0..<configuration.shards).map {
            Shard(index: $0, configuration: configuration, halves: halves, agentItems: agentItems)
        }
    }

    /// Nil: every span passes on in the call that brought it.
    public var oldestHeldArrival: UInt64? { nil }

    public func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        let count = UInt64(shards.count)
        // About one observation a span of the shard's share: room made once, not grown a call at a time.
        let expected = batch.spanCount / shards.count + 8
        for (index, shard) in shards.enumerated() {
            let mine = UInt64(index)
            shard.submit(to: graph) { [graph] state, observations in
                observations.reserveCapacity(expected)
                // One shard notes the resources' agent attributes for the nodes' details.
                if mine == 0 { graph.noteDetails(of: batch.resourceSpans.map(\.resource)) }
                for resourceSpans in batch.resourceSpans {
                    // "If service.name doesn't exist, skip processing this trace" (connector), counted.
                    guard let service = state.configuration.serviceName(of: resourceSpans.resource) else {
                        state.skip(resourceSpans.scopeSpans.reduce(0) { total, scope in
                            total + (count == 1 ? scope.spans.count : scope.spans.count(where: { $0.traceID.low % count == mine }))
                        })
                        continue
                    }
                    for scopeSpans in resourceSpans.scopeSpans {
                        // By index: the span is read in place rather than copied.
                        let spans = scopeSpans.spans
                        for index in spans.indices where count == 1 || spans[index].traceID.low % count == mine {
                            state.observe(spans, at: index, service: service, resource: resourceSpans.resource, now: now, into: &observations)
                        }
                    }
                }
            }
        }
        return [batch]
    }

    /// Expires unpaired halves, at most once per `store_expiration_loop`.
    public func tick(now: UInt64) -> [SpanBatch] {
        let loop = UInt64(clamping: graph.configuration.storeExpirationLoop.nanoseconds)
        for shard in shards {
            let due = shard.state.withLock { counts in
                guard now >= counts.nextExpiry else { return false }
                counts.nextExpiry = now &+ loop
                return true
            }
            guard due else { continue }
            shard.submit(to: graph) { state, observations in state.expire(now: now, into: &observations) }
        }
        return []
    }

    /// Waits, without blocking, until fewer than `queueSize` batches wait in every shard.
    public func waitForRoom() async {
        for shard in shards where !shard.hasRoom { await shard.waitForRoom() }
    }

    /// Waits until every batch handed over so far is in the graph.
    public func drain() async {
        for shard in shards { await shard.drain() }
    }

    /// Expires every half still held into the graph. The pipeline calls it after `drain()`, once nothing
    /// more is handed over, so it runs on the caller's thread without waiting for a queue.
    public func flush() -> [SpanBatch] {
        for shard in shards {
            shard.run(graph) { state, observations in observations = state.expireAll() }
        }
        return []
    }

    /// The agent attribute keys (`agent.type`, …) seen so far on nodes, sorted: the node detail fields.
    public var nodeDetailKeys: [String] { graph.nodeDetailKeys }

    /// The graph for the APIs.
    public func snapshot(since: UInt64? = nil, until: UInt64? = nil, service: String? = nil, rendering: Bool = false) -> GraphSnapshot {
        graph.snapshot(since: since, until: until, service: service, rendering: rendering)
    }
}

/// Builds `service_graph` processors.
public struct ServiceGraphProcessorFactory: ProcessorFactory {
    public let type = "service_graph"

    public init() {}

    /// The processor's graph also answers `ServiceGraphEdges`, so `anomaly_detection` correlates incidents
    /// along the graph's edges.
    public func makeProcessor(section: ConfigSection, context: ComponentContext) throws -> any SpanProcessor {
        let processor = ServiceGraphProcessor(configuration: try ServiceGraphConfiguration(section: section), metrics: context.metrics)
        ServiceGraphEdges.shared(in: context).provide { [graph = processor.graph] in graph.callPairs }
        return processor
    }
}
