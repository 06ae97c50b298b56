import HTTP2
import NIOCore
import Pipeline
import TraceModel
import TraceWire

/// OTLP over gRPC for traces: `opentelemetry.proto.collector.trace.v1.TraceService/Export`, with the
/// status codes the OTLP specification asks for: INVALID_ARGUMENT for undecodable data,
/// RESOURCE_EXHAUSTED over the size limit, UNAVAILABLE when the pipeline is full (so clients retry),
/// UNIMPLEMENTED for other methods and encodings.
struct OTLPGRPCService: GRPCUnaryService {
    static let exportPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

    let maxReceiveMessageSize: Int
    let sink: any BatchSink
    let metrics: OTLPReceiverMetrics
    /// The tokens a call must present in its `authorization` metadata; nil lets every call in.
    let tokens: BearerTokens?
    private let codecs: PerEventLoopCodecs

    init(maxReceiveMessageSize: Int, sink: any BatchSink, group: any EventLoopGroup, metrics: OTLPReceiverMetrics,
         tokens: BearerTokens? = nil) {
        self.maxReceiveMessageSize = maxReceiveMessageSize
        self.sink = sink
        self.metrics = metrics
        self.tokens = tokens
        codecs = PerEventLoopCodecs(group: group)
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

    func handle(path: String, message: [UInt8], encoding: String?, eventLoop: any EventLoop) -> GRPCResponse {
        var bytes = message
        if let encoding {
            guard encoding == "gzip" else {
                return answer(GRPCResponse(status: .unimplemented, message: "grpc-encoding \(encoding) is not supported; use gzip or identity"))
            }
            do {
                var inflated = try Gzip.inflate(ByteBuffer(bytes: message), limit: maxReceiveMessageSize)
                bytes = inflated.readBytes(length: inflated.readableBytes) ?? []
            } catch .tooLarge(let limit) {
                return answer(GRPCResponse(status: .resourceExhausted, message: "decompressed message exceeds max_recv_msg_size (\(limit) bytes)"))
            } catch {
                metrics.decodeFailed("gzip")
                return answer(GRPCResponse(status: .invalidArgument, message: "message is not valid gzip"))
            }
        }
        // A full pipeline refuses at once, without decoding what it cannot take.
        guard !sink.isFull else { return answer(GRPCResponse(status: .unavailable, message: "the pipeline is full; retry later")) }
        let codec = codecs.codec(on: eventLoop)
        var batch: SpanBatch
        do {
            batch = try bytes.withUnsafeBytes { try codec.decodeRequest($0) }
        } catch {
            metrics.decodeFailed("protobuf")
            return answer(GRPCResponse(status: .invalidArgument, message: "cannot decode ExportTraceServiceRequest: \(error)"))
        }
        let rejected = SpanValidation.dropInvalidSpans(&batch)
        if rejected > 0 { metrics.refusedSpans.increment(by: Int64(rejected)) }
        let accepted = batch.spanCount
        if accepted > 0 {
            guard sink.offer(batch) else {
                metrics.refusedSpans.increment(by: Int64(accepted))
                return answer(GRPCResponse(status: .unavailable, message: "the pipeline is full; retry later"))
            }
            metrics.acceptedSpans.increment(by: Int64(accepted))
        }
        let body = codec.encodeResponse(rejectedSpans: rejected, errorMessage: rejected > 0 ? SpanValidation.rejectionMessage(rejected) : "")
        return answer(GRPCResponse(status: .ok, body: body))
    }

    private func answer(_ response: GRPCResponse) -> GRPCResponse {
        metrics.answered(response.status.description)
        return response
    }
}

/// One protobuf codec (and its arena) per event loop, created on first use there: decoding never
/// contends and arena memory stays per thread.
struct PerEventLoopCodecs: Sendable {
    private let boxes: [ObjectIdentifier: NIOLoopBoundBox<OTLPProtobufCodec?>]

    init(group: any EventLoopGroup) {
        var boxes: [ObjectIdentifier: NIOLoopBoundBox<OTLPProtobufCodec?>] = [:]
        for loop in group.makeIterator() {
            boxes[ObjectIdentifier(loop)] = .makeEmptyBox(valueType: OTLPProtobufCodec.self, eventLoop: loop)
        }
        self.boxes = boxes
    }

    /// The codec of `eventLoop`; call on that loop.
    func codec(on eventLoop: any EventLoop) -> OTLPProtobufCodec {
        guard let box = boxes[ObjectIdentifier(eventLoop)] else { return OTLPProtobufCodec(initialArenaCapacity: 4096) }
        if let codec = box.value { return codec }
        let codec = OTLPProtobufCodec(initialArenaCapacity: 256 << 10)
        box.value = codec
        return codec
    }
}
