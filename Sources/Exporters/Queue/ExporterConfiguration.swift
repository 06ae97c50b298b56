import Pipeline

/// Settings every network exporter shares: `timeout`, `sending_queue`, `retry_on_failure`.
public struct ExporterCommonConfiguration: Sendable, Equatable {
    /// How long one send may take. Default 5s.
    public var timeout: Duration = .seconds(5)
    public var queue = QueueConfiguration()
    public var retry = RetryConfiguration()
    /// `tls:`; nil (the default) for plain connections (or the system's CAs for an https:// URL).
    public var tls: TLSClientSettings?

    public init() {}

    /// Reads the shared keys from an exporter's section (which the exporter then finishes).
    public init(section: ConfigSection) throws(ConfigurationError) {
        timeout = try section.duration("timeout", default: timeout, minimum: .milliseconds(1))
        if let queueSection = try section.section("sending_queue") { queue = try QueueConfiguration(section: queueSection) }
        if let retrySection = try section.section("retry_on_failure") { retry = try RetryConfiguration(section: retrySection) }
        tls = try section.section("tls").map { (tls) throws(ConfigurationError) in try TLSClientSettings(section: tls) }
        if tls?.insecure == true { tls = nil }
    }

    /// `compression: gzip|none`.
    public static func gzip(_ section: ConfigSection) throws(ConfigurationError) -> Bool {
        let compression = try section.string("compression", default: "none")
        switch compression {
        case "gzip": return true
        case "none", "": return false
        default: throw ConfigurationError(key: section.keyPath("compression"), "expected gzip or none, not \"\(compression)\"")
        }
    }

    /// `headers: {name: value}`.
    public static func headers(_ section: ConfigSection) throws(ConfigurationError) -> [(String, String)] {
        guard let headers = try section.section("headers") else { return [] }
        var result: [(String, String)] = []
        for key in headers.keys {
            result.append((key.lowercased(), try headers.string(key, default: "")))
        }
        try headers.finish()
        return result
    }
}
