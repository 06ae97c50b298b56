import Logging
import Pipeline
import Synchronization
import Testing
import TraceModel
import TraceWire
@testable import Exporters

/// A backend that accepts every request but rejects `rejected` spans of each, as OTLP's partial success.
final class PartiallyRejectingSender: BatchSender {
    let rejected: Int
    let calls = Atomic<Int>(0)

    init(rejected: Int) {
        self.rejected = rejected
    }

    func send(_ payload: SpanBatchPayload) async throws(ExportError) -> SendResult {
        calls.add(1, ordering: .relaxed)
        return SendResult(rejectedSpans: rejected, errorMessage: "span name too long")
    }

    func shutdown() async {}
}

/// Keeps every log message an exporter writes.
final class ExporterLogLines: Sendable {
    let messages = Mutex<[String]>([])
    var logger: Logger { Logger(label: "test") { _ in Handler(lines: self) } }

    struct Handler: LogHandler {
        let lines: ExporterLogLines
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            let fields = (metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            lines.messages.withLock { $0.append("\(message) \(fields)") }
        }
    }
}

@Suite("OTLP partial success")
struct PartialSuccessTests {
    @Test("rejected spans of an accepted request count as failed, the rest as sent, and are not retried")
    func countsRejected() async throws {
        for queued in [true, false] {
            let metrics = SelfMetrics()
            let sender = PartiallyRejectingSender(rejected: 2)
            var queue = QueueConfiguration()
            queue.enabled = queued
            let lines = ExporterLogLines()
            let exporter = QueuedExporter(id: ComponentID("otlp"), sender: sender, queue: queue, retry: fastRetry(),
                                          metrics: metrics, logger: lines.logger)
            let (delivery, tally) = reporter(metrics)
            #expect(exporter.reportsDelivery(to: delivery), "the exporter counts the split itself (queued: \(queued))")
            try await exporter.start()
            try await exporter.export(spans(5))
            try await exporter.export(spans(5, high: 2))
            await exporter.shutdown()
            #expect(sender.calls.load(ordering: .relaxed) == 2, "queued: \(queued)")
            #expect(tally.sent.load(ordering: .relaxed) == 6, "queued: \(queued)")
            #expect(tally.failed.load(ordering: .relaxed) == 4, "queued: \(queued)")
            // One summarised line per interval, with the backend's error_message; not one per request.
            let logged = lines.messages.withLock { $0 }.filter { $0.contains("rejected_spans=") }
            #expect(logged.count == 1, "\(logged)")
            #expect(logged.first?.contains("span name too long") == true)
            #expect(logged.first?.contains("rejected_spans=2") == true)
        }
    }

    @Test("a backend claiming more rejections than the batch held fails only the batch")
    func clamped() async throws {
        let metrics = SelfMetrics()
        var queue = QueueConfiguration()
        queue.enabled = false
        let exporter = QueuedExporter(id: ComponentID("otlp"), sender: PartiallyRejectingSender(rejected: 50), queue: queue,
                                      retry: fastRetry(), metrics: metrics, logger: Logger(label: "test"))
        let (delivery, tally) = reporter(metrics)
        _ = exporter.reportsDelivery(to: delivery)
        try await exporter.export(spans(3))
        await exporter.shutdown()
        #expect(tally.sent.load(ordering: .relaxed) == 0)
        #expect(tally.failed.load(ordering: .relaxed) == 3)
    }

    @Test("an ExportTraceServiceResponse is read as protobuf or OTLP/JSON; an empty or unreadable body is all accepted")
    func readsResponses() {
        // ExportTraceServiceResponse { partial_success (1) { rejected_spans (1) = 3, error_message (2) = "bad" } },
        // written out by hand from trace_service.proto's field numbers.
        let protobuf: [UInt8] = [0x0A, 0x07, 0x08, 0x03, 0x12, 0x03, 0x62, 0x61, 0x64]
        #expect(OTLPPartialSuccess.read(protobuf, json: false) == SendResult(rejectedSpans: 3, errorMessage: "bad"))
        let json = Array(#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"bad"}}"#.utf8)
        #expect(OTLPPartialSuccess.readHTTP(json, contentType: "application/json", requestWasJSON: false)
            == SendResult(rejectedSpans: 3, errorMessage: "bad"))
        #expect(OTLPPartialSuccess.readHTTP(protobuf, contentType: nil, requestWasJSON: false).rejectedSpans == 3)
        #expect(OTLPPartialSuccess.read([], json: false) == .accepted)
        #expect(OTLPPartialSuccess.read(Array("{}".utf8), json: true) == .accepted)
        #expect(OTLPPartialSuccess.read([0xFF, 0xFF], json: false) == .accepted)
    }
}

@Suite("spans that cannot be mapped (exporter-mappings §0.4)")
struct UnmappableSpanTests {
    static let batch = SpanBatch(resourceSpans: [ResourceSpans(
        resource: Resource(attributes: [Attribute("service.name", "a")]),
        scopeSpans: [ScopeSpans(spans: [
            Span(traceID: TraceID(high: 1, low: 1), spanID: SpanID(1), name: "valid"),
            Span(traceID: TraceID(high: 0, low: 0), spanID: SpanID(2), name: "all-zero trace id"),
            Span(traceID: TraceID(high: 1, low: 1), spanID: SpanID(0), name: "all-zero span id"),
        ])])])

    @Test("Zipkin and Jaeger leave out spans with an all-zero trace or span id, and the exporter counts them failed")
    func leftOutAndCounted() async throws {
        #expect(ZipkinTranslator.spans(from: Self.batch).map(\.name) == ["valid"])
        #expect(JaegerTranslator.batches(from: Self.batch).flatMap(\.spans).map(\.operationName) == ["valid"])
        let result = SendResult.unmappable(SpanBatchPayload(Self.batch))
        #expect(result.rejectedSpans == 2)
        #expect(SendResult.unmappable(SpanBatchPayload(spans(3))) == .accepted)

        // Through the queue: the valid span is sent, the two others failed.
        final class TranslatingSender: BatchSender {
            func send(_ payload: SpanBatchPayload) async throws(ExportError) -> SendResult { .unmappable(payload) }
            func shutdown() async {}
        }
        let metrics = SelfMetrics()
        let exporter = QueuedExporter(id: ComponentID("zipkin"), sender: TranslatingSender(), queue: QueueConfiguration(),
                                      retry: fastRetry(), metrics: metrics, logger: Logger(label: "test"))
        let (delivery, tally) = reporter(metrics)
        _ = exporter.reportsDelivery(to: delivery)
        try await exporter.start()
        try await exporter.export(Self.batch)
        await exporter.shutdown()
        #expect(tally.sent.load(ordering: .relaxed) == 1)
        #expect(tally.failed.load(ordering: .relaxed) == 2)
    }
}
