import NIOCore

/// What a listener does about slow, idle and too many connections; shared by the gRPC and HTTP/1
/// servers. Every limit is optional here; the receivers' configurations supply the defaults.
public struct ConnectionLimits: Sendable, Equatable {
    /// Connections open at once; one accepted past it is closed at once. nil: no limit.
    public var maxConnections: Int?
    /// The start of a request must arrive in full within this: for HTTP/1 the request head, for HTTP/2
    /// the connection preface, every frame and every header block. A slowloris peer that trickles
    /// bytes is cut off here. nil: no limit.
    public var readHeaderTimeout: Duration?
    /// A whole request, body included, must arrive within this of its start (HTTP/1: the first byte
    /// of the request; HTTP/2: the stream's HEADERS). nil: no limit.
    public var readTimeout: Duration?

    public init(maxConnections: Int? = nil, readHeaderTimeout: Duration? = nil, readTimeout: Duration? = nil) {
        self.maxConnections = maxConnections
        self.readHeaderTimeout = readHeaderTimeout
        self.readTimeout = readTimeout
    }

    /// How often a connection checks its deadlines: a quarter of the shortest timeout, between 50 ms and 1 s.
    public var checkInterval: TimeAmount? { Self.checkInterval(for: [readHeaderTimeout, readTimeout]) }

    /// How often to check deadlines of these timeouts (nil: none): a quarter of the shortest, between
    /// 50 ms and 1 s, so a deadline is noticed within a quarter of its length.
    public static func checkInterval(for timeouts: [Duration?]) -> TimeAmount? {
        guard let shortest = timeouts.compactMap({ $0 }).min() else { return nil }
        return .nanoseconds(min(max(shortest.wholeNanoseconds / 4, 50_000_000), 1_000_000_000))
    }
}

/// Why a server closed or refused a connection, as the `reason` label of
/// `agenttrace_receiver_connections_closed_total`.
public enum ConnectionCloseReason: String, Sendable, CaseIterable {
    /// Accepted past `max_connections`.
    case connectionLimit = "connection_limit"
    /// The request head (HTTP/1) or a frame (HTTP/2) did not arrive within `read_header_timeout`.
    case readHeaderTimeout = "read_header_timeout"
    /// The request did not arrive in full within `read_timeout` (HTTP/1; HTTP/2 answers the stream instead).
    case readTimeout = "read_timeout"
    /// Nothing happened on the connection for the idle timeout.
    case idleTimeout = "idle_timeout"
    /// The request head was over `max_header_bytes` or `max_header_count`.
    case headerTooLarge = "header_too_large"
    /// The peer broke the protocol (malformed HTTP/1, an HTTP/2 connection error).
    case protocolError = "protocol_error"
    /// The TLS handshake failed (no client certificate, wrong version, not TLS at all).
    case tlsHandshake = "tls_handshake"
}

/// Tells a receiver why the server closed a connection; it counts them.
public struct ConnectionEvents: Sendable {
    /// Called once per connection closed or refused by the server for `reason`.
    public var closed: @Sendable (ConnectionCloseReason) -> Void

    public init(closed: @escaping @Sendable (ConnectionCloseReason) -> Void) {
        self.closed = closed
    }

    /// Counts nothing.
    public static let ignored = ConnectionEvents { _ in }
}
