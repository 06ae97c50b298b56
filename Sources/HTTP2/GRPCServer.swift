import Logging
import NIOCore
import NIOExtras
import NIOPosix
import ServerSupport
import ServiceLifecycle

/// A unary gRPC service. Called on the connection's event loop; must not block: long work goes
/// elsewhere and its answer comes back as a future completing on that loop.
public protocol GRPCUnaryService: Sendable {
    /// The largest request message accepted, in bytes, after decompression.
    var maxReceiveMessageSize: Int { get }
    /// Whether `path` (`/package.Service/Method`) is served; unknown ones get UNIMPLEMENTED.
    func serves(path: String) -> Bool
    /// Handles one request message, answering at once (an already-completed future) or later, on
    /// `eventLoop`. `encoding` is the stream's `grpc-encoding` when the message is compressed.
    func handle(path: String, message: [UInt8], encoding: String?, eventLoop: any EventLoop) -> EventLoopFuture<GRPCResponse>
    /// Told of every call refused before `handle` (unknown method, oversized, malformed framing, not gRPC).
    func refused(_ response: GRPCResponse)
    /// Checks a call's request headers (the `authorization` metadata); a response refuses the call
    /// before its body is read. Default: every call is allowed.
    func authenticate(headers: [HTTP2Header]) -> GRPCResponse?
}

extension GRPCUnaryService {
    public func authenticate(headers: [HTTP2Header]) -> GRPCResponse? { nil }
}

/// `grpc: …` listener settings.
public struct GRPCServerConfiguration: Sendable, Equatable {
    /// host and port to bind.
    public var host: String
    public var port: Int
    /// HTTP/2 settings announced to clients.
    public var settings = HTTP2Settings()
    /// A connection with no open stream for this long is closed with GOAWAY; nil keeps it open.
    public var maxConnectionIdle: Duration?
    /// Connection count and slow-peer deadlines.
    public var limits = ConnectionLimits()

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

/// A gRPC server over HTTP/2 with prior knowledge (h2c), as OpenTelemetry SDKs use it: SwiftNIO owns
/// the sockets, an nghttp2 session per connection owns the HTTP/2 protocol. A `Service`: binds on
/// `run`; on graceful shutdown sends GOAWAY, finishes the streams in flight, then closes.
public final class GRPCServer: QuiescingListener, Sendable {
    public let server: QuiescingServer
    public let onListening: @Sendable (String) -> Void

    /// `configureTransport` adds handlers below HTTP/2 on each new connection (TLS); `events` is told of
    /// every connection the server closes for a limit or a protocol error; `name` is the listener's
    /// configuration key, for errors (`receivers.otlp.protocols.grpc`).
    public init(configuration: GRPCServerConfiguration, service: any GRPCUnaryService,
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger,
                events: ConnectionEvents = .ignored, configureTransport: (@Sendable (any Channel) throws -> Void)? = nil,
                name: String = "grpc", onListening: @escaping @Sendable (String) -> Void) {
        self.onListening = onListening
        server = QuiescingServer(name: name, host: configuration.host, port: configuration.port, group: group,
                                 maxConnections: configuration.limits.maxConnections, events: events) { channel in
            try configureTransport?(channel)
            if let idle = configuration.maxConnectionIdle {
                try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: .nanoseconds(idle.wholeNanoseconds)))
            }
            try channel.pipeline.syncOperations.addHandler(GRPCConnectionHandler(service: service, settings: configuration.settings,
                                                                                 limits: configuration.limits, events: events, logger: logger))
        }
    }
}

/// One HTTP/2 connection: feeds bytes to its `HTTP2Session`, gathers each stream's request, answers
/// unary gRPC calls, and writes what the session produces.
final class GRPCConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let service: any GRPCUnaryService
    private let settings: HTTP2Settings
    private let limits: ConnectionLimits
    private let events: ConnectionEvents
    private let logger: Logger
    private var session: HTTP2Session?
    private var calls: GRPCUnaryCalls
    private var quiescing = false
    private var input = HTTP2InputTracker()
    /// Since when the peer has been in the middle of a preface, frame or header block.
    private var midUnitSince: NIODeadline? = .now()
    private var deadlineCheck: RepeatedTask?
    private var closedFor: ConnectionCloseReason?
    private var peerSentGoAway = false
    /// True while `channelRead` handles events; answers completed meanwhile are flushed at its end.
    private var reading = false

    init(service: any GRPCUnaryService, settings: HTTP2Settings, limits: ConnectionLimits = ConnectionLimits(),
         events: ConnectionEvents = .ignored, logger: Logger) {
        self.service = service
        self.calls = GRPCUnaryCalls(maxMessageSize: service.maxReceiveMessageSize, serves: { service.serves(path: $0) },
                                    authenticate: { service.authenticate(headers: $0) })
        self.settings = settings
        self.limits = limits
        self.events = events
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        midUnitSince = .now()
        if let interval = limits.checkInterval {
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            deadlineCheck = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                let (handler, context) = loopBound.value
                handler.checkDeadlines(context: context)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadlineCheck?.cancel()
        deadlineCheck = nil
    }

    /// Closes a connection whose peer trickles a frame, and answers streams whose request is late.
    private func checkDeadlines(context: ChannelHandlerContext) {
        guard let session, closedFor == nil else { return }
        let now = NIODeadline.now()
        if let timeout = limits.readHeaderTimeout, let since = midUnitSince, now - since > .nanoseconds(timeout.wholeNanoseconds) {
            close(context: context, reason: .readHeaderTimeout)
            return
        }
        if let timeout = limits.readTimeout {
            let late = calls.expire(begunBefore: now - .nanoseconds(timeout.wholeNanoseconds))
            for action in late { carryOut(action, session: session, context: context) }
            if !late.isEmpty { flush(context: context) }
        }
    }

    /// Sends GOAWAY and closes, counting why.
    private func close(context: ChannelHandlerContext, reason: ConnectionCloseReason, errorCode: UInt32 = 0) {
        guard closedFor == nil else { return }
        closedFor = reason
        events.closed(reason)
        session?.sendGoAway(errorCode: errorCode)
        flush(context: context)
        closeLingering(context: context)
    }

    /// Closes once what is queued (the GOAWAY) has been written: the output first, so the peer reads the
    /// GOAWAY and then the end of the stream, and the whole connection when the peer closes its side or after
    /// `lingerTime`. Input meanwhile is read and discarded (`closedFor` is set): closing a socket with unread
    /// input makes the kernel answer with a reset, which can reach the peer before the GOAWAY does.
    private func closeLingering(context: ChannelHandlerContext) {
        let channel = context.channel
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(capacity: 0)), promise: written)
        written.futureResult.whenComplete { _ in channel.close(mode: .output, promise: nil) }
        context.eventLoop.scheduleTask(in: Self.lingerTime) { channel.close(promise: nil) }
    }

    /// How long a connection closed for an error keeps reading (and discarding) before it closes regardless.
    static let lingerTime = TimeAmount.seconds(1)

    func channelActive(context: ChannelHandlerContext) {
        do {
            // Its SETTINGS go out with the first answer, after the client's preface has been seen, so a
            // client that is not speaking HTTP/2 gets a plain HTTP/1.1 refusal and nothing else.
            session = try HTTP2Session(role: .server, settings: settings)
        } catch {
            logger.error("cannot create an HTTP/2 session", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        session?.close()
        session = nil
        calls.removeAll()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session, closedFor == nil else { return }
        let buffer = unwrapInboundIn(data)
        input.consume(buffer)
        if input.isMidUnit {
            if midUnitSince == nil { midUnitSince = .now() }
        } else {
            midUnitSince = nil
        }
        let events: [HTTP2Event]
        do throws(HTTP2Error) {
            events = try buffer.withUnsafeReadableBytes { (bytes) throws(HTTP2Error) in try session.receive(bytes) }
        } catch {
            if error.isBadPreface {
                refuseNonHTTP2(context: context)
            } else {
                // nghttp2 has queued a GOAWAY with the right error code (or, for the errors it treats
                // as fatal, such as a CONTINUATION flood, queue PROTOCOL_ERROR); send it and close.
                closedFor = .protocolError
                self.events.closed(.protocolError)
                session.terminate(errorCode: error.isFlood ? 0xB : 0x1)  // ENHANCE_YOUR_CALM : PROTOCOL_ERROR
                flush(context: context)
                closeLingering(context: context)
            }
            return
        }
        reading = true
        for event in events { handle(event, session: session, context: context) }
        reading = false
        flush(context: context)
        closeIfDrained(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            session?.sendGoAway()
            flush(context: context)
            closeIfDrained(context: context)
        } else if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .all, calls.isIdle {
            close(context: context, reason: .idleTimeout)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func handle(_ event: HTTP2Event, session: HTTP2Session, context: ChannelHandlerContext) {
        if case .goAway = event { peerSentGoAway = true }
        if let action = calls.handle(event, now: .now()) { carryOut(action, session: session, context: context) }
    }

    private func carryOut(_ action: GRPCUnaryCalls.Action, session: HTTP2Session, context: ChannelHandlerContext) {
        switch action {
        case .refuse(let streamID, let response, let reset):
            refuse(streamID, response, session: session, reset: reset)
        case .notGRPC(let streamID, let reset):
            service.refused(GRPCResponse(status: .unimplemented, message: "not a gRPC request"))
            try? session.respond(streamID: streamID, headers: [(":status", "415"), ("content-type", "text/plain")],
                                 body: Array("this port serves OTLP over gRPC; content-type must be application/grpc\n".utf8))
            if reset { session.resetAfterResponse(streamID) }
        case .call(let streamID, let path, let message, let encoding):
            let answer = service.handle(path: path, message: message.bytes, encoding: encoding, eventLoop: context.eventLoop)
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            answer.whenComplete { result in
                let (handler, context) = loopBound.value
                handler.answer(streamID, result, context: context)
            }
        }
    }

    /// Sends a call's answer: inline while reading (flushed with the rest of the read), or later, when
    /// the service finished off the loop; dropped when the stream or the connection has gone meanwhile.
    private func answer(_ streamID: Int32, _ result: Result<GRPCResponse, any Error>, context: ChannelHandlerContext) {
        guard let session, closedFor == nil, calls.isOpen(streamID) else { return }
        let response = (try? result.get()) ?? GRPCResponse(status: .internal, message: "the call could not be handled")
        respond(streamID, response, session: session)
        if !reading {
            flush(context: context)
            closeIfDrained(context: context)
        }
    }

    private func refuse(_ streamID: Int32, _ response: GRPCResponse, session: HTTP2Session, reset: Bool) {
        service.refused(response)
        respond(streamID, response, session: session)
        // An early answer: once it is out, tell the client to stop sending the rest (RFC 9113 §8.1).
        if reset { session.resetAfterResponse(streamID) }
    }

    private func respond(_ streamID: Int32, _ response: GRPCResponse, session: HTTP2Session) {
        var trailers: [HTTP2Header] = [("grpc-status", String(response.status.rawValue))]
        if !response.message.isEmpty { trailers.append(("grpc-message", GRPCResponse.percentEncoded(response.message))) }
        do {
            if response.status == .ok {
                try session.respond(streamID: streamID, headers: [(":status", "200"), ("content-type", "application/grpc")],
                                    bodyParts: GRPCFraming.bodyParts(response.body), trailers: trailers)
            } else {
                // Trailers-Only: one HEADERS frame carrying the status, ending the stream.
                try session.respond(streamID: streamID, headers: [(":status", "200"), ("content-type", "application/grpc")] + trailers)
            }
        } catch {
            session.resetStream(streamID, errorCode: 2)  // INTERNAL_ERROR
        }
    }

    private func flush(context: ChannelHandlerContext) {
        session?.writeOutput(to: context)
    }

    private func closeIfDrained(context: ChannelHandlerContext) {
        guard let session else { return }
        if (quiescing && session.openStreams == 0) || !session.isActive {
            // nghttp2 ends a session itself for most connection errors (a GOAWAY it queued); unless the
            // peer said goodbye first or we are shutting down, that is a protocol error to count.
            if !session.isActive, !quiescing, !peerSentGoAway, closedFor == nil {
                closedFor = .protocolError
                events.closed(.protocolError)
                closeLingering(context: context)
                return
            }
            context.close(promise: nil)
        }
    }

    private func refuseNonHTTP2(context: ChannelHandlerContext) {
        service.refused(GRPCResponse(status: .unimplemented, message: "not HTTP/2"))
        let body = "this port serves OTLP over gRPC (HTTP/2 with prior knowledge); send OTLP/HTTP to port 4318\n"
        let response = "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)"
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(channel.allocator.buffer(string: response))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }
}
