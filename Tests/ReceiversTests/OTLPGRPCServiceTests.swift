import HTTP2
import NIOCore
import NIOEmbedded
import Pipeline
import Testing
import TraceModel
import TraceWire
@testable import Receivers

@Suite("OTLP/gRPC service")
struct OTLPGRPCServiceTests {
    let loop = EmbeddedEventLoop()

    func service(sink: RecordingSink, limit: Int = 1 << 20) -> OTLPGRPCService {
        OTLPGRPCService(maxReceiveMessageSize: limit, sink: sink, group: loop,
                        metrics: OTLPReceiverMetrics(receiver: "otlp", transport: "grpc", metrics: SelfMetrics()),
                        offload: RecordingOffload().offload)
    }

    func request(_ spans: [Span]) -> [UInt8] {
        OTLPProtobufCodec().encodeRequest(SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: spans)])]))
    }

    let valid = Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), name: "ok")

    @Test("serves only TraceService/Export")
    func paths() {
        let service = service(sink: RecordingSink())
        #expect(service.serves(path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export"))
        #expect(!service.serves(path: "/opentelemetry.proto.collector.logs.v1.LogsService/Export"))
    }

    @Test("a valid request is OK and reaches the pipeline")
    func accepted() throws {
        let sink = RecordingSink()
        let response = try service(sink: sink).handle(path: OTLPGRPCService.exportPath, message: request([valid]), encoding: nil, eventLoop: loop).completedValue()
        #expect(response.status == .ok)
        #expect(try OTLPProtobufCodec().decodeResponse(response.body).rejectedSpans == 0)
        #expect(sink.received.withLock { $0.first?.spanCount } == 1)
    }

    @Test("a full pipeline is UNAVAILABLE, so clients retry")
    func unavailable() throws {
        let response = try service(sink: RecordingSink(accepting: false))
            .handle(path: OTLPGRPCService.exportPath, message: request([valid]), encoding: nil, eventLoop: loop).completedValue()
        #expect(response.status == .unavailable)
    }

    @Test("undecodable is INVALID_ARGUMENT; unknown encodings UNIMPLEMENTED; gzip past the limit RESOURCE_EXHAUSTED")
    func errors() throws {
        let service = service(sink: RecordingSink(), limit: 1 << 16)
        #expect(try service.handle(path: OTLPGRPCService.exportPath, message: [0xFF, 0xFF], encoding: nil, eventLoop: loop).completedValue().status == .invalidArgument)
        #expect(try service.handle(path: OTLPGRPCService.exportPath, message: request([valid]), encoding: "snappy", eventLoop: loop).completedValue().status == .unimplemented)
        var huge = valid
        huge.attributes = [Attribute("blob", .string(String(repeating: "z", count: 1 << 20)))]
        let compressed = try Gzip.deflate(ByteBuffer(bytes: request([huge])))
        #expect(try service.handle(path: OTLPGRPCService.exportPath, message: Array(compressed.readableBytesView), encoding: "gzip", eventLoop: loop).completedValue().status
            == .resourceExhausted)
        let small = try Gzip.deflate(ByteBuffer(bytes: request([valid])))
        #expect(try service.handle(path: OTLPGRPCService.exportPath, message: Array(small.readableBytesView), encoding: "gzip", eventLoop: loop).completedValue().status == .ok)
    }

    @Test("invalid ids are dropped and reported as partial success")
    func partialSuccess() throws {
        let sink = RecordingSink()
        let response = try service(sink: sink).handle(path: OTLPGRPCService.exportPath,
                                                  message: request([valid, Span(traceID: .zero, spanID: SpanID(9))]), encoding: nil, eventLoop: loop).completedValue()
        #expect(response.status == .ok)
        #expect(try OTLPProtobufCodec().decodeResponse(response.body).rejectedSpans == 1)
    }
}
