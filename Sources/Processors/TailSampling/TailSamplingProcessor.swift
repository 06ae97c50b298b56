import DequeModule
import Logging
import Pipeline
import Prometheus
import Synchronization
import TraceModel

/// `tail_sampling`: holds each trace's spans for `decision_wait` after its first span, then keeps or
/// drops the whole trace by the policies — the OpenTelemetry Collector's processor of the same name,
/// with its settings, policy types, decision rules and (renamed) metrics.
///
/// Time is what the pipeline says it is (`now`), so a replay on its virtual clock decides the same
/// traces every run. Everything held is bounded by `num_traces`.
public final class TailSamplingProcessor: SpanProcessor {
    private let configuration: TailSamplingConfiguration
    private let state: Mutex<State>
    private let metrics: TailSamplingMetrics
    /// Holds spans as bytes (binary OTLP, about their size on the wire) when given; as values otherwise.
    private let codec: BatchCodec?
    private let logger: Logger?

    /// A chunk of an undecided trace.
    enum HeldChunk {
        /// As a value (without a codec)...
        indirect case value(ResourceSpans)
        /// ...or encoded, one request each (with one), without its resource and (when the codec can)
        /// without its spans' trace id, the table's key: the resource is kept beside it, one copy
        /// shared by every chunk of it rather than one in each.
        case encoded(ByteSlab.Chunk, SharedResource)
    }

    /// A resource kept once for every chunk of it held as bytes.
    final class SharedResource: Sendable {
        let resource: Resource

        init(_ resource: Resource) {
            self.resource = resource
        }
    }

    /// One trace being held or remembered (its id is its key in `TraceTable`). Kept small, 96 bytes: one
    /// for every trace held, about 12 bytes a span in 8-span traces.
    struct Entry {
        /// The first chunk held, in the table itself: most traces arrive in one chunk, and a small
        /// allocation per trace, kept for the whole wait among the short-lived ones of every batch,
        /// fragments the heap (resident memory grew by more than the allocations themselves)...
        var firstChunk: HeldChunk?
        /// ...and the others, in order of arrival.
        var moreChunks: [HeldChunk] = []
        /// Every chunk held, in order of arrival.
        var chunks: [HeldChunk] { firstChunk.map { [$0] + moreChunks } ?? [] }

        mutating func append(_ chunk: HeldChunk) {
            if firstChunk == nil { firstChunk = chunk } else { moreChunks.append(chunk) }
        }
        /// When its first span arrived; identifies this life of the trace in the queues below.
        let arrival: UInt64
        /// When it is to be decided; once decided, when it was (`decidedAt`).
        var deadline: UInt64
        /// What the policies need, gathered as chunks arrived (44 bytes: `decision` fits after it).
        var summary: TraceSummary.Gathered
        var decision: SamplingDecision?
        var decidedAt: UInt64 { deadline }

        init(arrival: UInt64, deadline: UInt64) {
            self.arrival = arrival
            self.deadline = deadline
            summary = TraceSummary.Gathered()
        }

        /// Spans held (before the decision).
        var heldSpans: Int { summary.spanCount }
        /// Bytes of its chunks held as bytes: what the slab keeps for it.
        var encodedBytes: Int {
            func count(_ chunk: HeldChunk?) -> Int {
                if case .encoded(let bytes, _)? = chunk { Int(bytes.count) } else { 0 }
            }
            var total = count(firstChunk)
            for chunk in moreChunks { total += count(chunk) }
            return total
        }

        /// What a free slot of `TraceTable` holds.
        static let vacant = Entry(arrival: 0, deadline: 0)
    }

    struct State {
        var traces = TraceTable()
        /// Traces in the order they were first seen: who goes first when `num_traces` is reached.
        var arrivals: Deque<(id: TraceID, arrival: UInt64)> = []
        /// Decision deadlines are `decision_wait` after the first span, so in order of first arrival:
        /// `arrivals` from `dueStart` on are the traces still to be decided at theirs (the cursor passes
        /// traces as they are decided or leave, so the first it rests on brought the oldest span still
        /// held, `oldestHeldArrival`).
        var dueStart = 0
        /// The earlier deadlines root spans bring with `decision_wait_after_root_received`.
        var rootDue: Deque<(deadline: UInt64, id: TraceID, arrival: UInt64)> = []
        /// When the oldest span still held arrived; nil when none is.
        var oldestHeldArrival: UInt64?
        var sampledCache: DecisionCache
        var notSampledCache: DecisionCache
        var heldSpans = 0
        /// Bytes of the spans held: as stored when held as bytes, the estimate when held as values.
        var spanBytes = 0
        /// What is held, truthfully: the spans' bytes and every trace's record (`max_held_bytes`).
        var heldBytes: Int { spanBytes + traces.count * TraceTable.bytesPerTrace }
        /// Where encoded spans are kept.
        var slab = ByteSlab()
        /// Resources of the chunks held as bytes, one copy of each distinct resource: a chunk keeps the
        /// copy here rather than the one decoded with its request, which would stay behind, one per
        /// request, among the request's freed spans. Emptied when it passes `maximumResources`.
        var resources: [Resource: SharedResource] = [:]
        /// When the store was last reported full in the log (at most one line a minute).
        var lastFullWarning: UInt64?
    }

    /// `codec`: when given, held spans are kept encoded and decoded only if their trace is sampled.
    public init(configuration: TailSamplingConfiguration, metrics: SelfMetrics, name: String = "", codec: BatchCodec? = nil,
                logger: Logger? = nil) {
        self.configuration = configuration
        self.codec = codec
        self.logger = logger
        var initial = State(sampledCache: DecisionCache(capacity: configuration.sampledCacheSize),
                            notSampledCache: DecisionCache(capacity: configuration.notSampledCacheSize))
        // Room for the traces expected up front: growing a table of a million entries by doubling
        // would leave the smaller tables behind in the heap.
        let expected = min(configuration.numTraces, configuration.expectedTraces)
        initial.traces.reserveCapacity(expected)
        initial.arrivals.reserveCapacity(expected)
        state = Mutex(initial)
        self.metrics = TailSamplingMetrics(metrics, policies: configuration.policies.map(\.name), instance: name)
    }

    public func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        let released = state.withLock { state -> [ResourceSpans] in
            var released: [ResourceSpans] = []
            for var resourceSpans in batch.resourceSpans {
                var shared: SharedResource?
                if codec != nil {
                    let kept = Self.intern(resourceSpans.resource, in: &state.resources)
                    resourceSpans.resource = kept.resource
                    shared = kept
                }
                for (id, chunk) in Self.split(resourceSpans) {
                    accept(chunk, of: id, resource: shared, received: batch.received, now: now, into: &released, state: &state)
                }
            }
            metrics.update(state)
            updateOldestHeld(&state)
            return released
        }
        return output(released)
    }

    public func tick(now: UInt64) -> [SpanBatch] {
        let released = state.withLock { state -> [ResourceSpans] in
            var released: [ResourceSpans] = []
            let started = ContinuousClock.now
            var decided = 0
            while let first = state.rootDue.first, first.deadline <= now {
                state.rootDue.removeFirst()
                guard let slot = state.traces.undecidedSlot(of: first.id, arrival: first.arrival) else { continue }
                decide(first.id, at: slot, now: now, into: &released, state: &state)
                decided += 1
            }
            while state.dueStart < state.arrivals.count {
                let next = state.arrivals[state.dueStart]
                guard next.arrival &+ configuration.decisionWaitNanos <= now else { break }
                state.dueStart += 1
                guard let slot = state.traces.undecidedSlot(of: next.id, arrival: next.arrival) else { continue }
                decide(next.id, at: slot, now: now, into: &released, state: &state)
                decided += 1
            }
            if decided > 0 { metrics.decisionTime.record((ContinuousClock.now - started) / .milliseconds(1)) }
            metrics.update(state)
            updateOldestHeld(&state)
            return released
        }
        return output(released)
    }

    public func flush() -> [SpanBatch] {
        let released = state.withLock { state -> [ResourceSpans] in
            var released: [ResourceSpans] = []
            if !configuration.dropPendingTracesOnShutdown {
                // "Every pending trace is decided immediately on partial data", as the Collector drains.
                for (id, arrival) in state.arrivals {
                    guard let slot = state.traces.undecidedSlot(of: id, arrival: arrival) else { continue }
                    decide(id, at: slot, now: state.traces[slot: slot].deadline, into: &released, state: &state)
                }
            }
            state.traces.removeAll()
            state.arrivals.removeAll()
            state.dueStart = 0
            state.rootDue.removeAll()
            state.heldSpans = 0
            state.spanBytes = 0
            state.oldestHeldArrival = nil
            metrics.update(state)
            return released
        }
        return output(released)
    }

    /// The `now` of the call that brought the oldest span still held: the first span of the oldest
    /// undecided trace.
    public var oldestHeldArrival: UInt64? { state.withLock { $0.oldestHeldArrival } }

    /// Spans held now, for tests and the memory benchmark.
    public var heldSpans: Int { state.withLock { $0.heldSpans } }

    // MARK: - Arrival

    private func accept(_ chunk: SpanSelection, of id: TraceID, resource: SharedResource?, received: ReceivedRequest, now: UInt64,
                        into released: inout [ResourceSpans], state: inout State) {
        let spans = chunk.spanCount
        if state.sampledCache.contains(id) {
            metrics.cacheReleases[true].increment(by: Int64(spans))
            released.append(chunk.copied())
            return
        }
        if state.notSampledCache.contains(id) {
            metrics.cacheReleases[false].increment(by: Int64(spans))
            return
        }
        if let slot = state.traces.slot(of: id) {
            if let decision = state.traces[slot: slot].decision {
                // A late span of a decided trace follows the decision.
                state.traces[slot: slot].summary.spanCount += spans
                metrics.lateSpanAge.record(Double(now &- state.traces[slot: slot].decidedAt) / 1e9)
                metrics.lateSpans[decision].increment(by: Int64(spans))
                if decision == .sampled { released.append(chunk.copied()) }
                return
            }
            let (size, sure) = hold(chunk, of: id, resource: resource, received: received, in: &state.traces[slot: slot], slab: &state.slab,
                                    spanBytes: &state.spanBytes)
            state.heldSpans += spans
            held(chunk, of: id, at: slot, size: size, sure: sure, now: now, into: &released, state: &state)
            return
        }
        makeRoom(now: now, into: &released, state: &state)
        let deadline = now &+ configuration.decisionWaitNanos
        var entry = Entry(arrival: now, deadline: deadline)
        let (size, sure) = hold(chunk, of: id, resource: resource, received: received, in: &entry, slab: &state.slab, spanBytes: &state.spanBytes)
        let slot = state.traces.insert(entry, for: id)
        state.arrivals.append((id, now))
        state.heldSpans += spans
        metrics.newTraces.increment()
        held(chunk, of: id, at: slot, size: size, sure: sure, now: now, into: &released, state: &state)
    }

    /// What follows holding a chunk of an undecided trace (its record in `slot`, `size` its bytes so far):
    /// a trace grown too large goes, a root span hurries the decision, and one sure to be sampled is decided.
    private func held(_ chunk: SpanSelection, of id: TraceID, at slot: Int, size: Int, sure: Bool, now: UInt64,
                      into released: inout [ResourceSpans], state: inout State) {
        guard !tooLarge(size, id, at: slot, now: now, state: &state) else { return }
        if Self.hasRoot(chunk) { hurry(id, at: slot, now: now, state: &state) }
        if sure { decideEarly(id, at: slot, now: now, into: &released, state: &state) }
    }

    /// With `decide_early`, a trace that some policy samples whatever is still to come is decided now:
    /// waiting could only give the same answer.
    private func decideEarly(_ id: TraceID, at slot: Int, now: UInt64, into released: inout [ResourceSpans], state: inout State) {
        metrics.earlyDecisions.increment()
        decide(id, at: slot, now: now, into: &released, state: &state)
    }

    /// With `decide_early`, whether some policy samples the trace whatever is still to come.
    private func isSure(_ summary: TraceSummary.Gathered, of id: TraceID) -> Bool {
        guard configuration.decideEarly else { return false }
        let trace = TraceSummary(traceID: id, gathered: summary)
        return configuration.policies.contains { $0.samplesForGood(trace) }
    }

    /// Keeps a chunk of an undecided trace and adds it to the trace's summary; returns the trace's size
    /// (its spans' binary OTLP, trace ids included, whether or not they are kept) and whether, with
    /// `decide_early`, some policy now samples it for good.
    private func hold(_ chunk: SpanSelection, of id: TraceID, resource: SharedResource?, received: ReceivedRequest,
                      in entry: inout Entry, slab: inout ByteSlab,
                      spanBytes: inout Int) -> (size: Int, sure: Bool) {
        let spansBefore = entry.summary.spanCount
        entry.summary.observe(chunk, checks: configuration.checks)
        let sure = isSure(entry.summary, of: id)
        let size: Int
        let stored: Int
        if codec != nil, sure {
            // `decideEarly` decides the trace right after: encoding the chunk would only be undone.
            // (With `decide_early` no size limit or byte budget reads the size.)
            (size, stored) = (0, 0)
            entry.append(.value(chunk.copied()))
        } else if let codec {
            if let encodeHeld = codec.encodeHeld {
                // The trace id is the table's key: 18 bytes a span (tag, length, 16 bytes) not kept,
                // but counted in the trace's size (its wire size, which `maximum_trace_size_bytes` and
                // `bytes_limiting` read). The resource is kept beside the bytes.
                // Spans unchanged since they arrived are copied from the request's bytes.
                let bytes = encodeHeld(chunk, received)
                (size, stored) = (bytes.count + 18 * (entry.summary.spanCount - spansBefore), bytes.count)
                entry.append(.encoded(slab.append(bytes), resource ?? SharedResource(chunk.resource)))
            } else {
                var bare = chunk.copied()
                bare.resource = Resource()
                let bytes = codec.encode(SpanBatch(resourceSpans: [bare]))
                (size, stored) = (bytes.count, bytes.count)
                entry.append(.encoded(slab.append(bytes), resource ?? SharedResource(chunk.resource)))
            }
        } else {
            let copied = chunk.copied()
            size = SpanSize.estimate(copied)
            stored = size
            entry.append(.value(copied))
        }
        entry.summary.sizeBytes += size
        spanBytes += stored
        return (entry.summary.sizeBytes, sure)
    }

    /// Bytes of a trace's spans counted in `State.spanBytes`.
    private func storedBytes(_ entry: Entry) -> Int {
        codec == nil ? entry.summary.sizeBytes : entry.encodedBytes
    }

    /// A root span arrived: decide `decision_wait_after_root_received` from now if that is sooner.
    private func hurry(_ id: TraceID, at slot: Int, now: UInt64, state: inout State) {
        guard let wait = configuration.decisionWaitAfterRootNanos else { return }
        let deadline = now &+ wait
        guard deadline < state.traces[slot: slot].deadline else { return }
        state.traces[slot: slot].deadline = deadline
        state.rootDue.append((deadline, id, state.traces[slot: slot].arrival))
    }

    /// Over `maximum_trace_size_bytes` (strictly): the trace is not sampled at once and its spans go.
    private func tooLarge(_ size: Int, _ id: TraceID, at slot: Int, now: UInt64, state: inout State) -> Bool {
        guard configuration.maximumTraceSizeBytes > 0, size > configuration.maximumTraceSizeBytes else { return false }
        metrics.tooLarge.increment()
        var ignored: [ResourceSpans] = []
        settle(id, at: slot, .notSampled, now: now, into: &ignored, state: &state)
        return true
    }

    /// At `num_traces` (or `max_held_bytes`), the oldest trace goes: evicted with its spans, or with
    /// `block_on_overflow` decided now so none of its spans is lost.
    private func makeRoom(now: UInt64, into released: inout [ResourceSpans], state: inout State) {
        compactQueues(&state)
        func full() -> Bool {
            state.traces.count >= configuration.numTraces || (configuration.maxHeldBytes > 0 && state.heldBytes >= configuration.maxHeldBytes)
        }
        guard full() else { return }
        warnFull(now: now, state: &state)
        while full(), let oldest = state.arrivals.popFirst() {
            state.dueStart = max(state.dueStart - 1, 0)
            guard let slot = state.traces.slot(of: oldest.id, arrival: oldest.arrival) else { continue }
            let undecided = state.traces[slot: slot].decision == nil
            if undecided {
                if configuration.blockOnOverflow {
                    decide(oldest.id, at: slot, evicting: true, now: now, into: &released, state: &state)
                } else {
                    metrics.droppedTooEarly.increment()
                    state.heldSpans -= state.traces[slot: slot].heldSpans
                    state.spanBytes -= storedBytes(state.traces[slot: slot])
                }
            }
            state.traces.remove(oldest.id, at: slot)
            metrics.evicted[undecided && !configuration.blockOnOverflow].increment()
            metrics.removalAge.record(Double(now &- oldest.arrival) / 1e9)
        }
    }

    /// Says in the log, at most once a minute, that the store is full and what happens to the oldest traces.
    private func warnFull(now: UInt64, state: inout State) {
        guard let logger, state.lastFullWarning.map({ now &- $0 >= 60 * 1_000_000_000 }) ?? true else { return }
        state.lastFullWarning = now
        let what = configuration.blockOnOverflow ? "deciding the oldest traces early on the spans they have"
                                                 : "evicting the oldest undecided traces with their spans (block_on_overflow: true decides them instead)"
        logger.warning("tail_sampling is full (\(state.traces.count) traces, \(state.heldBytes) bytes held; num_traces \(configuration.numTraces), max_held_bytes \(configuration.maxHeldBytes)): \(what)")
    }

    /// Drops queue entries of traces that have left, so the queues stay near the number of traces held.
    private func compactQueues(_ state: inout State) {
        func live(_ id: TraceID, _ arrival: UInt64) -> Bool { state.traces.slot(of: id, arrival: arrival) != nil }
        let limit = 2 * state.traces.count + 1024
        if state.arrivals.count > limit {
            // The cursor keeps its place: it rests after the live traces it had passed.
            var kept: Deque<(id: TraceID, arrival: UInt64)> = []
            var dueStart = 0
            for (position, queued) in state.arrivals.enumerated() where live(queued.id, queued.arrival) {
                if position < state.dueStart { dueStart += 1 }
                kept.append(queued)
            }
            state.arrivals = kept
            state.dueStart = dueStart
        }
        if state.rootDue.count > limit { state.rootDue = Deque(state.rootDue.filter { live($0.id, $0.arrival) }) }
    }

    // MARK: - Decision

    /// Decides the trace `id`, whose record is in `slot`; `evicting`: the caller forgets it right after.
    private func decide(_ id: TraceID, at slot: Int, evicting: Bool = false, now: UInt64, into released: inout [ResourceSpans],
                        state: inout State) {
        let trace = TraceSummary(traceID: id, gathered: state.traces[slot: slot].summary)
        var sampled = false
        var dropped = false
        for (index, policy) in configuration.policies.enumerated() {
            let decision = policy.evaluate(trace, now: now)
            metrics.policyDecisions[index][decision].increment()
            if decision == .dropped {
                dropped = true
                break
            }
            if decision == .sampled {
                sampled = true
                if configuration.sampleOnFirstMatch { break }
            }
        }
        // "Any drop wins, then any sampled, else not sampled."
        let decision: SamplingDecision = dropped ? .dropped : sampled ? .sampled : .notSampled
        metrics.finalDecisions[decision].increment()
        metrics.decisionAge.record(Double(now &- state.traces[slot: slot].arrival) / 1e9)
        settle(id, at: slot, decision, evicting: evicting, now: now, into: &released, state: &state)
    }

    /// Applies a decision: releases or drops the spans held, remembers it in the cache (and then
    /// forgets the trace) or on the trace itself for its late spans.
    private func settle(_ id: TraceID, at slot: Int, _ decision: SamplingDecision, evicting: Bool = false, now: UInt64,
                        into released: inout [ResourceSpans], state: inout State) {
        let entry = state.traces[slot: slot]
        let spans = entry.heldSpans
        state.heldSpans -= spans
        state.spanBytes -= storedBytes(entry)
        if decision == .sampled {
            let chunks = entry.chunks
            var encoded: [ByteSlab.Chunk] = []
            for case .encoded(let bytes, _) in chunks { encoded.append(bytes) }
            var decoded: [ResourceSpans] = []
            if let codec, !encoded.isEmpty {
                // The chunks were encoded as requests; their bytes one after another are one request,
                // with one resource-spans per chunk, in order.
                do {
                    decoded = try codec.decode(ByteSlab.join(encoded)).resourceSpans
                    if codec.encodeHeld != nil { Self.restore(id, in: &decoded) }
                } catch {
                    metrics.decodeFailures.increment(by: Int64(spans))
                }
            }
            // In order of arrival, each decoded chunk with its resource given back.
            var next = decoded.startIndex
            for chunk in chunks {
                switch chunk {
                case .value(let value): released.append(value)
                case .encoded(_, let shared):
                    guard next < decoded.endIndex else { continue }
                    decoded[next].resource = shared.resource
                    released.append(decoded[next])
                    next += 1
                }
            }
        }
        metrics.decidedSpans[decision == .sampled].increment(by: Int64(spans))
        let cache = decision == .sampled ? \State.sampledCache : \State.notSampledCache
        if state[keyPath: cache].capacity > 0 {
            state[keyPath: cache].insert(id)
            guard !evicting else { return }
            state.traces.remove(id, at: slot)
            metrics.removalAge.record(Double(now &- entry.arrival) / 1e9)
        } else {
            state.traces[slot: slot].firstChunk = nil
            state.traces[slot: slot].moreChunks = []
            state.traces[slot: slot].decision = decision
            state.traces[slot: slot].deadline = now
        }
    }

    // MARK: - Output

    /// Moves the due cursor past decided and departed traces (`tick` would pass over them); the first
    /// it rests on is the oldest held.
    private func updateOldestHeld(_ state: inout State) {
        while state.dueStart < state.arrivals.count {
            let first = state.arrivals[state.dueStart]
            if state.traces.undecidedSlot(of: first.id, arrival: first.arrival) != nil {
                state.oldestHeldArrival = first.arrival
                return
            }
            state.dueStart += 1
        }
        state.oldestHeldArrival = nil
    }

    /// Gives decoded spans of one trace, held without their trace id, the trace's id back.
    static func restore(_ id: TraceID, in chunks: inout [ResourceSpans]) {
        for chunk in chunks.indices {
            for scope in chunks[chunk].scopeSpans.indices {
                for span in chunks[chunk].scopeSpans[scope].spans.indices {
                    chunks[chunk].scopeSpans[scope].spans[span].traceID = id
                }
            }
        }
    }

    private func output(_ released: [ResourceSpans]) -> [SpanBatch] {
        released.isEmpty ? [] : [SpanBatch(resourceSpans: released)]
    }

    /// The spans of one resource, one chunk per trace, in order of first appearance: each a selection
    /// of the resource's spans, in place (none is copied). Spans of a trace mostly come in runs: each
    /// run is looked up and picked at once.
    static func split(_ resourceSpans: ResourceSpans) -> [(TraceID, SpanSelection)] {
        guard let first = resourceSpans.scopeSpans.first(where: { !$0.spans.isEmpty })?.spans[0].traceID else { return [] }
        let whole = SpanSelection(whole: resourceSpans)
        // Often every span is of one trace: the chunk is the whole input.
        if !whole.containsSpan(where: { spans, index in spans[index].traceID != first }) { return [(first, whole)] }
        var chunks: [(TraceID, SpanSelection)] = []
        var positions: [TraceID: Int] = [:]
        for scopeIndex in resourceSpans.scopeSpans.indices {
            let spans = resourceSpans.scopeSpans[scopeIndex].spans
            var start = spans.startIndex
            while start < spans.endIndex {
                let id = spans[start].traceID
                var end = start + 1
                while end < spans.endIndex, spans[end].traceID == id { end += 1 }
                let position: Int
                if let known = positions[id] {
                    position = known
                } else {
                    position = chunks.count
                    positions[id] = position
                    chunks.append((id, SpanSelection(of: resourceSpans)))
                }
                chunks[position].1.append(scope: scopeIndex, spans: start..<end)
                start = end
            }
        }
        return chunks
    }

    /// Distinct resources remembered at most (`State.resources`).
    static let maximumResources = 4096

    /// The copy of `resource` kept in `resources` (the first one seen equal to it).
    static func intern(_ resource: Resource, in resources: inout [Resource: SharedResource]) -> SharedResource {
        if let kept = resources[resource] { return kept }
        if resources.count >= maximumResources { resources.removeAll(keepingCapacity: true) }
        let shared = SharedResource(resource)
        resources[resource] = shared
        return shared
    }

    static func hasRoot(_ chunk: SpanSelection) -> Bool {
        chunk.containsSpan { spans, index in !spans[index].parentSpanID.isValid }
    }
}

/// Remembers the last `capacity` decisions of one kind (the Collector's `decision_cache`); the oldest
/// remembered goes first. Capacity 0 remembers nothing.
struct DecisionCache {
    let capacity: Int
    private var members: Set<TraceID> = []
    private var order: Deque<TraceID> = []

    init(capacity: Int) {
        self.capacity = capacity
    }

    func contains(_ id: TraceID) -> Bool { capacity > 0 && members.contains(id) }

    mutating func insert(_ id: TraceID) {
        guard capacity > 0, members.insert(id).inserted else { return }
        order.append(id)
        if order.count > capacity, let oldest = order.popFirst() { members.remove(oldest) }
    }
}

/// Builds `tail_sampling` processors.
public struct TailSamplingProcessorFactory: ProcessorFactory {
    public let type = "tail_sampling"
    private let codec: BatchCodec?

    /// `codec`: how held spans are kept encoded (binary OTLP in the collector).
    public init(codec: BatchCodec? = nil) {
        self.codec = codec
    }

    public func makeProcessor(section: ConfigSection, context: ComponentContext) throws -> any SpanProcessor {
        TailSamplingProcessor(configuration: try TailSamplingConfiguration(section: section), metrics: context.metrics,
                              name: context.id.name, codec: codec, logger: context.logger)
    }
}
