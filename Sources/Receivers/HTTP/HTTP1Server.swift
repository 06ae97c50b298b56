import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Pipeline
import ServerSupport
import ServiceLifecycle

/// A complete HTTP/1.1 response.
public struct HTTP1Response: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer?
    /// Close the connection once the response is out (a refused request whose rest cannot be trusted).
    public var closeAfter = false

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Answers requests. Called on the connection's event loop; must not block: long work goes elsewhere
/// and its answer comes back as a future completing on that loop.
public protocol HTTP1Responder: Sendable {
    /// The largest body read into memory; a larger one is discarded and answered with `tooLarge`.
    var maxBodySize: Int { get }
    /// Answers from the head alone (wrong path, method or content type); nil to read the body.
    func respond(toHead head: HTTPRequestHead) -> HTTP1Response?
    /// The answer for a body over `maxBodySize`.
    func tooLarge(_ head: HTTPRequestHead) -> HTTP1Response
    /// Answers a complete request, at once (an already-completed future) or later, on `eventLoop`.
    func respond(to head: HTTPRequestHead, body: ByteBuffer, eventLoop: any EventLoop) -> EventLoopFuture<HTTP1Response>
}

/// An HTTP/1.1 server on SwiftNIO as a `Service`: binds on `run`, announces the bound address, and on
/// graceful shutdown stops accepting, lets requests in flight finish, then closes every connection.
/// `limits` cut off slow, idle and oversized peers; `events` is told of every connection closed for them.
public final class HTTP1Server: QuiescingListener, Sendable {
    public let server: QuiescingServer
    public let onListening: @Sendable (String) -> Void
    private let logger: Logger

    /// `configureTransport` adds handlers below HTTP on each new connection (TLS); `name` is the listener's
    /// configuration key, for errors (`receivers.otlp.protocols.http`).
    public init(endpoint: Endpoint, responder: any HTTP1Responder, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                limits: HTTP1Limits = HTTP1Limits(), events: ConnectionEvents = .ignored,
                configureTransport: (@Sendable (any Channel) throws -> Void)? = nil,
                logger: Logger, name: String = "http", onListening: @escaping @Sendable (String) -> Void) {
        self.logger = logger
        self.onListening = onListening
        server = QuiescingServer(name: name, host: endpoint.host, port: endpoint.port, group: group,
                                 maxConnections: limits.connection.maxConnections, events: events) { channel in
            try configureTransport?(channel)
            try HTTP1Server.configureConnection(channel, responder: responder, limits: limits, events: events)
        }
    }

    /// Adds the HTTP/1.1 handlers every accepted connection gets (limits, codec, `responder`) to `channel`;
    /// on the channel's event loop. Tests drive the same handlers in an `EmbeddedChannel`.
    public static func configureConnection(_ channel: any Channel, responder: any HTTP1Responder, limits: HTTP1Limits = HTTP1Limits(),
                                           events: ConnectionEvents = .ignored) throws {
        try channel.pipeline.syncOperations.addHandler(HTTP1ConnectionGuard(limits: limits, events: events))
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
        try channel.pipeline.syncOperations.addHandler(HTTP1RequestHandler(responder: responder, limits: limits, events: events))
    }
}

/// What an HTTP/1 listener tolerates from its peers.
public struct HTTP1Limits: Sendable, Equatable {
    /// Connection count, `read_header_timeout` and `read_timeout`.
    public var connection: ConnectionLimits
    /// A kept-alive connection waiting for its next request this long is closed. nil: never.
    public var idleTimeout: Duration?
    /// The request line and headers together, in bytes; past it the answer is 431 and the connection closes.
    public var maxHeaderBytes: Int
    /// Header fields in one request; past it the answer is 431 and the connection closes.
    public var maxHeaderCount: Int

    public init(connection: ConnectionLimits = ConnectionLimits(), idleTimeout: Duration? = nil, maxHeaderBytes: Int = 64 << 10,
                maxHeaderCount: Int = 100) {
        self.connection = connection
        self.idleTimeout = idleTimeout
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
    }
}

/// Where a connection's current request is, told by `HTTP1RequestHandler` to `HTTP1ConnectionGuard`
/// as outbound user events (they travel towards the socket, past the HTTP codec).
enum HTTP1RequestProgress {
    case headReceived
    case requestEnded
    case responseStarted
}

/// The deadlines of one HTTP/1 connection as plain state: what is due when, and why. Fed the bytes
/// read and the request handler's progress; `HTTP1ConnectionGuard` acts on what it returns.
struct HTTP1Deadlines {
    enum Phase: Equatable {
        /// Waiting for a request's first byte; `first` on a new connection.
        case awaiting(since: NIODeadline, first: Bool)
        /// Reading a request head: bytes of it so far.
        case head(started: NIODeadline, bytes: Int)
        /// Reading the body of a request begun at `started`.
        case body(started: NIODeadline)
        /// The request is complete; its answer is being made.
        case responding
        /// Answered before the request ended; the rest of a request begun at `started` is being dropped.
        case draining(started: NIODeadline)
    }

    /// What the guard does.
    enum Verdict: Equatable {
        case proceed
        /// Close silently (an idle connection).
        case close(ConnectionCloseReason)
        /// Answer with this status, then close.
        case refuse(HTTPResponseStatus, ConnectionCloseReason)
    }

    let limits: HTTP1Limits
    private(set) var phase: Phase

    init(limits: HTTP1Limits, now: NIODeadline) {
        self.limits = limits
        phase = .awaiting(since: now, first: true)
    }

    /// `count` bytes arrived; call before the codec sees them (a request they complete moves on from here).
    mutating func read(_ count: Int, now: NIODeadline) {
        switch phase {
        case .awaiting: phase = .head(started: now, bytes: count)
        case .head(let started, let bytes): phase = .head(started: started, bytes: bytes + count)
        case .body, .responding, .draining: break
        }
    }

    /// After the codec has seen the bytes: a head still incomplete past `maxHeaderBytes` is refused.
    func checkHeadSize() -> Verdict {
        if case .head(_, let bytes) = phase, bytes > limits.maxHeaderBytes {
            return .refuse(.init(statusCode: 431, reasonPhrase: "Request Header Fields Too Large"), .headerTooLarge)
        }
        return .proceed
    }

    /// The bytes that began the head came in the same read as the head's end: `read` then sees `.body`.
    mutating func progress(_ progress: HTTP1RequestProgress, now: NIODeadline) {
        switch (progress, phase) {
        case (.headReceived, .head(let started, _)): phase = .body(started: started)
        case (.headReceived, _): phase = .body(started: now)
        case (.requestEnded, .draining): phase = .awaiting(since: now, first: false)
        case (.requestEnded, _): phase = .responding
        case (.responseStarted, .head(let started, _)), (.responseStarted, .body(let started)): phase = .draining(started: started)
        case (.responseStarted, _): phase = .awaiting(since: now, first: false)
        }
    }

    /// Whether a deadline has passed at `now`.
    func check(now: NIODeadline) -> Verdict {
        func passed(_ since: NIODeadline, _ limit: Duration?) -> Bool {
            guard let limit else { return false }
            return now - since > .nanoseconds(limit.wholeNanoseconds)
        }
        switch phase {
        case .awaiting(let since, true):
            return passed(since, limits.connection.readHeaderTimeout) ? .close(.readHeaderTimeout) : .proceed
        case .awaiting(let since, false):
            return passed(since, limits.idleTimeout) ? .close(.idleTimeout) : .proceed
        case .head(let started, _):
            if passed(started, limits.connection.readHeaderTimeout) { return .refuse(.requestTimeout, .readHeaderTimeout) }
            return passed(started, limits.connection.readTimeout) ? .refuse(.requestTimeout, .readTimeout) : .proceed
        case .body(let started):
            return passed(started, limits.connection.readTimeout) ? .refuse(.requestTimeout, .readTimeout) : .proceed
        case .draining(let started):
            return passed(started, limits.connection.readTimeout) ? .close(.readTimeout) : .proceed
        case .responding:
            return .proceed
        }
    }

    /// How often to check: a quarter of the shortest timeout, between 50 ms and 1 s.
    var checkInterval: TimeAmount? {
        ConnectionLimits.checkInterval(for: [limits.connection.readHeaderTimeout, limits.connection.readTimeout, limits.idleTimeout])
    }
}

/// Sits below the HTTP codec and enforces `HTTP1Deadlines`: a slowloris peer trickling its head, a
/// body that never ends, an idle kept-alive connection and an oversized head are all cut off here,
/// with a raw 408/431 when a request was under way.
final class HTTP1ConnectionGuard: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var deadlines: HTTP1Deadlines
    private let events: ConnectionEvents
    private var check: RepeatedTask?
    private var closing = false

    init(limits: HTTP1Limits, events: ConnectionEvents) {
        deadlines = HTTP1Deadlines(limits: limits, now: .now())
        self.events = events
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard let interval = deadlines.checkInterval else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        check = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let (handler, context) = loopBound.value
            handler.act(handler.deadlines.check(now: .now()), context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        check?.cancel()
        check = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        deadlines.read(unwrapInboundIn(data).readableBytes, now: .now())
        context.fireChannelRead(data)
        act(deadlines.checkHeadSize(), context: context)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if let progress = event as? HTTP1RequestProgress {
            deadlines.progress(progress, now: .now())
            promise?.succeed()
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    private func act(_ verdict: HTTP1Deadlines.Verdict, context: ChannelHandlerContext) {
        guard !closing else { return }
        switch verdict {
        case .proceed:
            return
        case .close(let reason):
            closing = true
            events.closed(reason)
            context.close(promise: nil)
        case .refuse(let status, let reason):
            closing = true
            events.closed(reason)
            let text = "HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: text))).whenComplete { _ in
                context.close(promise: nil)
            }
        }
    }
}

/// Collects one request at a time (HTTPServerPipelineHandler orders pipelined requests) and writes the
/// responder's answer. Bodies over the limit are discarded as they arrive, never buffered.
final class HTTP1RequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        case idle
        case reading(HTTPRequestHead, ByteBuffer)
        case discarding(HTTPRequestHead, HTTP1Response)
        /// Answered before the body ended (over the size limit); the rest is read and dropped, then the
        /// connection closes.
        case answeredEarly
    }

    private let responder: any HTTP1Responder
    private let limits: HTTP1Limits
    private let events: ConnectionEvents
    private var state = State.idle
    /// Set once the handler has left the pipeline: a late answer then has nowhere to go.
    private var removed = false

    init(responder: any HTTP1Responder, limits: HTTP1Limits = HTTP1Limits(), events: ConnectionEvents = .ignored) {
        self.responder = responder
        self.limits = limits
        self.events = events
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        removed = true
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // HTTPServerProtocolErrorHandler has answered 400 and closes; count it.
        if error is HTTPParserError { events.closed(.protocolError) }
        context.fireErrorCaught(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            context.triggerUserOutboundEvent(HTTP1RequestProgress.headReceived, promise: nil)
            if head.headers.count > limits.maxHeaderCount {
                events.closed(.headerTooLarge)
                var refusal = HTTP1Response(status: .init(statusCode: 431, reasonPhrase: "Request Header Fields Too Large"),
                                            headers: ["content-type": "text/plain", "connection": "close"],
                                            body: ByteBuffer(string: "more than max_header_count (\(limits.maxHeaderCount)) header fields\n"))
                refusal.closeAfter = true
                state = .discarding(head, refusal)
            } else if let early = responder.respond(toHead: head) {
                state = .discarding(head, early)
            } else if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > responder.maxBodySize {
                answerEarly(responder.tooLarge(head), for: head, context: context)
            } else {
                state = .reading(head, context.channel.allocator.buffer(capacity: 0))
            }
        case .body(var chunk):
            guard case .reading(let head, var body) = state else { return }
            if body.readableBytes + chunk.readableBytes > responder.maxBodySize {
                answerEarly(responder.tooLarge(head), for: head, context: context)
                return
            }
            state = .idle  // let `body` be uniquely referenced while it grows
            if body.capacity == 0, chunk.readableBytes > 0 {
                let expected = head.headers.first(name: "content-length").flatMap(Int.init) ?? chunk.readableBytes
                body = context.channel.allocator.buffer(capacity: min(max(expected, chunk.readableBytes), responder.maxBodySize))
            }
            body.writeBuffer(&chunk)
            state = .reading(head, body)
        case .end:
            context.triggerUserOutboundEvent(HTTP1RequestProgress.requestEnded, promise: nil)
            let current = state
            state = .idle
            switch current {
            case .idle: return
            case .reading(let head, let body):
                // HTTPServerPipelineHandler holds a pipelined next request back until this answer has ended.
                let answer = responder.respond(to: head, body: body, eventLoop: context.eventLoop)
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                answer.whenComplete { result in
                    let (handler, context) = loopBound.value
                    guard !handler.removed else { return }
                    switch result {
                    case .success(let response):
                        handler.write(response, for: head, context: context)
                    case .failure:
                        var failed = HTTP1Response(status: .internalServerError, headers: ["content-type": "text/plain"],
                                                   body: ByteBuffer(string: "the request could not be handled\n"))
                        failed.closeAfter = true
                        handler.write(failed, for: head, context: context)
                    }
                }
            case .discarding(let head, let response):
                write(response, for: head, context: context)
            case .answeredEarly:
                context.close(promise: nil)
            }
        }
    }

    /// Answers now, without waiting for a body that will not be used (RFC 9110 §15.5.14: 413 may close
    /// the connection); the body is drained until it ends (so the client reads the answer rather than
    /// a reset), within `read_timeout`.
    private func answerEarly(_ response: HTTP1Response, for head: HTTPRequestHead, context: ChannelHandlerContext) {
        var response = response
        response.closeAfter = true
        state = .answeredEarly
        write(response, for: head, context: context, closeWhenWritten: false)
    }

    private func write(_ response: HTTP1Response, for request: HTTPRequestHead, context: ChannelHandlerContext,
                       closeWhenWritten: Bool = true) {
        var headers = response.headers
        headers.replaceOrAdd(name: "content-length", value: String(response.body?.readableBytes ?? 0))
        let keepAlive = request.isKeepAlive && !headers.contains(name: "connection") && !response.closeAfter
        if !keepAlive, !headers.contains(name: "connection") { headers.add(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: request.version, status: response.status, headers: headers)
        // Before the response's end: a pipelined request behind this one may be delivered during it.
        context.triggerUserOutboundEvent(HTTP1RequestProgress.responseStarted, promise: nil)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body = response.body, body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        if keepAlive || !closeWhenWritten {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
