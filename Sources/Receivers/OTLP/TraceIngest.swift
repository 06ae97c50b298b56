import NIOCore
import NIOPosix
import Pipeline
import TraceModel
import TraceWire

/// What became of one OTLP export request, whatever transport carried it. The transports map it to
/// their answer (an HTTP status with a `google.rpc.Status` body, or a `grpc-status`) and nothing else.
public enum IngestOutcome: Sendable, Equatable {
    /// Taken: the valid spans are in the pipeline; `rejectedSpans` invalid ones were dropped and are
    /// reported as OTLP partial success ("the server MUST initialize the `partial_success` field and MUST
    /// set the `rejected_<signal>` with the number of items it rejected", trace_service.proto).
    case accepted(rejectedSpans: Int)
    /// The pipeline cannot take more now, so the sender should retry later; nothing was taken.
    case pipelineFull
    /// The body inflates past `limit` bytes (the limit applies after decompression).
    case tooLarge(limit: Int)
    /// The body cannot be read.
    case badData(IngestBadData)

    /// The OTLP `partial_success.error_message` for an accepted request; empty when every span was taken.
    public var partialSuccessMessage: String {
        guard case .accepted(let rejected) = self, rejected > 0 else { return "" }
        return SpanValidation.rejectionMessage(rejected)
    }
}

/// Why a body could not be read.
public enum IngestBadData: Sendable, Equatable {
    /// `gzip` was declared but the body is not a gzip stream.
    case corruptGzip
    /// Not an `ExportTraceServiceRequest` in the declared format; `reason` says where decoding stopped.
    case undecodable(reason: String)
}

/// A request body read as far as the pipeline: a batch to offer, or already an outcome.
public enum DecodedRequest: Sendable {
    /// Valid spans to offer; `rejectedSpans` invalid ones were dropped.
    case batch(SpanBatch, rejectedSpans: Int)
    /// Nothing to offer: the request's outcome is known.
    case finished(IngestOutcome)
}

/// Where large bodies are inflated and decoded: off the event loop, so one big request does not stall
/// every other connection on the same loop. The result comes back on the loop it was asked from.
public struct IngestOffload: Sendable {
    /// Runs `work` away from `eventLoop`; the future completes on `eventLoop`.
    public let run: @Sendable (_ eventLoop: any EventLoop, _ work: @escaping @Sendable () -> DecodedRequest) -> EventLoopFuture<DecodedRequest>

    /// An offload with its own way of running work (tests inject one that records and runs inline).
    public init(run: @escaping @Sendable (any EventLoop, @escaping @Sendable () -> DecodedRequest) -> EventLoopFuture<DecodedRequest>) {
        self.run = run
    }

    /// Runs on `pool`'s threads (NIO's blocking-work pool; its futures complete on the given loop).
    public static func threadPool(_ pool: NIOThreadPool = .singleton) -> IngestOffload {
        IngestOffload { eventLoop, work in pool.runIfActive(eventLoop: eventLoop, work) }
    }
}

/// The one ingest path of the `otlp` receiver, shared by OTLP/HTTP and OTLP/gRPC as the Collector's
/// otlpreceiver shares its `internal/trace` Receiver between its gRPC and HTTP handlers: inflate (the
/// size limit applies after decompression), hold the request while the pipeline is full (up to its
/// `waitWhenFull`, then refuse), decode
/// (protobuf or JSON), drop invalid spans, offer the batch, and count spans and decode errors in the
/// receiver metrics. Counting requests by answer is left to the transport, which knows the answer.
///
/// Bodies up to `offloadThreshold` bytes, on the wire and once inflated, are handled inline on the
/// calling event loop (cheaper than a thread hop); larger ones on `offload`.
public struct TraceIngest: Sendable {
    /// How a request body is encoded.
    public enum Format: Sendable, Equatable {
        /// `application/x-protobuf` and every gRPC message.
        case protobuf
        /// `application/json` (OTLP/JSON).
        case json

        /// The `agenttrace_receiver_decode_errors_total{encoding}` label.
        var metricLabel: String { self == .protobuf ? "protobuf" : "json" }
    }

    /// How a request body is compressed (`Content-Encoding`, `grpc-encoding`).
    public enum Compression: Sendable, Equatable {
        case identity, gzip

        /// The compression called `name` (case-insensitive); nil for one OTLP receivers do not accept.
        public init?(name: String) {
            switch name.lowercased() {
            case "identity": self = .identity
            case "gzip": self = .gzip
            default: return nil
            }
        }
    }

    /// One request body as the transport received it, without copying it: HTTP bodies arrive in a
    /// `ByteBuffer`, gRPC messages as bytes.
    public enum Body: Sendable {
        case buffer(ByteBuffer)
        case bytes([UInt8])

        /// Its size in bytes.
        public var count: Int {
            switch self {
            case .buffer(let buffer): buffer.readableBytes
            case .bytes(let bytes): bytes.count
            }
        }

        fileprivate var buffer: ByteBuffer {
            switch self {
            case .buffer(let buffer): buffer
            case .bytes(let bytes): ByteBuffer(bytes: bytes)
            }
        }

        fileprivate func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) throws -> Result {
            switch self {
            case .buffer(let buffer): try buffer.withUnsafeReadableBytes(body)
            case .bytes(let bytes): try bytes.withUnsafeBytes(body)
            }
        }
    }

    /// Above this many bytes a body is inflated and decoded off the event loop. 256 KiB (issue 15 §3).
    public static let defaultOffloadThreshold = 256 << 10

    /// The largest body accepted, in bytes, after decompression.
    public let maxBodySize: Int
    /// Where spans go.
    let sink: any BatchSink
    /// The counters of the transport this ingest serves.
    let metrics: OTLPReceiverMetrics
    /// Bodies larger than this are handled on `offload`.
    let offloadThreshold: Int
    let offload: IngestOffload
    private let codecs: PerEventLoopCodecs

    /// An ingest feeding `sink` for the loops of `group`.
    init(maxBodySize: Int, sink: any BatchSink, metrics: OTLPReceiverMetrics, group: any EventLoopGroup,
         offload: IngestOffload = .threadPool(), offloadThreshold: Int = TraceIngest.defaultOffloadThreshold) {
        self.maxBodySize = maxBodySize
        self.sink = sink
        self.metrics = metrics
        self.offload = offload
        self.offloadThreshold = offloadThreshold
        codecs = PerEventLoopCodecs(group: group)
    }

    /// Ingests one request; the future completes on `eventLoop` (already completed when the body was
    /// small enough to handle inline and the pipeline had room).
    public func ingest(_ body: Body, format: Format, compression: Compression, on eventLoop: any EventLoop) -> EventLoopFuture<IngestOutcome> {
        // A full pipeline: the request waits for room before any work is spent on it, or is refused at once
        // (decoding what cannot be taken would only take time from the pipeline that has to catch up).
        guard sink.isFull else { return handle(body, format: format, compression: compression, deadline: nil, on: eventLoop) }
        let ingest = self
        return whenRoom(bytes: body.count, deadline: nil, on: eventLoop, refused: { .pipelineFull }) { deadline in
            ingest.handle(body, format: format, compression: compression, deadline: deadline, on: eventLoop)
        }
    }

    /// Holds a request until the sink has room, then runs `next` with the deadline it may still wait until; `refused`
    /// answers when the sink does not hold requests, at `deadline` (from now when nil: the request then starts to
    /// count as held), or when the sink refuses to hold more.
    private func whenRoom(bytes: Int, deadline: NIODeadline?, on eventLoop: any EventLoop, refused: @escaping @Sendable () -> IngestOutcome,
                          then next: @escaping @Sendable (NIODeadline) -> EventLoopFuture<IngestOutcome>) -> EventLoopFuture<IngestOutcome> {
        let now = eventLoop.now
        guard sink.waitWhenFull > .zero, deadline.map({ now < $0 }) ?? true else { return eventLoop.makeSucceededFuture(refused()) }
        if deadline == nil { metrics.heldRequests.increment() }
        let deadline = deadline ?? now + TimeAmount(sink.waitWhenFull)
        return sink.waitForRoom(bytes: bytes, until: deadline, on: eventLoop).flatMap { room in
            room ? next(deadline) : eventLoop.makeSucceededFuture(refused())
        }
    }

    /// Inflates, decodes and offers; `deadline` is how long it may still wait for room, once it has waited.
    private func handle(_ body: Body, format: Format, compression: Compression, deadline: NIODeadline?,
                        on eventLoop: any EventLoop) -> EventLoopFuture<IngestOutcome> {
        guard body.count <= offloadThreshold else {
            return offloaded(body, format: format, compression: compression, deadline: deadline, on: eventLoop)
        }
        var plain = body
        if compression == .gzip {
            // Inflates inline only up to the threshold: a small body that inflates further goes off the loop
            // too, having cost at most `offloadThreshold` bytes of inflating here.
            let inlineLimit = min(maxBodySize, offloadThreshold)
            switch inflate(body, limit: inlineLimit) {
            case .success(let inflated): plain = .buffer(inflated)
            case .failure(.tooLarge) where inlineLimit < maxBodySize:
                return offloaded(body, format: format, compression: compression, deadline: deadline, on: eventLoop)
            case .failure(let stop): return eventLoop.makeSucceededFuture(stop.outcome(limit: maxBodySize))
            }
        }
        return offer(decode(plain, format: format, codec: codecs.codec(on: eventLoop)), bytes: body.count, deadline: deadline, on: eventLoop)
    }

    /// Whether the pipeline would refuse a request now, without holding it for room.
    var refusesAtOnce: Bool { sink.waitWhenFull == .zero && sink.isFull }

    /// The protobuf codec of `eventLoop`, for encoding answers there.
    func codec(on eventLoop: any EventLoop) -> OTLPProtobufCodec {
        codecs.codec(on: eventLoop)
    }

    private func offloaded(_ body: Body, format: Format, compression: Compression, deadline: NIODeadline?,
                           on eventLoop: any EventLoop) -> EventLoopFuture<IngestOutcome> {
        let ingest = self
        return offload.run(eventLoop) {
            var plain = body
            if compression == .gzip {
                switch ingest.inflate(body, limit: ingest.maxBodySize) {
                case .success(let inflated): plain = .buffer(inflated)
                case .failure(let stop): return .finished(stop.outcome(limit: ingest.maxBodySize))
                }
            }
            // The loop's codec belongs to the loop; this thread gets its own for this request.
            return ingest.decode(plain, format: format, codec: OTLPProtobufCodec())
        }.flatMap { decoded in
            ingest.offer(decoded, bytes: body.count, deadline: deadline, on: eventLoop)
        }
    }

    private func inflate(_ body: Body, limit: Int) -> Result<ByteBuffer, GzipError> {
        do {
            return .success(try Gzip.inflate(body.buffer, limit: limit))
        } catch {
            if case .corrupt = error { metrics.decodeFailed("gzip") }
            return .failure(error)
        }
    }

    /// Decodes and validates an uncompressed body.
    private func decode(_ body: Body, format: Format, codec: OTLPProtobufCodec) -> DecodedRequest {
        var batch: SpanBatch
        do {
            batch = try body.withUnsafeBytes { bytes in
                switch format {
                case .protobuf: try codec.decodeRequest(bytes)
                case .json: try OTLPJSON.decodeRequest(bytes)
                }
            }
        } catch {
            metrics.decodeFailed(format.metricLabel)
            return .finished(.badData(.undecodable(reason: "\(error)")))
        }
        let rejected = SpanValidation.dropInvalidSpans(&batch)
        if rejected > 0 { metrics.refusedSpans.increment(by: Int64(rejected)) }
        guard batch.spanCount > 0 else { return .finished(.accepted(rejectedSpans: rejected)) }
        return .batch(batch, rejectedSpans: rejected)
    }

    /// Offers a decoded batch and counts its spans; the answer waits for a durable pipeline's write. Refused
    /// for want of room, the batch waits for room until `deadline` (from now, when it had not waited yet) and
    /// is offered again.
    private func offer(_ decoded: DecodedRequest, bytes: Int, deadline: NIODeadline?, on eventLoop: any EventLoop) -> EventLoopFuture<IngestOutcome> {
        switch decoded {
        case .finished(let outcome):
            return eventLoop.makeSucceededFuture(outcome)
        case .batch(let batch, let rejected):
            let spans = batch.spanCount
            switch sink.offer(batch, on: eventLoop) {
            case .accepted: return eventLoop.makeSucceededFuture(offered(true, spans: spans, rejected: rejected))
            case .refused:
                let ingest = self
                return whenRoom(bytes: bytes, deadline: deadline, on: eventLoop,
                                refused: { ingest.offered(false, spans: spans, rejected: rejected) }) { deadline in
                    ingest.offer(decoded, bytes: bytes, deadline: deadline, on: eventLoop)
                }
            case .pending(let taken):
                return taken.map { [self] in offered($0, spans: spans, rejected: rejected) }
            }
        }
    }

    private func offered(_ taken: Bool, spans: Int, rejected: Int) -> IngestOutcome {
        guard taken else {
            metrics.refusedSpans.increment(by: Int64(spans))
            return .pipelineFull
        }
        metrics.acceptedSpans.increment(by: Int64(spans))
        return .accepted(rejectedSpans: rejected)
    }
}

extension GzipError {
    /// The outcome for a body that could not be inflated under `limit`.
    fileprivate func outcome(limit: Int) -> IngestOutcome {
        switch self {
        case .tooLarge: .tooLarge(limit: limit)
        case .corrupt: .badData(.corruptGzip)
        }
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
        let codec = OTLPProtobufCodec()
        box.value = codec
        return codec
    }
}

/// The checks OTLP asks of receivers before spans enter the pipeline.
public enum SpanValidation {
    /// Drops spans whose trace id is not 16 non-zero bytes or whose span id is not 8 non-zero bytes
    /// (decoders turn malformed ids into zero ids); returns how many were dropped.
    public static func dropInvalidSpans(_ batch: inout SpanBatch) -> Int {
        let before = batch.spanCount
        // Reads the ids in place: copying each span out would retain and release all its fields.
        let anyInvalid = batch.resourceSpans.contains { resourceSpans in
            resourceSpans.scopeSpans.contains { scopeSpans in
                scopeSpans.spans.contains { !$0.traceID.isValid || !$0.spanID.isValid }
            }
        }
        guard anyInvalid else { return 0 }
        batch.filterSpans { $0.traceID.isValid && $0.spanID.isValid }
        return before - batch.spanCount
    }

    /// The `partial_success.error_message` for dropped spans.
    public static func rejectionMessage(_ count: Int) -> String {
        "\(count) span(s) dropped: trace id must be 16 non-zero bytes and span id 8 non-zero bytes"
    }
}
