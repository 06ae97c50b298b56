import Foundation
import HTTP2
import Logging
import Pipeline
import Prometheus
import Synchronization
import Testing
import TestSupport
import TraceModel
@testable import Exporters

/// A backend double whose answers are scripted per call.
final class ScriptedSender: BatchSender {
    let answers: Mutex<[ExportError?]>
    let received = Mutex<[SpanBatchPayload]>([])

    init(_ answers: [ExportError?]) {
        self.answers = Mutex(answers)
    }

    func send(_ payload: SpanBatchPayload) async throws(ExportError) -> SendResult {
        received.withLock { $0.append(payload) }
        let answer = answers.withLock { $0.isEmpty ? nil : $0.removeFirst() }
        if let answer { throw answer }
        return .accepted
    }

    func shutdown() async {}
}

/// A backend that answers retryably until `healthy` is set.
final class SwitchableSender: BatchSender {
    let healthy = Atomic<Bool>(false)
    let attempts = Atomic<Int>(0)

    func send(_ payload: SpanBatchPayload) async throws(ExportError) -> SendResult {
        attempts.add(1, ordering: .relaxed)
        if !healthy.load(ordering: .sequentiallyConsistent) { throw .retryable("down") }
        return .accepted
    }

    func shutdown() async {}
}

func spans(_ count: Int, high: UInt64 = 1) -> SpanBatch {
    SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: (0..<count).map {
        Span(traceID: TraceID(high: high, low: 1), spanID: SpanID(UInt64($0 + 1)))
    })])])
}

func reporter(_ metrics: SelfMetrics) -> (DeliveryReporter, ExportTally) {
    let tally = ExportTally()
    return (DeliveryReporter(sentSpans: metrics.counter("sent", help: "s"), failedSpans: metrics.counter("failed", help: "f"), tally: tally), tally)
}

func fastRetry() -> RetryConfiguration {
    var retry = RetryConfiguration()
    retry.initialInterval = .milliseconds(1)
    retry.maxInterval = .milliseconds(5)
    retry.maxElapsedTime = .seconds(5)
    return retry
}

@Suite("queued exporter")
struct QueuedExporterTests {
    @Test("retryable failures are retried until the batch is delivered, and counted")
    func retries() async throws {
        let metrics = SelfMetrics()
        let sender = ScriptedSender([.retryable("503"), .retryable("503"), nil])
        let exporter = QueuedExporter(id: ComponentID("zipkin"), sender: sender, queue: QueueConfiguration(), retry: fastRetry(),
                                      metrics: metrics, logger: Logger(label: "test"))
        let (delivery, tally) = reporter(metrics)
        #expect(exporter.reportsDelivery(to: delivery))
        try await exporter.start()
        try await exporter.export(spans(4))
        await exporter.shutdown()
        #expect(sender.received.withLock { $0.count } == 3)
        #expect(tally.sent.load(ordering: .relaxed) == 4)
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains("agenttrace_exporter_retried_spans_total{exporter=\"zipkin\"} 8"))
    }

    @Test("a permanent failure drops the batch at once and counts it failed")
    func permanent() async throws {
        let metrics = SelfMetrics()
        let sender = ScriptedSender([.permanent("400")])
        let exporter = QueuedExporter(id: ComponentID("zipkin"), sender: sender, queue: QueueConfiguration(), retry: fastRetry(),
                                      metrics: metrics, logger: Logger(label: "test"))
        let (delivery, tally) = reporter(metrics)
        _ = exporter.reportsDelivery(to: delivery)
        try await exporter.start()
        try await exporter.export(spans(3))
        await exporter.shutdown()
        #expect(sender.received.withLock { $0.count } == 1)
        #expect(tally.failed.load(ordering: .relaxed) == 3)
    }

    @Test("max_elapsed_time ends the retries")
    func gaveUp() async throws {
        let metrics = SelfMetrics()
        let sender = ScriptedSender(Array(repeating: .retryable("down"), count: 1000))
        var retry = fastRetry()
        retry.maxElapsedTime = .milliseconds(50)
        let exporter = QueuedExporter(id: ComponentID("otlp"), sender: sender, queue: QueueConfiguration(), retry: retry,
                                      metrics: metrics, logger: Logger(label: "test"))
        let (delivery, tally) = reporter(metrics)
        _ = exporter.reportsDelivery(to: delivery)
        try await exporter.start()
        try await exporter.export(spans(2))
        await exporter.shutdown()
        #expect(tally.failed.load(ordering: .relaxed) == 2)
        #expect(sender.received.withLock { $0.count } > 1)
    }

    @Test("with storage, batches are on disk until delivered and are recovered by the next start")
    func storage() async throws {
        let directory = scratchDirectory("queue").path
        var queue = QueueConfiguration()
        queue.storage = directory
        var retry = fastRetry()
        retry.maxElapsedTime = .zero  // retry forever
        let metrics = SelfMetrics()
        let down = ScriptedSender(Array(repeating: .retryable("down"), count: 1_000_000))
        let first = QueuedExporter(id: ComponentID("otlp"), sender: down, queue: queue, retry: retry, metrics: metrics,
                                   logger: Logger(label: "test"), drainDeadline: .milliseconds(100))
        _ = first.reportsDelivery(to: reporter(metrics).0)
        try await first.start()
        try await first.export(spans(5, high: 1))
        try await first.export(spans(7, high: 2))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".otlp") }.count == 2)
        await first.shutdown()
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".otlp") }.count == 2)

        let up = ScriptedSender([])
        let second = QueuedExporter(id: ComponentID("otlp"), sender: up, queue: queue, retry: retry, metrics: SelfMetrics(),
                                    logger: Logger(label: "test"))
        let (delivery, tally) = reporter(SelfMetrics())
        _ = second.reportsDelivery(to: delivery)
        try await second.start()
        await second.shutdown()
        #expect(tally.sent.load(ordering: .relaxed) == 12)
        #expect(up.received.withLock { $0.map(\.spanCount) }.sorted() == [5, 7])
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".otlp") }.isEmpty)
    }

    @Test("a full queue makes export wait instead of dropping")
    func backpressure() async throws {
        var queue = QueueConfiguration()
        queue.queueSize = 2
        queue.numConsumers = 1
        var retry = fastRetry()
        retry.maxElapsedTime = .zero
        let sender = SwitchableSender()
        let metrics = SelfMetrics()
        let exporter = QueuedExporter(id: ComponentID("otlp"), sender: sender, queue: queue, retry: retry, metrics: metrics,
                                      logger: Logger(label: "test"))
        let (delivery, tally) = reporter(metrics)
        _ = exporter.reportsDelivery(to: delivery)
        try await exporter.start()
        try await exporter.export(spans(1))
        try await exporter.export(spans(1))
        let thirdReturned = Atomic<Bool>(false)
        let third = Task {
            try await exporter.export(spans(1))
            thirdReturned.store(true, ordering: .sequentiallyConsistent)
        }
        // The backend refuses everything until it is switched on, so the queue cannot drain: however
        // many retries we wait for, the third export must still be waiting.
        while sender.attempts.load(ordering: .relaxed) < 5 { try await Task.sleep(for: .milliseconds(5)) }
        let returnedEarly = thirdReturned.load(ordering: .sequentiallyConsistent)
        #expect(!returnedEarly, "the third export returned while the queue was full")
        #expect(tally.sent.load(ordering: .relaxed) == 0)
        sender.healthy.store(true, ordering: .sequentiallyConsistent)
        try await third.value  // it gets in once the backend recovers and the queue drains
        let returned = thirdReturned.load(ordering: .sequentiallyConsistent)
        #expect(returned)
        await exporter.shutdown()
        #expect(tally.sent.load(ordering: .relaxed) == 3)
    }

    @Test("backoff grows, caps at max_interval, jitters within the factor, and yields to Retry-After")
    func backoff() {
        var retry = RetryConfiguration()
        retry.initialInterval = .seconds(1)
        retry.maxInterval = .seconds(4)
        retry.multiplier = 2
        retry.randomizationFactor = 0.5
        #expect(retry.delay(attempt: 1, random: 0.5, retryAfter: nil) == .seconds(1))
        #expect(retry.delay(attempt: 2, random: 0.5, retryAfter: nil) == .seconds(2))
        #expect(retry.delay(attempt: 5, random: 0.5, retryAfter: nil) == .seconds(4))
        #expect(retry.delay(attempt: 1, random: 0, retryAfter: nil) == .milliseconds(500))
        #expect(retry.delay(attempt: 1, random: 0.5, retryAfter: .seconds(10)) == .seconds(10))
    }

    @Test("OTLP's retryable and permanent responses")
    func classification() {
        #expect(ExportError.forHTTPStatus(503, body: "", retryAfter: nil).isRetryable)
        #expect(ExportError.forHTTPStatus(429, body: "", retryAfter: nil).isRetryable)
        #expect(!ExportError.forHTTPStatus(400, body: "", retryAfter: nil).isRetryable)
        #expect(!ExportError.forHTTPStatus(500, body: "", retryAfter: nil).isRetryable)
        #expect(ExportError.forGRPCStatus(.unavailable, message: "", retryAfter: nil).isRetryable)
        #expect(!ExportError.forGRPCStatus(.invalidArgument, message: "", retryAfter: nil).isRetryable)
        #expect(!ExportError.forGRPCStatus(.resourceExhausted, message: "", retryAfter: nil).isRetryable)
        #expect(ExportError.forGRPCStatus(.resourceExhausted, message: "", retryAfter: .seconds(1)).isRetryable)
        #expect(RetryAfter.delay("7", now: 0) == .seconds(7))
    }
}

@Suite("queue sizer")
struct QueueSizerTests {
    @Test("sizer: items counts spans, so a few large batches fill the queue")
    func items() async throws {
        var queue = QueueConfiguration()
        queue.sizer = .items
        queue.queueSize = 10
        queue.numConsumers = 1
        var retry = fastRetry()
        retry.maxElapsedTime = .zero
        let sender = ScriptedSender(Array(repeating: .retryable("down"), count: 100))
        let metrics = SelfMetrics()
        let exporter = QueuedExporter(id: ComponentID("otlp"), sender: sender, queue: queue, retry: retry, metrics: metrics,
                                      logger: Logger(label: "test"))
        let (delivery, tally) = reporter(metrics)
        _ = exporter.reportsDelivery(to: delivery)
        try await exporter.start()
        try await exporter.export(spans(6))
        let second = Task { try await exporter.export(spans(6)) }  // 12 > 10: waits for the first to leave
        try await Task.sleep(for: .milliseconds(30))
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains("agenttrace_exporter_queue_size{exporter=\"otlp\"} 6"))
        try await second.value
        await exporter.shutdown()
        #expect(tally.sent.load(ordering: .relaxed) == 12)
    }
}
