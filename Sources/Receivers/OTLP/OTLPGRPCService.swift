import HTTP2
import NIOCore
import Pipeline
import TraceModel
import TraceWire

/// OTLP over gRPC for traces: `opentelemetry.proto.collector.trace.v1.TraceService/Export`. The work
/// is `TraceIngest`'s; this adapter reads `grpc-encoding` and maps the outcome to the status codes the
/// OTLP specification asks for: INVALID_ARGUMENT for undecodable data, RESOURCE_EXHAUSTED over the
/// size limit, UNAVAILABLE when the pipeline is full (so clients retry), UNIMPLEMENTED for other
/// methods and encodings.
struct OTLPGRPCService: GRPCUnaryService {
    static let exportPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

    /// The shared ingest path.
    let ingest: TraceIngest
    let metrics: OTLPReceiverMetrics
    /// The tokens a call must present in its `authorization` metadata; nil lets every call in.
    let tokens: BearerTokens?

    var maxReceiveMessageSize: Int { ingest.maxBodySize }

    init(maxReceiveMessageSize: Int, sink: any BatchSink, group: any EventLoopGroup, metrics: OTLPReceiverMetrics,
         tokens: BearerTokens? = nil, offload: IngestOffload = .threadPool()) {
        ingest = TraceIngest(maxBodySize: maxReceiveMessageSize, sink: sink, metrics: metrics, group: group, offload: offload)
        self.metrics = metrics
        self.tokens = tokens
    }

    func authenticate(headers: [HTTP2Header]) -> GRPCResponse? {
        guard let tokens else { return nil }
        let authorization = headers.first { $0.name == "authorization" }?.value
        return tokens.allows(authorization: authorization) ? nil : GRPCResponse(status: .unauthenticated, message: "missing or invalid bearer token")
    }

    func serves(path: String) -> Bool { path == Self.exportPath }

    func refused(_ response: GRPCResponse) {
        metrics.answered(response.status.description)
    }

    func handle(path: String, message: [UInt8], encoding: String?, eventLoop: any EventLoop) -> EventLoopFuture<GRPCResponse> {
        // statuscodes.md: "Compression mechanism used by client not supported at server | UNIMPLEMENTED".
        if let encoding, encoding != "gzip" {
            return eventLoop.makeSucceededFuture(answer(GRPCResponse(
                status: .unimplemented, message: "grpc-encoding \(encoding) is not supported; use gzip or identity")))
        }
        let ingest = self.ingest
        return ingest.ingest(.bytes(message), format: .protobuf, compression: encoding == nil ? .identity : .gzip, on: eventLoop)
            .map { outcome in answer(Self.response(for: outcome, codec: ingest.codec(on: eventLoop))) }
    }

    /// The gRPC answer for each outcome.
    static func response(for outcome: IngestOutcome, codec: OTLPProtobufCodec) -> GRPCResponse {
        switch outcome {
        case .accepted(let rejected):
            GRPCResponse(status: .ok, body: codec.encodeResponse(rejectedSpans: rejected, errorMessage: outcome.partialSuccessMessage))
        case .pipelineFull:
            GRPCResponse(status: .unavailable, message: "the pipeline is full; retry later")
        case .tooLarge(let limit):
            GRPCResponse(status: .resourceExhausted, message: "decompressed message exceeds max_recv_msg_size (\(limit) bytes)")
        case .badData(.corruptGzip):
            GRPCResponse(status: .invalidArgument, message: "message is not valid gzip")
        case .badData(.undecodable(let reason)):
            GRPCResponse(status: .invalidArgument, message: "cannot decode ExportTraceServiceRequest: \(reason)")
        }
    }

    private func answer(_ response: GRPCResponse) -> GRPCResponse {
        metrics.answered(response.status.description)
        return response
    }
}
