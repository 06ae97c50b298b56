import Pipeline
import ServerSupport

/// The defaults of the limits every listener (OTLP/HTTP, OTLP/gRPC, admin) shares, documented in
/// docs/hardening.md.
public enum ListenerDefaults {
    /// `read_header_timeout`: 10 s for an HTTP/1 request head, an HTTP/2 preface, frame or header block.
    public static let readHeaderTimeout: Duration = .seconds(10)
    /// `read_timeout`: 60 s for a whole request, body included.
    public static let readTimeout: Duration = .seconds(60)
    /// `idle_timeout` (HTTP/1): 120 s between requests on a kept-alive connection.
    public static let idleTimeout: Duration = .seconds(120)
    /// `max_connections`: 1000 connections open at once per listener.
    public static let maxConnections = 1000
}

extension ConfigSection {
    /// A timeout where `0` turns the limit off (nil).
    func timeout(_ key: String, default defaultValue: Duration) throws(ConfigurationError) -> Duration? {
        let value = try duration(key, default: defaultValue)
        return value == .zero ? nil : value
    }

    /// `max_connections`, `read_header_timeout` and `read_timeout` of a listener section.
    public func connectionLimits() throws(ConfigurationError) -> ConnectionLimits {
        let maxConnections = try int("max_connections", default: ListenerDefaults.maxConnections, in: 0...1_000_000)
        return ConnectionLimits(
            maxConnections: maxConnections == 0 ? nil : maxConnections,
            readHeaderTimeout: try timeout("read_header_timeout", default: ListenerDefaults.readHeaderTimeout),
            readTimeout: try timeout("read_timeout", default: ListenerDefaults.readTimeout))
    }

    /// `auth:` when present.
    public func bearerAuth() throws(ConfigurationError) -> BearerAuthConfiguration? {
        try section("auth").map { (auth) throws(ConfigurationError) in try BearerAuthConfiguration(section: auth) }
    }
}

extension HTTP1Limits {
    /// Reads an HTTP/1 listener's limits from its section (`max_connections`, `read_header_timeout`,
    /// `read_timeout`, `idle_timeout`, `max_header_bytes`, `max_header_count`); the caller finishes the section.
    public init(section: ConfigSection) throws(ConfigurationError) {
        self.init(
            connection: try section.connectionLimits(),
            idleTimeout: try section.timeout("idle_timeout", default: ListenerDefaults.idleTimeout),
            // SwiftNIO's HTTP parser refuses heads over 80 KiB itself (with 400).
            maxHeaderBytes: try section.int("max_header_bytes", default: 64 << 10, in: 1024...(80 << 10)),
            maxHeaderCount: try section.int("max_header_count", default: 100, in: 1...10_000))
    }
}
