import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import Pipeline
import Testing
import TraceModel
import TraceWire
@testable import Receivers

/// An offload that counts what it is given and runs it at once, on the caller's thread.
final class RecordingOffload: Sendable {
    let runs = NIOLockedValueBox(0)

    var offload: IngestOffload {
        IngestOffload { [runs] eventLoop, work in
            runs.withLockedValue { $0 += 1 }
            return eventLoop.makeSucceededFuture(work())
        }
    }
}

@Suite("TraceIngest: the one OTLP ingest path")
struct TraceIngestTests {
    let loop = EmbeddedEventLoop()
    let valid = Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), name: "ok")

    func ingest(_ sink: RecordingSink, limit: Int = 1 << 20, offload: IngestOffload = RecordingOffload().offload,
                metrics: SelfMetrics = SelfMetrics()) -> TraceIngest {
        TraceIngest(maxBodySize: limit, sink: sink, metrics: OTLPReceiverMetrics(receiver: "otlp", transport: "http", metrics: metrics),
                    group: loop, offload: offload)
    }

    func batch(_ spans: [Span]) -> SpanBatch {
        SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: spans)])])
    }

    func protobuf(_ spans: [Span]) -> TraceIngest.Body {
        .bytes(OTLPProtobufCodec().encodeRequest(batch(spans)))
    }

    /// A span whose one attribute makes the encoded request about `bytes` long.
    func span(ofSize bytes: Int) -> Span {
        var span = valid
        span.attributes = [Attribute("blob", .string(String(repeating: "z", count: bytes)))]
        return span
    }

    func run(_ ingest: TraceIngest, _ body: TraceIngest.Body, _ format: TraceIngest.Format = .protobuf,
             _ compression: TraceIngest.Compression = .identity) throws -> IngestOutcome {
        try ingest.ingest(body, format: format, compression: compression, on: loop).completedValue()
    }

    @Test("a valid request, protobuf or JSON, is accepted whole and reaches the sink")
    func accepted() throws {
        let sink = RecordingSink()
        let metrics = SelfMetrics()
        let ingest = ingest(sink, metrics: metrics)
        #expect(try run(ingest, protobuf([valid])) == .accepted(rejectedSpans: 0))
        #expect(try run(ingest, .bytes(OTLPJSON.encodeRequest(batch([valid]))), .json) == .accepted(rejectedSpans: 0))
        #expect(sink.received.withLock { $0 } == [batch([valid]), batch([valid])])
        #expect(metrics.value("agenttrace_receiver_accepted_spans_total", ["transport": "http"]) == 2)
    }

    @Test("invalid ids (all-zero, as the trace API calls invalid) are dropped and counted as partial success")
    func partialSuccess() throws {
        let sink = RecordingSink()
        let metrics = SelfMetrics()
        let outcome = try run(ingest(sink, metrics: metrics),
                              protobuf([valid, Span(traceID: .zero, spanID: SpanID(4)), Span(traceID: TraceID(high: 1, low: 2), spanID: .zero)]))
        #expect(outcome == .accepted(rejectedSpans: 2))
        #expect(!outcome.partialSuccessMessage.isEmpty)
        #expect(sink.received.withLock { $0.first?.spanCount } == 1)
        #expect(metrics.value("agenttrace_receiver_refused_spans_total", [:]) == 2)
        #expect(metrics.value("agenttrace_receiver_accepted_spans_total", [:]) == 1)
    }

    @Test("a full pipeline refuses before decoding: even garbage is pipelineFull, with no decode error counted")
    func fullBeforeDecode() throws {
        let metrics = SelfMetrics()
        #expect(try run(ingest(RecordingSink(full: true), metrics: metrics), .bytes([0xFF, 0xFF])) == .pipelineFull)
        #expect(metrics.value("agenttrace_receiver_decode_errors_total", ["encoding": "protobuf"]) == 0)
    }

    @Test("a full pipeline that holds requests: one is taken as soon as room frees, another refused at the deadline, undecoded")
    func heldForRoom() async throws {
        let queue = BoundedBatchQueue(maxBatches: 1, maxSpans: 1000, waitWhenFull: .seconds(2))
        let metrics = SelfMetrics()
        let ingest = TraceIngest(maxBodySize: 1 << 20, sink: queue,
                                 metrics: OTLPReceiverMetrics(receiver: "otlp", transport: "http", metrics: metrics),
                                 group: loop, offload: RecordingOffload().offload)
        guard case .accepted = queue.offer(batch([valid]), on: loop) else { Issue.record("room for one"); return }
        let held = ingest.ingest(protobuf([valid]), format: .protobuf, compression: .identity, on: loop)
        #expect(throws: NotCompleted.self) { try held.completedValue() }
        _ = await queue.next()
        loop.run()
        #expect(try held.completedValue() == .accepted(rejectedSpans: 0))
        #expect(queue.count == 1)

        let refused = ingest.ingest(.bytes([0xFF, 0xFF]), format: .protobuf, compression: .identity, on: loop)
        loop.advanceTime(by: .milliseconds(1999))
        #expect(throws: NotCompleted.self) { try refused.completedValue() }
        loop.advanceTime(by: .milliseconds(1))
        #expect(try refused.completedValue() == .pipelineFull)
        #expect(metrics.value("agenttrace_receiver_held_requests_total", [:]) == 2)
        #expect(metrics.value("agenttrace_receiver_decode_errors_total", ["encoding": "protobuf"]) == 0)
        #expect(metrics.value("agenttrace_receiver_accepted_spans_total", [:]) == 1)
    }

    @Test("an offer the pipeline refuses is pipelineFull, and its spans count as refused")
    func offerRefused() throws {
        let metrics = SelfMetrics()
        #expect(try run(ingest(RecordingSink(accepting: false), metrics: metrics), protobuf([valid])) == .pipelineFull)
        #expect(metrics.value("agenttrace_receiver_refused_spans_total", [:]) == 1)
    }

    @Test("undecodable protobuf and JSON are bad data, counted by encoding")
    func undecodable() throws {
        let metrics = SelfMetrics()
        let ingest = ingest(RecordingSink(), metrics: metrics)
        guard case .badData(.undecodable) = try run(ingest, .bytes([0xFF, 0xFF])) else { Issue.record("protobuf"); return }
        guard case .badData(.undecodable) = try run(ingest, .buffer(ByteBuffer(string: "{")), .json) else { Issue.record("json"); return }
        #expect(metrics.value("agenttrace_receiver_decode_errors_total", ["encoding": "protobuf"]) == 1)
        #expect(metrics.value("agenttrace_receiver_decode_errors_total", ["encoding": "json"]) == 1)
    }

    @Test("gzip: inflated before decoding; corrupt is bad data; the limit applies after decompression")
    func gzip() throws {
        let metrics = SelfMetrics()
        let ingest = ingest(RecordingSink(), limit: 64 << 10, metrics: metrics)
        let small = try Gzip.deflate(ByteBuffer(bytes: OTLPProtobufCodec().encodeRequest(batch([valid]))))
        #expect(try run(ingest, .buffer(small), .protobuf, .gzip) == .accepted(rejectedSpans: 0))
        #expect(try run(ingest, .buffer(ByteBuffer(string: "not gzip")), .protobuf, .gzip) == .badData(.corruptGzip))
        #expect(metrics.value("agenttrace_receiver_decode_errors_total", ["encoding": "gzip"]) == 1)
        // 1 MiB of zeros compresses to about 1 KiB: under the limit on the wire, far over it inflated.
        let bomb = try Gzip.deflate(ByteBuffer(bytes: [UInt8](repeating: 0, count: 1 << 20)))
        #expect(bomb.readableBytes < 64 << 10)
        #expect(try run(ingest, .buffer(bomb), .protobuf, .gzip) == .tooLarge(limit: 64 << 10))
    }

    @Test("small bodies stay on the event loop; bodies over 256 KiB go to the offload")
    func offloadsLargeBodies() throws {
        let recorder = RecordingOffload()
        let sink = RecordingSink()
        let ingest = ingest(sink, limit: 4 << 20, offload: recorder.offload)
        #expect(ingest.offloadThreshold == 256 << 10)
        #expect(try run(ingest, protobuf([valid])) == .accepted(rejectedSpans: 0))
        #expect(recorder.runs.withLockedValue { $0 } == 0)
        let large = protobuf([span(ofSize: 300 << 10)])
        #expect(large.count > 256 << 10)
        #expect(try run(ingest, large) == .accepted(rejectedSpans: 0))
        #expect(recorder.runs.withLockedValue { $0 } == 1)
        #expect(sink.received.withLock { $0.count } == 2)
    }

    @Test("a small gzip body that inflates past 256 KiB is decoded off the loop too")
    func offloadsLargeInflatedBodies() throws {
        let recorder = RecordingOffload()
        let ingest = ingest(RecordingSink(), limit: 4 << 20, offload: recorder.offload)
        let compressed = try Gzip.deflate(ByteBuffer(bytes: OTLPProtobufCodec().encodeRequest(batch([span(ofSize: 1 << 20)]))))
        #expect(compressed.readableBytes < 256 << 10)
        #expect(try run(ingest, .buffer(compressed), .protobuf, .gzip) == .accepted(rejectedSpans: 0))
        #expect(recorder.runs.withLockedValue { $0 } == 1)
    }

    @Test("with NIO's thread pool, a large body is decoded off the loop and the outcome completes on the loop")
    func threadPool() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let loop = group.next()
        let decodedOnLoop = NIOLockedValueBox<Bool?>(nil)
        let offload = IngestOffload { eventLoop, work in
            IngestOffload.threadPool(pool).run(eventLoop) {
                decodedOnLoop.withLockedValue { $0 = eventLoop.inEventLoop }
                return work()
            }
        }
        let sink = RecordingSink()
        let ingest = TraceIngest(maxBodySize: 4 << 20, sink: sink,
                                 metrics: OTLPReceiverMetrics(receiver: "otlp", transport: "grpc", metrics: SelfMetrics()),
                                 group: group, offload: offload)
        let large = protobuf([span(ofSize: 300 << 10)])
        let completedOnLoop = NIOLockedValueBox(false)
        let outcome = try await loop.flatSubmit {
            ingest.ingest(large, format: .protobuf, compression: .identity, on: loop).always { _ in
                completedOnLoop.withLockedValue { $0 = loop.inEventLoop }
            }
        }.get()
        #expect(outcome == .accepted(rejectedSpans: 0))
        #expect(decodedOnLoop.withLockedValue { $0 } == false)
        #expect(completedOnLoop.withLockedValue { $0 })
        #expect(sink.received.withLock { $0.first?.spanCount } == 1)
        try await pool.shutdownGracefully()
        try await group.shutdownGracefully()
    }
}
