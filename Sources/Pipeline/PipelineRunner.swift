import Logging
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
/// Each processor runs on a task of its own, a stage, and the exporters on one more: stage `i` takes
/// batches and ticks from a small bounded queue (`StageQueue`), calls processor `i`, and sends what comes
/// out to stage `i + 1`. Every processor still sees every batch and tick in the order they were handed to
/// the runner, with the `now` they came with, one call at a time; but consecutive processors work on
/// different batches at once, so a chain uses as many cores as the machine gives its tasks. `process`
/// and `tick` return once the first stage has taken the work; `drain` waits until it has been exported.
/// It is fed by one task at a time: the pipeline service with the wall clock, or `replay` with a virtual one.
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
    /// The queue in front of each stage: one per processor, then the exporters'.
    private let stages: [StageQueue<Work>]
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
        /// Everything handed to the runner before this has been exported once the exporters' stage sees it.
        case drained(AsyncStream<Void>.Continuation)
        /// The end: each stage drains and flushes its processor, passes that on and stops.
        case shutdown(now: UInt64)
    }

    public init(processors: [ProcessorInstance], exporters: [ExporterInstance], durableLog: DurableLog? = nil, logger: Logger) {
        self.processors = processors
        handOffs = processors.map { $0.processor as? any HandOffSpanProcessor }
        self.exporters = exporters
        self.durableLog = durableLog
        ledger = Mutex(DurableLedger(processors: processors.count))
        stages = (0...processors.count).map { _ in StageQueue(capacity: Self.stageCapacity) }
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

    /// Hands a batch that arrived at `now` to the chain; `record` is its write-ahead-log record in a durable
    /// pipeline. Returns once the first stage has room for it.
    public func process(_ batch: SpanBatch, record: UInt64? = nil, now: UInt64) async {
        startStages()
        let record = durableLog == nil ? nil : record
        await send(.batch(batch, record: record, now: now), to: 0)
        if let record { await stages[0].send(.finished(record: record)) }
    }

    /// Lets every processor see the time; what falls due continues down the chain.
    public func tick(now: UInt64) async {
        startStages()
        await stages[0].send(.tick(now: now))
    }

    /// Returns once everything handed to the runner so far has been through the chain and the exporters.
    public func drain() async {
        startStages()
        let (done, continuation) = AsyncStream<Void>.makeStream()
        await stages[0].send(.drained(continuation))
        for await _ in done {}
    }

    /// Flushes every processor in order, exports the rest and shuts the exporters down (one shared with
    /// other pipelines once the last of them shuts down).
    public func shutdown(now: UInt64) async {
        startStages()
        await stages[0].send(.shutdown(now: now))
        for task in stageTasks.withLock({ $0 ?? [] }) { await task.value }
        for instance in exporters { await instance.lifecycle.release(instance.exporter) }
    }

    private func startStages() {
        stageTasks.withLock { tasks in
            guard tasks == nil else { return }
            tasks = stages.indices.map { index in
                Task { [self] in
                    if index < processors.count { await runProcessor(index) } else { await runExporters() }
                }
            }
        }
    }

    /// Stage `index`: processor `index`, until the shutdown has passed through it.
    private func runProcessor(_ index: Int) async {
        let processor = processors[index].processor
        while true {
            switch await stages[index].next() {
            case .batch(let batch, let record, let now):
                await handOffs[index]?.waitForRoom()
                let from = record.map { record in
                    ledger.withLock { ledger in
                        ledger.arrive(at: index)
                        return ledger.hand(to: index, now: now, record: record)
                    }
                }
                let passed = processor.process(batch, now: now)
                settle(index)
                for batch in passed { await send(.batch(batch, record: from, now: now), to: index + 1) }
            case .tick(let now):
                await handOffs[index]?.waitForRoom()
                let record = oldestRecord(heldBy: index)
                let due = processor.tick(now: now)
                settle(index)
                for batch in due { await send(.batch(batch, record: record, now: now), to: index + 1) }
                await stages[index + 1].send(.tick(now: now))
            case .shutdown(let now):
                await handOffs[index]?.drain()
                let record = oldestRecord(heldBy: index)
                let held = processor.flush()
                settle(index)
                for batch in held { await send(.batch(batch, record: record, now: now), to: index + 1) }
                await stages[index + 1].send(.shutdown(now: now))
                return
            case let work:
                await stages[index + 1].send(work)
            }
        }
    }

    /// The last stage: hands batches to every exporter and releases the write-ahead log's records.
    private func runExporters() async {
        let index = processors.count
        while true {
            switch await stages[index].next() {
            case .batch(var batch, let record, _):
                if !batch.isEmpty {
                    // The request's bytes serve the processors only; exporters' queues should not hold them too.
                    batch.received = .none
                    await export(batch)
                }
                if record != nil { ledger.withLock { $0.arrive(at: index) } }
            case .tick:
                await releaseWhatIsDone()
            case .finished(let record):
                ledger.withLock { $0.finish(record) }
                await releaseWhatIsDone()
            case .drained(let continuation):
                continuation.finish()
            case .shutdown:
                await releaseWhatIsDone()
                return
            }
        }
    }

    /// Sends a batch to stage `index`, noting in a durable pipeline that its record waits there.
    private func send(_ work: Work, to index: Int) async {
        if case .batch(_, let record?, _) = work { ledger.withLock { $0.send(record, to: index) } }
        await stages[index].send(work)
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
