import Foundation
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A service that listens on a socket. The collector binds every listener before it serves on any, so
/// that one that cannot bind stops the start with nothing else listening.
public protocol Listener: Service {
    /// Binds the socket without accepting connections yet; fails naming the listener and its address.
    func bind() async throws(ListenError)
    /// Closes a socket bound by `bind()` that was never served (a later listener failed to bind).
    func closeUnserved() async
}

/// A listener that is one `QuiescingServer` with handlers of its own: binding, closing and serving are
/// the server's, announcing the bound address to `onListening`.
public protocol QuiescingListener: Listener {
    /// The server that owns the socket.
    var server: QuiescingServer { get }
    /// Told the bound `host:port` once the listener serves.
    var onListening: @Sendable (String) -> Void { get }
}

extension QuiescingListener {
    public func bind() async throws(ListenError) {
        try await server.bind()
    }

    public func closeUnserved() async {
        await server.closeUnserved()
    }

    public func run() async throws {
        try await server.run(onListening: onListening)
    }
}

/// A listener could not bind: which one (its configuration key), where, and why.
public struct ListenError: Error, CustomStringConvertible, Sendable {
    /// The dotted configuration key of the listener (`receivers.otlp.protocols.http`, `service.admin`).
    public var listener: String
    /// The `host:port` it was configured with.
    public var address: String
    /// What the system said (`address already in use`).
    public var cause: String

    public init(listener: String, address: String, cause: String) {
        self.listener = listener
        self.address = address
        self.cause = cause
    }

    /// The cause of `error` in words: the C library's text for an errno (`address already in use`).
    public static func cause(of error: any Error) -> String {
        if let error = error as? IOError {
            let text = String(cString: strerror(error.errnoCode))
            return text.prefix(1).lowercased() + text.dropFirst()
        }
        if error is SocketAddressError.UnknownHost {
            return "the host name does not resolve"
        }
        if let error = error as? SocketAddressError, case .unknown = error {
            return "the host name does not resolve"
        }
        return "\(error)"
    }

    public var description: String { "\(listener): cannot listen on \(address): \(cause)" }
}

/// The life of a listening SwiftNIO server, shared by the gRPC and HTTP/1 servers: bind (without
/// accepting), then serve — announce the bound address, accept until graceful shutdown or cancellation,
/// then quiesce: stop accepting, let each connection finish what it is answering, close it — and return
/// once the last one has closed.
public final class QuiescingServer: Sendable {
    private enum State {
        case unbound
        case bound(any Channel)
        case closed
    }

    /// The dotted configuration key naming this listener in errors.
    public let name: String
    private let host: String
    private let port: Int
    private let group: any EventLoopGroup
    private let maxConnections: Int?
    private let events: ConnectionEvents
    private let initializeConnection: @Sendable (any Channel) throws -> Void
    private let quiesce: ServerQuiescingHelper
    private let state = Mutex(State.unbound)

    /// `maxConnections` caps the connections open at once: one accepted past it is closed before it is
    /// read, and `events` is told.
    public init(name: String, host: String, port: Int, group: any EventLoopGroup, maxConnections: Int? = nil,
                events: ConnectionEvents = .ignored, initializeConnection: @escaping @Sendable (any Channel) throws -> Void) {
        self.name = name
        self.host = host
        self.port = port
        self.group = group
        self.maxConnections = maxConnections
        self.events = events
        self.initializeConnection = initializeConnection
        quiesce = ServerQuiescingHelper(group: group)
    }

    /// Binds and listens, but accepts nothing until `run`: the server channel does not read (accept)
    /// until then. Binding twice is a no-op.
    public func bind() async throws(ListenError) {
        guard case .unbound = state.withLock({ $0 }) else { return }
        let quiesce = self.quiesce
        let open = OpenConnections()
        let maxConnections = self.maxConnections
        let events = self.events
        let initializeConnection = self.initializeConnection
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(.autoRead, value: false)
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                    }
                }
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer { channel in
                    if let maxConnections {
                        guard open.count.wrappingAdd(1, ordering: .relaxed).newValue <= maxConnections else {
                            open.count.wrappingSubtract(1, ordering: .relaxed)
                            events.closed(.connectionLimit)
                            return channel.close()
                        }
                        channel.closeFuture.whenComplete { _ in open.count.wrappingSubtract(1, ordering: .relaxed) }
                    }
                    return channel.eventLoop.makeCompletedFuture { try initializeConnection(channel) }
                }
                .bind(host: host, port: port)
                .get()
        } catch {
            throw ListenError(listener: name, address: host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)",
                              cause: ListenError.cause(of: error))
        }
        state.withLock { $0 = .bound(channel) }
    }

    /// The port bound (the system's choice for port 0), while bound and not yet closed.
    public var boundPort: Int? {
        guard case .bound(let channel) = state.withLock({ $0 }) else { return nil }
        return channel.localAddress?.port
    }

    /// Closes the socket if `bind` opened it and `run` never served it.
    public func closeUnserved() async {
        let channel: (any Channel)? = state.withLock { state in
            guard case .bound(let channel) = state else { return nil }
            state = .closed
            return channel
        }
        try? await channel?.close()
    }

    /// Binds (unless `bind` already did), announces the bound address, accepts and serves until graceful
    /// shutdown or cancellation, then quiesces.
    public func run(onListening: @Sendable (String) -> Void) async throws {
        try await bind()
        guard case .bound(let channel) = state.withLock({ $0 }) else { return }
        try await channel.setOption(.autoRead, value: true).get()
        onListening(channel.localAddress.map { "\($0.ipAddress ?? host):\($0.port ?? port)" } ?? "\(host):\(port)")

        let quiesce = self.quiesce
        let allClosed = channel.eventLoop.makePromise(of: Void.self)
        let initiated = Mutex(false)
        let initiateShutdown: @Sendable () -> Void = {
            guard initiated.withLock({ let first = !$0; $0 = true; return first }) else { return }
            quiesce.initiateShutdown(promise: allClosed)
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                try? await channel.closeFuture.get()
            } onGracefulShutdown: {
                initiateShutdown()
            }
        } onCancel: {
            initiateShutdown()
        }
        initiateShutdown()
        try? await allClosed.futureResult.get()
        state.withLock { $0 = .closed }
    }
}

/// Connections a listener has open.
final class OpenConnections: Sendable {
    let count = Atomic<Int>(0)
}
