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
/// Used by one task at a time: the pipeline service with the wall clock, or `replay` with a virtual one.
///
/// In a durable pipeline the runner also keeps the `DurableLedger`: it tells the ledger what each
/// processor is handed and what it still holds, and releases the write-ahead-log records nothing needs.
public final class PipelineRunner: Sendable {
    /// The processors, in pipeline order.
    public let processors: [ProcessorInstance]
    /// The exporters, all of which receive every batch.
    public let exporters: [ExporterInstance]
    /// The write-ahead log whose records this runner releases once exported, when the pipeline is durable.
    public let durableLog: DurableLog?
    /// What the write-ahead log still needs (only read and written by the task running the pipeline).
    private let ledger: Mutex<DurableLedger>
    /// Each processor as a `HandOffSpanProcessor`, when it is one (looked up once, not per batch).
    private let handOffs: [(any HandOffSpanProcessor)?]
    private let logger: Logger

    public init(processors: [ProcessorInstance], exporters: [ExporterInstance], durableLog: DurableLog? = nil, logger: Logger) {
        self.processors = processors
        handOffs = processors.map { $0.processor as? any HandOffSpanProcessor }
        self.exporters = exporters
        self.durableLog = durableLog
        ledger = Mutex(DurableLedger(processors: processors.count))
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
    }

    /// Runs a batch that arrived at `now` through the chain and exports what comes out; `record` is its
    /// write-ahead-log record in a durable pipeline.
    public func process(_ batch: SpanBatch, record: UInt64? = nil, now: UInt64) async {
        await run(from: 0, [batch], record: durableLog == nil ? nil : record, now: now)
        if durableLog != nil, let record { ledger.withLock { $0.finish(record) } }
        await releaseWhatIsDone()
    }

    /// Lets every processor see the time; what falls due continues down the chain.
    public func tick(now: UInt64) async {
        for index in processors.indices {
            await handOffs[index]?.waitForRoom()
            let record = oldestRecord(heldBy: index)
            let due = processors[index].processor.tick(now: now)
            settle(index)
            if !due.isEmpty { await run(from: index + 1, due, record: record, now: now) }
        }
        await releaseWhatIsDone()
    }

    /// Flushes every processor in order, exports the rest and shuts the exporters down (one shared with
    /// other pipelines once the last of them shuts down).
    public func shutdown(now: UInt64) async {
        for index in processors.indices {
            await handOffs[index]?.drain()
            let record = oldestRecord(heldBy: index)
            let held = processors[index].processor.flush()
            settle(index)
            if !held.isEmpty { await run(from: index + 1, held, record: record, now: now) }
        }
        await releaseWhatIsDone()
        for instance in exporters { await instance.lifecycle.release(instance.exporter) }
    }

    /// `record`: the oldest write-ahead-log record `batches` can come from (nil outside durable pipelines).
    private func run(from first: Int, _ batches: [SpanBatch], record: UInt64?, now: UInt64) async {
        var batches = batches
        var record = record
        var index = first
        while index < processors.count, !batches.isEmpty {
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
            index += 1
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
