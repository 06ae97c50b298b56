import Logging
import NIOCore
import NIOPosix
import ServerSupport
import Synchronization

/// What a unary call returned.
public struct GRPCCallResult: Sendable {
    /// `grpc-status` (from the HTTP status when the server sent none).
    public var status: GRPCStatusCode
    /// `grpc-message`, percent-decoded.
    public var message: String
    /// The response message, unframed.
    public var body: [UInt8]
    /// `grpc-status-details-bin`, base64 as received (a `google.rpc.Status`).
    public var statusDetails: String?
}

/// A call that never got an answer: the connection failed, closed or timed out.
public struct GRPCTransportError: Error, CustomStringConvertible, Sendable {
    /// The gRPC status this stands for: UNAVAILABLE or DEADLINE_EXCEEDED.
    public var status: GRPCStatusCode
    public var reason: String

    public var description: String { "gRPC transport error (status \(status.rawValue)): \(reason)" }
}

/// A gRPC client for unary calls over one plaintext HTTP/2 connection (h2c), whose HTTP/2 is an
/// nghttp2 client session: connects on first use, multiplexes calls as streams, reconnects after a
/// failure. Used by the Jaeger and OTLP exporters.
public final class GRPCClient: Sendable {
    private let host: String
    private let port: Int
    private let group: any EventLoopGroup
    /// The current connection (or attempt), with a number so a late close forgets only its own.
    private let channel = Mutex<(generation: Int, future: EventLoopFuture<any Channel>?)>((0, nil))

    private let configureTransport: (@Sendable (any Channel) throws -> Void)?

    /// `configureTransport` adds handlers below HTTP/2 on each new connection (TLS).
    public init(host: String, port: Int, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                configureTransport: (@Sendable (any Channel) throws -> Void)? = nil) {
        self.host = host
        self.port = port
        self.group = group
        self.configureTransport = configureTransport
    }

    /// Calls `path` (`/package.Service/Method`) with one request message.
    public func call(path: String, message: [UInt8], compressed: Bool = false, metadata: [HTTP2Header] = [],
                     timeout: Duration) async throws(GRPCTransportError) -> GRPCCallResult {
        let channel: any Channel
        do {
            channel = try await connection().get()
        } catch {
            forgetConnection()
            throw GRPCTransportError(status: .unavailable, reason: "cannot connect to \(host):\(port): \(error)")
        }
        var headers: [HTTP2Header] = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "\(host):\(port)"),
                                      ("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "AgentTrace")]
        if compressed { headers.append(("grpc-encoding", "gzip")) }
        headers.append(("grpc-timeout", "\(max(1, timeout.wholeNanoseconds / 1_000_000))m"))
        headers += metadata
        let promise = channel.eventLoop.makePromise(of: GRPCCallResult.self)
        let call = GRPCClientCall(headers: headers, body: GRPCFraming.bodyParts(message, compressed: compressed), promise: promise)
        let deadline = channel.eventLoop.scheduleTask(in: .nanoseconds(timeout.wholeNanoseconds)) {
            promise.fail(GRPCTransportError(status: .deadlineExceeded, reason: "no answer within \(timeout)"))
        }
        channel.writeAndFlush(call, promise: nil)
        do {
            let result = try await promise.futureResult.get()
            deadline.cancel()
            return result
        } catch let error as GRPCTransportError {
            if error.status == .unavailable { forgetConnection() }
            throw error
        } catch {
            forgetConnection()
            throw GRPCTransportError(status: .unavailable, reason: "\(error)")
        }
    }

    /// Closes the connection.
    public func close() async {
        let current = channel.withLock { value in
            defer { value.future = nil }
            return value.future
        }
        if let current, let opened = try? await current.get() {
            try? await opened.close()
        }
    }

    private func connection() -> EventLoopFuture<any Channel> {
        channel.withLock { state in
            if let current = state.future { return current }
            state.generation += 1
            let generation = state.generation
            let configureTransport = self.configureTransport
            let connecting = ClientBootstrap(group: group)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(5))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try configureTransport?(channel)
                        try channel.pipeline.syncOperations.addHandler(GRPCClientHandler())
                    }
                }
                .connect(host: host, port: port)
            connecting.whenSuccess { [weak self] opened in
                opened.closeFuture.whenComplete { _ in self?.forgetConnection(generation: generation) }
            }
            state.future = connecting
            return connecting
        }
    }

    /// Drops the connection so the next call opens a new one; with `generation`, only if it is still that one.
    private func forgetConnection(generation: Int? = nil) {
        channel.withLock { state in
            if let generation, generation != state.generation { return }
            state.future = nil
        }
    }
}

/// One call handed to the connection's handler.
struct GRPCClientCall {
    var headers: [HTTP2Header]
    /// The framed request as `GRPCFraming.bodyParts` gives it: prefix and message, never joined.
    var body: [[UInt8]]
    var promise: EventLoopPromise<GRPCCallResult>
}

/// Runs an nghttp2 client session on a connection: each written `GRPCClientCall` becomes a stream;
/// the stream's response headers, body and trailers complete its promise.
final class GRPCClientHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = GRPCClientCall
    typealias OutboundOut = ByteBuffer

    /// The largest response message accepted: gRPC's default maximum receive message size (4 MiB).
    static let maxResponseSize = 4 << 20

    private struct Pending {
        var promise: EventLoopPromise<GRPCCallResult>
        var headers: [HTTP2Header] = []
        var body = GRPCUnaryBody(maxMessageSize: GRPCClientHandler.maxResponseSize)
        /// Set when the response passed `maxResponseSize`: the stream is reset and the rest ignored.
        var oversized: Int?
    }

    private var session: HTTP2Session?
    private var pending: [Int32: Pending] = [:]

    func channelActive(context: ChannelHandlerContext) {
        session = try? HTTP2Session(role: .client)
        flush(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(GRPCTransportError(status: .unavailable, reason: "the connection closed"))
        session?.close()
        session = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(GRPCTransportError(status: .unavailable, reason: "\(error)"))
        context.close(promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let call = unwrapOutboundIn(data)
        guard let session else {
            call.promise.fail(GRPCTransportError(status: .unavailable, reason: "no HTTP/2 session"))
            promise?.succeed()
            return
        }
        do {
            let streamID = try session.request(headers: call.headers, bodyParts: call.body)
            pending[streamID] = Pending(promise: call.promise)
        } catch {
            call.promise.fail(GRPCTransportError(status: .unavailable, reason: "cannot open a stream: \(error)"))
        }
        promise?.succeed()
    }

    func flush(context: ChannelHandlerContext) {
        session?.writeOutput(to: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session else { return }
        let buffer = unwrapInboundIn(data)
        let events: [HTTP2Event]
        do throws(HTTP2Error) {
            events = try buffer.withUnsafeReadableBytes { (bytes) throws(HTTP2Error) in try session.receive(bytes) }
        } catch {
            flush(context: context)
            context.close(promise: nil)
            return
        }
        for event in events {
            switch event {
            case .headers(let streamID, let headers, _):
                pending[streamID]?.headers += headers
            case .data(let streamID, let bytes):
                guard pending[streamID]?.oversized == nil, let size = pending[streamID]?.body.append(bytes) else { continue }
                pending[streamID]?.oversized = size
                session.resetStream(streamID, errorCode: 8)  // CANCEL: the response is refused
            case .streamClosed(let streamID, let errorCode):
                guard let call = pending.removeValue(forKey: streamID) else { continue }
                complete(call, errorCode: errorCode)
            case .endStream, .goAway:
                break
            }
        }
        flush(context: context)
    }

    private func complete(_ call: Pending, errorCode: UInt32) {
        if let size = call.oversized {
            call.promise.succeed(GRPCCallResult(status: .resourceExhausted, message: "response message of \(size) bytes exceeds the client's limit (\(Self.maxResponseSize) bytes)",
                                                body: [], statusDetails: nil))
            return
        }
        let header = { (name: String) in call.headers.last { $0.name == name }?.value }
        guard let statusText = header("grpc-status"), let number = Int(statusText) else {
            if errorCode != 0 {
                call.promise.fail(GRPCTransportError(status: .unavailable, reason: "stream reset with HTTP/2 error \(errorCode)"))
                return
            }
            // No gRPC status: map the HTTP status as the gRPC HTTP/2 protocol document does.
            let http = Int(header(":status") ?? "") ?? 0
            let mapped: GRPCStatusCode = switch http {
            case 400: .internal
            case 401: .unauthenticated
            case 403: .permissionDenied
            case 404: .unimplemented
            case 429, 502, 503, 504: .unavailable
            default: .unknown
            }
            call.promise.succeed(GRPCCallResult(status: mapped, message: "HTTP \(http) without grpc-status", body: [], statusDetails: nil))
            return
        }
        let status = GRPCStatusCode(rawValue: number)
        var body: [UInt8] = []
        if status == .ok, !call.body.bytes.isEmpty {
            // An OK response carries one message (one without is taken as empty, as before); a
            // Trailers-Only (error) response carries none.
            do {
                body = try call.body.message().bytes
            } catch {
                call.promise.succeed(GRPCCallResult(status: .internal, message: "malformed gRPC response framing: \(error)", body: [], statusDetails: nil))
                return
            }
        }
        call.promise.succeed(GRPCCallResult(status: status, message: (header("grpc-message") ?? "").removingPercentEncodingLeniently,
                                            body: body, statusDetails: header("grpc-status-details-bin")))
    }

    private func failAll(_ error: GRPCTransportError) {
        let calls = pending
        pending.removeAll()
        for call in calls.values { call.promise.fail(error) }
    }
}

extension String {
    /// Decodes `%XX` escapes (grpc-message); malformed escapes stay as they are.
    var removingPercentEncodingLeniently: String {
        guard contains("%") else { return self }
        var bytes: [UInt8] = []
        var iterator = Array(utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "%"), iterator.count >= 2,
               let high = hexValue(iterator[iterator.startIndex]), let low = hexValue(iterator[iterator.startIndex + 1]) {
                bytes.append(high << 4 | low)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}
