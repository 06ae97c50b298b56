import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Pipeline
import Testing
import TraceModel
import TraceWire
import HTTP1TestSupport
@testable import Receivers

/// An offload that keeps its work until the test runs it, as a thread pool would finish it later.
final class DeferredOffload: Sendable {
    let pending = NIOLockedValueBox<[(EventLoopPromise<DecodedRequest>, @Sendable () -> DecodedRequest)]>([])

    var offload: IngestOffload {
        IngestOffload { [pending] eventLoop, work in
            let promise = eventLoop.makePromise(of: DecodedRequest.self)
            pending.withLockedValue { $0.append((promise, work)) }
            return promise.futureResult
        }
    }

    /// Runs every kept piece of work and completes its future.
    func finish() {
        for (promise, work) in pending.withLockedValue({ kept in defer { kept = [] }; return kept }) { promise.succeed(work()) }
    }
}

@Suite("HTTP1RequestHandler in an EmbeddedChannel")
struct HTTP1ServerTests {
    let valid = Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), name: "ok")

    func responder(_ sink: RecordingSink, limit: Int = 1 << 20, offload: IngestOffload = RecordingOffload().offload) -> OTLPHTTPResponder {
        var configuration = OTLPHTTPConfiguration()
        configuration.maxRequestBodySize = limit
        return OTLPHTTPResponder(configuration: configuration, sink: sink, group: EmbeddedEventLoop(),
                                 metrics: OTLPReceiverMetrics(receiver: "otlp", transport: "http", metrics: SelfMetrics()), offload: offload)
    }

    func request(_ spans: [Span]) -> [UInt8] {
        OTLPProtobufCodec().encodeRequest(SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: spans)])]))
    }

    @Test("a good request is answered 200 with an empty ExportTraceServiceResponse, and its spans are taken")
    func goodRequest() throws {
        let sink = RecordingSink()
        let connection = try HTTP1Connection(responder: responder(sink))
        let responses = try connection.send(HTTP1Connection.post(request([valid])))
        #expect(responses.map(\.status) == [200])
        #expect(responses.first?.header("content-type") == "application/x-protobuf")
        #expect(responses.first?.body == [])  // proto3: a message with every field at its default encodes to nothing
        #expect(sink.received.withLock { $0.first?.spanCount } == 1)
        #expect(connection.channel.isActive)
    }

    @Test("two requests on one kept-alive connection are both answered, in order, and it stays open")
    func keepAlive() throws {
        let sink = RecordingSink()
        let connection = try HTTP1Connection(responder: responder(sink))
        #expect(try connection.send(HTTP1Connection.post(request([valid]))).map(\.status) == [200])
        let second = try connection.send(HTTP1Connection.post(Array(#"{"resourceSpans":[]}"#.utf8), type: "application/json"))
        #expect(second.map(\.status) == [200])
        #expect(second.first?.header("content-type") == "application/json")
        #expect(second.first?.header("connection") != "close")
        #expect(connection.channel.isActive)
        #expect(sink.received.withLock { $0.count } == 1)  // the empty JSON request has no span to offer
    }

    @Test("a body declared over max_request_body_size is refused 413 before it is read, and the connection closes")
    func oversized() throws {
        let connection = try HTTP1Connection(responder: responder(RecordingSink(), limit: 1024))
        let head = Array(HTTP1Connection.post([], contentLength: 4096))
        let responses = try connection.send(head)
        #expect(responses.map(\.status) == [413])
        #expect(responses.first?.header("connection") == "close")
        // google.rpc.Status, code RESOURCE_EXHAUSTED (8 in google/rpc/code.proto).
        #expect(try OTLPProtobufCodec().decodeStatus(responses.first?.body ?? []).code == 8)
        _ = try connection.send([UInt8](repeating: 0, count: 4096))  // the rest is drained, then the connection closes
        #expect(!connection.channel.isActive)
    }

    @Test("malformed: an undecodable body is 400 with google.rpc.Status INVALID_ARGUMENT; broken HTTP is 400 with connection: close")
    func malformed() throws {
        let connection = try HTTP1Connection(responder: responder(RecordingSink()))
        let undecodable = try connection.send(HTTP1Connection.post([0xFF, 0xFF]))
        #expect(undecodable.map(\.status) == [400])
        #expect(try OTLPProtobufCodec().decodeStatus(undecodable.first?.body ?? []).code == 3)
        #expect(connection.channel.isActive)

        let broken = try HTTP1Connection(responder: responder(RecordingSink()))
        _ = try? broken.send(Array("NOT HTTP AT ALL\r\n\r\n".utf8))  // the parser error also reaches the pipeline's end
        let refusal = try broken.responses()
        #expect(refusal.map(\.status) == [400])
        #expect(refusal.first?.header("connection")?.lowercased() == "close")
    }

    @Test("a body over 256 KiB is answered when the off-loop decode finishes, on the same connection")
    func deferredAnswer() throws {
        let sink = RecordingSink()
        let offload = DeferredOffload()
        let connection = try HTTP1Connection(responder: responder(sink, limit: 4 << 20, offload: offload.offload))
        var big = valid
        big.attributes = [Attribute("blob", .string(String(repeating: "z", count: 300 << 10)))]
        #expect(try connection.send(HTTP1Connection.post(request([big]))).isEmpty)
        offload.finish()
        #expect(try connection.responses().map(\.status) == [200])
        #expect(sink.received.withLock { $0.count } == 1)
        #expect(connection.channel.isActive)
    }

    @Test("a full pipeline refuses on the head: 503 with Retry-After once the body has passed, no decode, the connection kept")
    func refusedOnHead() throws {
        let sink = RecordingSink(accepting: false, full: true)
        let offload = DeferredOffload()
        let connection = try HTTP1Connection(responder: responder(sink, limit: 4 << 20, offload: offload.offload))
        var big = valid
        big.attributes = [Attribute("blob", .string(String(repeating: "z", count: 300 << 10)))]
        // A body that would be decoded off the loop: refused before any of it is gathered, nothing is handed over.
        let responses = try connection.send(HTTP1Connection.post(request([big])) + HTTP1Connection.post(request([valid])))
        #expect(responses.map(\.status) == [503, 503])
        #expect(responses.first?.header("retry-after") == "1")
        #expect(offload.pending.withLockedValue { $0.isEmpty })
        #expect(connection.channel.isActive)
    }
}
