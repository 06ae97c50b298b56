import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The life of a listening SwiftNIO server, shared by the gRPC and HTTP/1 servers: bind, announce the
/// bound address, serve until graceful shutdown or cancellation, then quiesce — stop accepting, let each
/// connection finish what it is answering, close it — and return once the last one has closed.
public enum QuiescingServer {
    /// `maxConnections` caps the connections open at once: one accepted past it is closed before it is
    /// read, and `events` is told.
    public static func run(host: String, port: Int, group: any EventLoopGroup, maxConnections: Int? = nil,
                           events: ConnectionEvents = .ignored,
                           initializeConnection: @escaping @Sendable (any Channel) throws -> Void,
                           onListening: @Sendable (String) -> Void) async throws {
        let quiesce = ServerQuiescingHelper(group: group)
        let open = OpenConnections()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
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
        onListening(channel.localAddress.map { "\($0.ipAddress ?? host):\($0.port ?? port)" } ?? "\(host):\(port)")

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
    }
}

/// Connections a listener has open.
final class OpenConnections: Sendable {
    let count = Atomic<Int>(0)
}
