import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import HTTP2
import Pipeline
import ServiceLifecycle

/// A complete HTTP/1.1 response.
public struct HTTP1Response: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer?

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// Answers requests. Called on the connection's event loop; must not block.
public protocol HTTP1Responder: Sendable {
    /// The largest body read into memory; a larger one is discarded and answered with `tooLarge`.
    var maxBodySize: Int { get }
    /// Answers from the head alone (wrong path, method or content type); nil to read the body.
    func respond(toHead head: HTTPRequestHead) -> HTTP1Response?
    /// The answer for a body over `maxBodySize`.
    func tooLarge(_ head: HTTPRequestHead) -> HTTP1Response
    /// Answers a complete request.
    func respond(to head: HTTPRequestHead, body: ByteBuffer, eventLoop: any EventLoop) -> HTTP1Response
}

/// An HTTP/1.1 server on SwiftNIO as a `Service`: binds on `run`, announces the bound address, and on
/// graceful shutdown stops accepting, lets requests in flight finish, then closes every connection.
public final class HTTP1Server: Service, Sendable {
    private let endpoint: Endpoint
    private let responder: any HTTP1Responder
    private let group: any EventLoopGroup
    private let onListening: @Sendable (String) -> Void
    private let logger: Logger

    public init(endpoint: Endpoint, responder: any HTTP1Responder, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger, onListening: @escaping @Sendable (String) -> Void) {
        self.endpoint = endpoint
        self.responder = responder
        self.group = group
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let responder = self.responder
        try await QuiescingServer.run(host: endpoint.host, port: endpoint.port, group: group, initializeConnection: { channel in
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(HTTP1RequestHandler(responder: responder))
        }, onListening: onListening)
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
    }

    private let responder: any HTTP1Responder
    private var state = State.idle

    init(responder: any HTTP1Responder) {
        self.responder = responder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            if let early = responder.respond(toHead: head) {
                state = .discarding(head, early)
            } else if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > responder.maxBodySize {
                state = .discarding(head, responder.tooLarge(head))
            } else {
                state = .reading(head, context.channel.allocator.buffer(capacity: 0))
            }
        case .body(var chunk):
            guard case .reading(let head, var body) = state else { return }
            if body.readableBytes + chunk.readableBytes > responder.maxBodySize {
                state = .discarding(head, responder.tooLarge(head))
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
            let current = state
            state = .idle
            switch current {
            case .idle: return
            case .reading(let head, let body):
                write(responder.respond(to: head, body: body, eventLoop: context.eventLoop), for: head, context: context)
            case .discarding(let head, let response):
                write(response, for: head, context: context)
            }
        }
    }

    private func write(_ response: HTTP1Response, for request: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = response.headers
        headers.replaceOrAdd(name: "content-length", value: String(response.body?.readableBytes ?? 0))
        let keepAlive = request.isKeepAlive && !headers.contains(name: "connection")
        if !keepAlive, !headers.contains(name: "connection") { headers.add(name: "connection", value: "close") }
        let head = HTTPResponseHead(version: request.version, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body = response.body, body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        if keepAlive {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
