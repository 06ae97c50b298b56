import DequeModule
import Foundation
import Logging
import Pipeline
import Prometheus
import Synchronization
import TraceModel
import TraceWire

/// Puts a bounded, retrying, optionally persistent queue in front of a `BatchSender`, as the
/// OpenTelemetry Collector's exporter helper does: `export` returns once the batch is queued (and, with
/// `storage`, written to disk); `num_consumers` tasks send, retrying retryable failures with
/// exponential backoff and jitter. A full queue makes `export` wait, so the pipeline queue fills and
/// receivers answer 429/UNAVAILABLE: backpressure, never a silent drop.
public final class QueuedExporter: SpanExporter {
    private let id: ComponentID
    private let sender: any BatchSender
    private let queueConfiguration: QueueConfiguration
    private let retry: RetryConfiguration
    private let logger: Logger
    private let queue: ExportQueue
    private let reporter = Mutex<DeliveryReporter?>(nil)
    private let consumers = Mutex<Task<Void, Never>?>(nil)
    private let retriedSpans: Counter
    /// Takes the series above off the exposition.
    private let removeSeries: @Sendable () -> Void
    private let stopping = Atomic<Bool>(false)
    /// Set by `withdraw()`: what fails from now on is handed back instead of dropped or kept on disk.
    private let withdrawing = Atomic<Bool>(false)
    /// How long `shutdown` keeps trying to deliver what is queued.
    private let drainDeadline: Duration
    /// Spans left out of delivered batches (OTLP `partial_success`, ids no backend can take), summarised once
    /// per interval.
    private let rejections = Mutex(RejectionLog())
    /// How often spans left out of delivered batches are logged at most.
    static let rejectionLogInterval: Duration = .seconds(60)

    public init(id: ComponentID, sender: any BatchSender, queue: QueueConfiguration, retry: RetryConfiguration,
                metrics: SelfMetrics, logger: Logger, drainDeadline: Duration = .seconds(5)) {
        self.id = id
        self.sender = sender
        self.queueConfiguration = queue
        self.retry = retry
        self.logger = logger
        self.drainDeadline = drainDeadline
        let labels = [("exporter", id.description)]
        retriedSpans = metrics.counter("agenttrace_exporter_retried_spans_total",
                                       help: "Spans whose send failed and was retried.", labels: labels)
        let size = metrics.gauge("agenttrace_exporter_queue_size",
                                 help: "What an exporter's sending queue holds, in its sizer's unit (batches or spans).", labels: labels)
        let persisted = metrics.gauge("agenttrace_exporter_persisted_bytes", help: "Bytes of queued batches kept on disk.", labels: labels)
        let capacity = metrics.gauge("agenttrace_exporter_queue_capacity",
                                     help: "The most an exporter's sending queue holds, in its sizer's unit (batches or spans).", labels: labels)
        capacity.set(Double(queue.queueSize))
        self.queue = ExportQueue(capacity: queue.queueSize, countsSpans: queue.sizer == .items,
                                 storage: queue.storage.map { URL(fileURLWithPath: $0) })
        let exportQueue = self.queue
        let hook = metrics.onScrape {
            let (count, bytes) = exportQueue.gauges
            size.set(Double(count))
            persisted.set(Double(bytes))
        }
        let retried = retriedSpans
        removeSeries = {
            metrics.removeOnScrape(hook)
            for gauge in [size, persisted, capacity] { metrics.remove(gauge) }
            metrics.remove(retried)
        }
    }

    /// Takes this exporter's series off `/metrics`, for one that goes away while the collector runs (a
    /// backend the loadbalancing exporter dropped), so the series stay bounded by the exporters there are.
    public func removeMetrics() {
        removeSeries()
    }

    public var durableStorage: String? { queueConfiguration.enabled ? queueConfiguration.storage : nil }

    /// Counts its own deliveries, queued or not: a backend's `partial_success` splits a batch into sent
    /// and failed spans, which only the exporter sees. (When an inline send throws, the pipeline counts
    /// the batch failed.)
    public func reportsDelivery(to reporter: DeliveryReporter) -> Bool {
        self.reporter.withLock { $0 = reporter }
        return true
    }

    public func start() async throws {
        guard queueConfiguration.enabled else { return }
        let recovered = try await queue.recover()
        if recovered > 0 {
            logger.info("recovered queued batches from storage", metadata: ["batches": "\(recovered)"])
        }
        let task = Task { [self] in
            await withDiscardingTaskGroup { group in
                for _ in 0..<queueConfiguration.numConsumers {
                    group.addTask { await self.consume() }
                }
            }
        }
        consumers.withLock { $0 = task }
    }

    public func export(_ batch: SpanBatch) async throws {
        let payload = SpanBatchPayload(batch)
        guard queueConfiguration.enabled else {
            // No queue: send inline; a failure is thrown for the pipeline to count.
            switch await deliver(QueuedBatch(payload: payload, record: nil)) {
            case .failure(let failure): throw failure
            case .success(let result): count(result, of: payload.spanCount)
            }
            return
        }
        try await queue.push(payload)
    }

    public func shutdown() async {
        await queue.close()
        guard let task = consumers.withLock({ $0 }) else {
            await sender.shutdown()
            return
        }
        // Let the consumers drain what is queued; past the deadline, stop them. With storage, what is
        // left stays on disk for the next start; without, it is counted as failed.
        let finished = Task { await task.value }
        let deadline = Task {
            try? await Task.sleep(for: drainDeadline)
            stopping.store(true, ordering: .relaxed)
            task.cancel()
        }
        await finished.value
        deadline.cancel()
        let abandoned = await queue.abandonUnpersisted()
        await queue.closeStorage()
        if abandoned > 0 {
            reporter.withLock { $0 }?.failed(abandoned)
            logger.warning("shut down with undelivered spans", metadata: ["spans": "\(abandoned)"])
        }
        await sender.shutdown()
    }

    /// Stops sending and hands back every batch not yet delivered (queued, or in flight and not sent), for
    /// another exporter to take: the loadbalancing exporter re-routes a dropped backend's share this way.
    /// Their disk records (with `storage`) stay until `forgetWithdrawn()`, so a crash in between loses nothing.
    /// Waits at most the drain deadline for sends in flight; then `shutdown()` releases the connections.
    public func withdraw() async -> [SpanBatch] {
        withdrawing.store(true, ordering: .relaxed)
        stopping.store(true, ordering: .relaxed)
        await queue.withdrawQueued()
        if let task = consumers.withLock({ $0 }) {
            task.cancel()
            let deadline = Task {
                try? await Task.sleep(for: drainDeadline)
                task.cancel()
            }
            await task.value
            deadline.cancel()
        }
        return await queue.takeHandedBack().map(\.payload.batch)
    }

    /// After `withdraw()`, once another exporter has taken the batches: removes their disk records.
    public func forgetWithdrawn() async {
        await queue.forgetHandedBack()
    }

    private func consume() async {
        while let item = await queue.pop() {
            switch await deliver(item) {
            case .failure(let failure) where failure.isRetryable && withdrawing.load(ordering: .relaxed):
                await queue.handBack(item)
                continue
            case .failure(let failure):
                if failure.isRetryable, stopping.load(ordering: .relaxed), item.record != nil {
                    await queue.keepOnDisk(item)  // delivered after the next start
                    continue
                }
                reporter.withLock { $0 }?.failed(item.payload.spanCount)
                logger.warning("dropping a batch", metadata: ["exporter": "\(id)", "spans": "\(item.payload.spanCount)",
                                                             "error": "\(failure)"])
            case .success(let result):
                count(result, of: item.payload.spanCount)
            }
            await queue.finished(item)
        }
    }

    /// Counts a delivered batch: its spans are sent but for those the backend rejected (or the translation
    /// left out), which are failed. The OTLP specification: such a response is success, and the rejected
    /// part must not be retried.
    private func count(_ result: SendResult, of spans: Int) {
        let rejected = min(max(result.rejectedSpans, 0), spans)
        let delivery = reporter.withLock { $0 }
        delivery?.delivered(spans - rejected)
        guard rejected > 0 || !result.errorMessage.isEmpty else { return }
        if rejected > 0 { delivery?.failed(rejected) }
        let now = ContinuousClock.now
        let line: (spans: Int, message: String)? = rejections.withLock { log in
            log.spans += rejected
            guard log.next.map({ now >= $0 }) ?? true else { return nil }
            defer {
                log.spans = 0
                log.next = now + Self.rejectionLogInterval
            }
            return (log.spans, result.errorMessage)
        }
        if let line {
            // One line per interval, never one per batch; the count covers the whole interval.
            logger.warning("spans of delivered batches were not accepted; counted as failed", metadata: [
                "exporter": "\(id)", "rejected_spans": "\(line.spans)", "error_message": "\(line.message)",
            ])
        }
    }

    /// Sends with retries; what the backend accepted, else the error that ended the attempts.
    private func deliver(_ item: QueuedBatch) async -> Result<SendResult, ExportError> {
        let started = ContinuousClock.now
        var attempt = 0
        while true {
            do {
                return .success(try await sender.send(item.payload))
            } catch {
                guard error.isRetryable, retry.enabled, !stopping.load(ordering: .relaxed), !Task.isCancelled else { return .failure(error) }
                attempt += 1
                let delay = retry.delay(attempt: attempt, random: Double.random(in: 0..<1), retryAfter: error.retryAfter)
                if retry.maxElapsedTime > .zero, ContinuousClock.now - started + delay > retry.maxElapsedTime {
                    return .failure(ExportError.permanent("gave up after \(attempt) attempts over max_elapsed_time: \(error.reason)"))
                }
                retriedSpans.increment(by: Int64(item.payload.spanCount))
                do {
                    try await Task.sleep(for: delay)
                } catch {
                    return .failure(ExportError.retryable("shutting down"))
                }
            }
        }
    }
}

/// Backend rejections not yet logged, and when the next line may be written.
struct RejectionLog {
    /// Spans left out since the last line.
    var spans = 0
    /// When the next line may be written; nil before the first.
    var next: ContinuousClock.Instant?
}

/// One queued batch and, with storage, its record on disk.
struct QueuedBatch: Sendable {
    var payload: SpanBatchPayload
    var record: UInt64?
}

/// The bounded queue itself: batches in memory and, with storage, each also a record of a
/// `DurableLog`, written before `push` returns and removed once the batch is done.
actor ExportQueue {
    private let capacity: Int
    /// Count spans against the capacity (`sizer: items`) instead of batches.
    private let countsSpans: Bool
    /// Units held, queued and in flight.
    private var used = 0
    private let storage: URL?
    private var items: Deque<QueuedBatch> = []
    private var inFlight = 0
    private var closed = false
    private var waitingConsumers: [CheckedContinuation<QueuedBatch?, Never>] = []
    private var waitingProducers: [CheckedContinuation<Void, Never>] = []
    private let size = Mutex(0)
    /// The disk queue once opened; in a lock so the gauges can read it without waiting for the actor.
    private let persisted = Mutex<DurableLog?>(nil)
    private var log: DurableLog? { persisted.withLock { $0 } }

    init(capacity: Int, countsSpans: Bool = false, storage: URL?) {
        self.capacity = capacity
        self.countsSpans = countsSpans
        self.storage = storage
    }

    /// What is queued (in the sizer's unit) and bytes on disk, readable without waiting for the actor.
    nonisolated var gauges: (Int, Int) {
        (size.withLock { $0 }, persisted.withLock { $0 }?.usage.bytes ?? 0)
    }

    /// Opens the storage and loads the batches an earlier run left there, oldest first; returns how many.
    func recover() async throws -> Int {
        guard let storage else { return 0 }
        let log = DurableLog.otlp(directory: storage)
        persisted.withLock { $0 = log }
        let recovered = try await log.open()
        for (sequence, batch) in recovered {
            let payload = SpanBatchPayload(batch)
            used += cost(payload.spanCount)
            items.append(QueuedBatch(payload: payload, record: sequence))
        }
        updateCounts()
        return recovered.count
    }

    /// Queues a batch, waiting while the queue is full; with storage, writes it to disk first.
    func push(_ payload: SpanBatchPayload) async throws {
        let cost = self.cost(payload.spanCount)
        // Wait for room; a batch larger than the whole queue still goes in alone.
        while used > 0, used + cost > capacity, !closed {
            await withCheckedContinuation { waitingProducers.append($0) }
        }
        guard !closed else { throw ExportError.permanent("the exporter is shutting down") }
        used += cost
        var item = QueuedBatch(payload: payload, record: nil)
        if let log {
            do {
                item.record = try await log.append(payload.batch)
            } catch {
                used -= cost
                if !waitingProducers.isEmpty { waitingProducers.removeFirst().resume() }
                throw error
            }
        }
        if !waitingConsumers.isEmpty {
            inFlight += 1
            waitingConsumers.removeFirst().resume(returning: item)
        } else {
            items.append(item)
        }
        updateCounts()
    }

    /// The next batch to send; nil once closed and empty.
    func pop() async -> QueuedBatch? {
        if let item = items.popFirst() {
            inFlight += 1
            updateCounts()
            return item
        }
        if closed { return nil }
        return await withCheckedContinuation { waitingConsumers.append($0) }
    }

    /// A popped batch is done (sent or given up): its record goes, and a waiting producer may proceed.
    func finished(_ item: QueuedBatch) async {
        if let record = item.record { await log?.remove(record) }
        release(item)
    }

    /// A popped batch stays on disk for the next start.
    func keepOnDisk(_ item: QueuedBatch) {
        release(item)
    }

    /// Batches handed back by `withdraw`, kept (with their records) until forgotten.
    private var handedBack: [QueuedBatch] = []

    /// No more pushes, and consumers get nil: takes out what is queued and not in flight.
    func withdrawQueued() {
        for item in items { used -= cost(item.payload.spanCount) }
        handedBack += items
        items.removeAll()
        close()
        updateCounts()
    }

    /// A popped batch whose send failed while withdrawing: handed back rather than dropped.
    func handBack(_ item: QueuedBatch) {
        handedBack.append(item)
        release(item)
    }

    /// What was handed back so far.
    func takeHandedBack() -> [QueuedBatch] { handedBack }

    /// Removes the disk records of the batches handed back.
    func forgetHandedBack() async {
        for item in handedBack {
            if let record = item.record { await log?.remove(record) }
        }
        handedBack.removeAll()
    }

    /// No more pushes; consumers drain what is queued, then get nil.
    func close() {
        closed = true
        for consumer in waitingConsumers { consumer.resume(returning: nil) }
        waitingConsumers.removeAll()
        for producer in waitingProducers { producer.resume() }
        waitingProducers.removeAll()
    }

    /// After the consumers stopped: stops the disk queue's thread (its records stay for the next start).
    func closeStorage() async {
        await log?.close()
    }

    /// After the consumers stopped: drops what is still queued in memory only, returning its spans;
    /// persisted batches stay on disk.
    func abandonUnpersisted() -> Int {
        let spans = items.filter { $0.record == nil }.reduce(0) { $0 + $1.payload.spanCount }
        for item in items { used -= cost(item.payload.spanCount) }
        items.removeAll()
        updateCounts()
        return spans
    }

    private func cost(_ spans: Int) -> Int { countsSpans ? max(spans, 1) : 1 }

    private func release(_ item: QueuedBatch) {
        used -= cost(item.payload.spanCount)
        inFlight -= 1
        if !waitingProducers.isEmpty { waitingProducers.removeFirst().resume() }
        updateCounts()
    }

    private func updateCounts() {
        let held = countsSpans ? used : items.count + inFlight
        size.withLock { $0 = held }
    }
}
