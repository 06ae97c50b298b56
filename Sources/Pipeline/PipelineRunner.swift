import Logging
import NIOCore
import Prometheus
import Synchronization
import TraceModel

/// Spans an exporter sent and failed to send.
public final class ExportTally: Sendable {
    public let sent = Atomic<Int>(0)
    public let failed = Atomic<Int>(0)

    public init() {}
}

/// One configured exporter with its counters.
public struct ExporterInstance: Sendable {
    /// The configured name.
    public var id: ComponentID
    /// The exporter.
    public var exporter: any SpanExporter
    /// Readable totals of sent and failed spans, for summaries such as `replay`'s.
    public let tally = ExportTally()
    let reporter: DeliveryReporter
    /// True when the exporter counts its own deliveries (it queues).
    let reportsOwnDelivery: Bool
    /// Starts the exporter once and shuts it down after the last pipeline feeding it has drained.
    let lifecycle: SharedExporterLifecycle

    /// `pipelines` is how many pipelines feed this one instance (they share it, its queue and its counters).
    ///
    /// The OpenTelemetry Collector's architecture: "The same receiver can be included in multiple pipelines
    /// and multiple pipelines can include the same exporter."
    public init(id: ComponentID, exporter: any SpanExporter, metrics: SelfMetrics, pipelines: Int = 1) {
        self.id = id
        self.exporter = exporter
        lifecycle = SharedExporterLifecycle(users: pipelines)
        let labels = [("exporter", id.description)]
        reporter = DeliveryReporter(
            sentSpans: metrics.counter("agenttrace_exporter_sent_spans_total",
                                       help: "Spans successfully sent by an exporter.", labels: labels),
            failedSpans: metrics.counter("agenttrace_exporter_send_failed_spans_total",
                                         help: "Spans an exporter failed to send.", labels: labels),
            tally: tally)
        reportsOwnDelivery = exporter.reportsDelivery(to: reporter)
    }
}

/// The start and shutdown of one exporter instance that several pipelines feed: the first pipeline to start
/// starts it (the others wait for that start), and only the last pipeline to shut down shuts it down, so
/// it drains once, after every pipeline feeding it has drained.
final class SharedExporterLifecycle: Sendable {
    private struct State {
        var start: Task<Void, any Error>?
        var remainingUsers: Int
    }

    private let state: Mutex<State>

    init(users: Int) {
        state = Mutex(State(start: nil, remainingUsers: max(users, 1)))
    }

    /// Starts `exporter` on the first call; later calls wait for that start and share its outcome.
    func start(_ exporter: any SpanExporter) async throws {
        let start = state.withLock { state in
            if let start = state.start { return start }
            let start = Task { try await exporter.start() }
            state.start = start
            return start
        }
        try await start.value
    }

    /// One pipeline is done with `exporter`; the last one shuts it down.
    func release(_ exporter: any SpanExporter) async {
        let last = state.withLock { state in
            state.remainingUsers -= 1
            return state.remainingUsers == 0
        }
        if last { await exporter.shutdown() }
    }
}

/// One configured processor.
public struct ProcessorInstance: Sendable {
    /// The configured name.
    public var id: ComponentID
    /// The processor.
    public var processor: any SpanProcessor

    public init(id: ComponentID, processor: any SpanProcessor) {
        self.id = id
        self.processor = processor
    }
}

/// Runs batches through the processor chain, in order, and hands what comes out to every exporter.
///
/// The chain is cut into stages, one per core the process may use (no more than processors plus one):
/// consecutive processors, as evenly as their number allows, the last stage also handing batches to the
/// exporters. The first stage runs in the task feeding the runner; each later one is a task that takes
/// batches and ticks from a small bounded queue (`StageQueue`). A stage runs its work through its
/// processors and sends what comes out to the next stage. Every processor still sees every batch and tick
/// in the order they were handed to the runner, with the `now` they came with, one call at a time; but
/// stages work on different batches at once, so a chain spreads over the cores. On one core there is one
/// stage and no hand-off. `process` and `tick` return once the first stage has done the work and the
/// second has room for what came out; `drain` waits until it has been exported. The runner is fed by one
/// task at a time: the pipeline service with the wall clock, or `replay` with a virtual one.
///
/// In a durable pipeline the runner also keeps the `DurableLedger`: it tells the ledger what each
/// processor is handed, what it still holds and what waits in a stage's queue, and releases the
/// write-ahead-log records nothing needs.
public final class PipelineRunner: Sendable {
    /// The processors, in pipeline order.
    public let processors: [ProcessorInstance]
    /// The exporters, all of which receive every batch.
    public let exporters: [ExporterInstance]
    /// The write-ahead log whose records this runner releases once exported, when the pipeline is durable.
    public let durableLog: DurableLog?
    /// What the write-ahead log still needs.
    private let ledger: Mutex<DurableLedger>
    /// Each processor as a `HandOffSpanProcessor`, when it is one (looked up once, not per batch).
    private let handOffs: [(any HandOffSpanProcessor)?]
    /// The processors each stage runs, in order; the last stage also exports.
    let stageProcessors: [Range<Int>]
    /// The queue in front of each stage after the first (which runs in the task feeding the runner).
    private let queues: [StageQueue<Work>]
    /// The stages' tasks, started on first use.
    private let stageTasks = Mutex<[Task<Void, Never>]?>(nil)
    private let logger: Logger

    /// Items waiting in front of each stage, at most.
    static let stageCapacity = 4

    /// What flows from stage to stage.
    enum Work: Sendable {
        /// A batch handed to the runner at `now`; `record`: the oldest write-ahead-log record its spans can
        /// come from (durable pipelines only).
        case batch(SpanBatch, record: UInt64?, now: UInt64)
        /// Time passes.
        case tick(now: UInt64)
        /// Everything that came of the batch of `record` is ahead of this (durable pipelines only).
        case finished(record: UInt64)
        /// Everything handed to the runner before this has been exported once the last stage sees it.
        case drained(AsyncStream<Void>.Continuation)
        /// The end: each stage drains and flushes its processors, passes that on and stops.
        case shutdown(now: UInt64)
    }

    /// `stages`: how many stages to cut the chain into; by default one per core the process may use.
    public init(processors: [ProcessorInstance], exporters: [ExporterInstance], durableLog: DurableLog? = nil,
                stages: Int = UsableCores.count, logger: Logger) {
        self.processors = processors
        handOffs = processors.map { $0.processor as? any HandOffSpanProcessor }
        self.exporters = exporters
        self.durableLog = durableLog
        // The exporters count as one more member of the chain, the last.
        let members = processors.count + 1
        let count = min(max(stages, 1), members)
        stageProcessors = (0..<count).map { stage in
            (stage * members / count)..<min((stage + 1) * members / count, processors.count)
        }
        ledger = Mutex(DurableLedger(processors: processors.count, stages: count))
        queues = (1..<count).map { _ in StageQueue(capacity: Self.stageCapacity) }
        self.logger = logger
    }

    /// Starts every exporter (one shared with other pipelines starts once, for the first of them).
    public func start() async throws {
        for instance in exporters {
            do {
                try await instance.lifecycle.start(instance.exporter)
            } catch {
                throw PipelineError.exporterFailedToStart(instance.id.description, "\(error)")
            }
        }
        startStages()
    }

    /// Runs a batch that arrived at `now` through the first stage and hands what comes out to the next;
    /// `record` is its write-ahead-log record in a durable pipeline. Returns once the next stage has room.
    public func process(_ batch: SpanBatch, record: UInt64? = nil, now: UInt64) async {
        startStages()
        let record = durableLog == nil ? nil : record
        if let record { ledger.withLock { $0.send(record, to: 0) } }
        await handle(.batch(batch, record: record, now: now), at: 0)
        if let record { await handle(.finished(record: record), at: 0) }
    }

    /// Lets every processor see the time; what falls due continues down the chain.
    public func tick(now: UInt64) async {
        startStages()
        await handle(.tick(now: now), at: 0)
    }

    /// Returns once everything handed to the runner so far has been through the chain and the exporters.
    public func drain() async {
        startStages()
        let (done, continuation) = AsyncStream<Void>.makeStream()
        await handle(.drained(continuation), at: 0)
        for await _ in done {}
    }

    /// Flushes every processor in order, exports the rest and shuts the exporters down (one shared with
    /// other pipelines once the last of them shuts down).
    public func shutdown(now: UInt64) async {
        startStages()
        await handle(.shutdown(now: now), at: 0)
        for task in stageTasks.withLock({ $0 ?? [] }) { await task.value }
        for instance in exporters { await instance.lifecycle.release(instance.exporter) }
    }

    /// The tasks of the stages after the first.
    private func startStages() {
        stageTasks.withLock { tasks in
            guard tasks == nil else { return }
            tasks = queues.indices.map { index in
                Task { [self] in
                    while await handle(queues[index].next(), at: index + 1) {}
                }
            }
        }
    }

    /// Does one item of work at stage `stage`; false once it was the shutdown.
    @discardableResult
    private func handle(_ work: Work, at stage: Int) async -> Bool {
        let members = stageProcessors[stage]
        let isLast = stage == stageProcessors.count - 1
        switch work {
        case .batch(let batch, let record, let now):
            let (passed, from) = await run(members, [batch], record: record, now: now)
            await pass(passed, record: from, now: now, from: stage)
            // Only now: until its processors hold it or the next stage (or the exporters) has it, the
            // batch's record is kept as waiting here.
            if record != nil { ledger.withLock { $0.arrive(at: stage) } }
        case .tick(let now):
            await letGo(members, at: stage, now: now, flushing: false)
            if isLast { await releaseWhatIsDone() } else { await queues[stage].send(.tick(now: now)) }
        case .finished(let record):
            if isLast {
                ledger.withLock { $0.finish(record) }
                await releaseWhatIsDone()
            } else {
                await queues[stage].send(.finished(record: record))
            }
        case .drained(let continuation):
            if isLast { continuation.finish() } else { await queues[stage].send(.drained(continuation)) }
        case .shutdown(let now):
            await letGo(members, at: stage, now: now, flushing: true)
            if isLast { await releaseWhatIsDone() } else { await queues[stage].send(.shutdown(now: now)) }
            return false
        }
        return true
    }

    /// Asks each processor of `members` in turn for what it lets go (`tick`, or `flush` at the end, after
    /// the hand-off processors' work is done) and runs that through the rest of the stage and on.
    private func letGo(_ members: Range<Int>, at stage: Int, now: UInt64, flushing: Bool) async {
        for index in members {
            if flushing { await handOffs[index]?.drain() } else { await handOffs[index]?.waitForRoom() }
            let record = oldestRecord(heldBy: index)
            let processor = processors[index].processor
            let out = flushing ? processor.flush() : processor.tick(now: now)
            settle(index)
            if !out.isEmpty {
                let (passed, from) = await run(index + 1..<members.upperBound, out, record: record, now: now)
                await pass(passed, record: from, now: now, from: stage)
            }
        }
    }

    /// Runs `batches` through the processors `members`, in order; returns what comes out and the record it
    /// counts as coming from (nil outside durable pipelines).
    private func run(_ members: Range<Int>, _ batches: [SpanBatch], record: UInt64?, now: UInt64) async -> ([SpanBatch], UInt64?) {
        var batches = batches
        var record = record
        for index in members where !batches.isEmpty {
            let processor = processors[index].processor
            var passed: [SpanBatch] = []
            var passedRecord: UInt64?
            for batch in batches {
                await handOffs[index]?.waitForRoom()
                let from = record.map { record in ledger.withLock { $0.hand(to: index, now: now, record: record) } }
                passed += processor.process(batch, now: now)
                settle(index)
                if let from { passedRecord = min(passedRecord ?? from, from) }
            }
            batches = passed
            record = passedRecord
        }
        return (batches, record)
    }

    /// What stage `stage` passes on: to the next stage, or from the last to every exporter.
    private func pass(_ batches: [SpanBatch], record: UInt64?, now: UInt64, from stage: Int) async {
        if stage + 1 < stageProcessors.count {
            for batch in batches {
                if let record { ledger.withLock { $0.send(record, to: stage + 1) } }
                await queues[stage].send(.batch(batch, record: record, now: now))
            }
            return
        }
        for var batch in batches where !batch.isEmpty {
            // The request's bytes serve the processors only; exporters' queues should not hold them too.
            batch.received = .none
            await export(batch)
        }
    }

    /// Before a `tick` or `flush`: the record what `index` passes on counts as coming from. One that said
    /// it held nothing and still passes spans on counts as the oldest record not yet released.
    private func oldestRecord(heldBy index: Int) -> UInt64? {
        guard durableLog != nil else { return nil }
        return ledger.withLock { $0.oldestRecord(heldBy: index) ?? $0.oldestUnreleased }
    }

    private func settle(_ index: Int) {
        guard durableLog != nil else { return }
        let oldest = processors[index].processor.oldestHeldArrival
        ledger.withLock { $0.settle(index, oldestHeldArrival: oldest) }
    }

    /// The exporters hold what was exported (durable ones on disk), so records nothing else needs may go.
    private func releaseWhatIsDone() async {
        guard let durableLog, let mark = ledger.withLock({ $0.releasable() }) else { return }
        await durableLog.release(upTo: mark)
    }

    private func export(_ batch: SpanBatch) async {
        let spans = Int64(batch.spanCount)
        await withTaskGroup(of: Void.self) { group in
            for instance in exporters {
                group.addTask {
                    do {
                        try await instance.exporter.export(batch)
                        if !instance.reportsOwnDelivery { instance.reporter.delivered(Int(spans)) }
                    } catch {
                        instance.reporter.failed(Int(spans))
                        self.logger.warning("export failed", metadata: [
                            "exporter": "\(instance.id)", "spans": "\(spans)", "error": "\(error)",
                        ])
                    }
                }
            }
        }
    }
}

/// Failures of the pipeline as a whole.
public enum PipelineError: Error, CustomStringConvertible {
    case exporterFailedToStart(String, String)

    public var description: String {
        switch self {
        case .exporterFailedToStart(let name, let reason): "exporter \(name) failed to start: \(reason)"
        }
    }
}
