import Foundation
import Pipeline

/// `exporters: loadbalancing:` settings, named as the OpenTelemetry Collector's loadbalancing exporter
/// names them, so a block written for the Collector works here:
///
/// ```yaml
/// loadbalancing:
///   routing_key: traceID          # or service
///   protocol:
///     otlp: {timeout: 1s, sending_queue: {...}, retry_on_failure: {...}}   # no endpoint
///   resolver:
///     static: {hostnames: [replica-1:4317, replica-2:4317]}
///     # or dns: {hostname: replicas.internal, port: 4317, interval: 5s, timeout: 1s}
/// ```
public struct LoadBalancingConfiguration: Sendable, Equatable {
    /// What keeps spans together on one backend.
    public enum RoutingKey: String, Sendable {
        /// Every span of a trace goes to the same backend (the default).
        case traceID
        /// Every span of a service (`service.name` of its resource) goes to the same backend.
        case service
    }

    /// Where the backends come from.
    public enum Resolver: Sendable, Equatable {
        /// A fixed list of `host:port` (a host without a port gets 4317, as in the Collector).
        case fixed(hostnames: [String])
        /// Every address `hostname` resolves to, on `port`, looked up again every `interval`; a lookup
        /// that takes longer than `timeout` fails and the previous list stays.
        case dns(hostname: String, port: Int, interval: Duration, timeout: Duration)
    }

    /// The port a backend gets when none is given: OTLP/gRPC's.
    public static let defaultPort = 4317

    /// `routing_key`. Default `traceID`.
    public var routingKey = RoutingKey.traceID
    /// `protocol.otlp`: the otlp exporter's settings (all but `endpoint`), used for every backend; each
    /// backend gets its own queue with these `sending_queue` settings (with `storage`, a folder of its own
    /// under it).
    public var otlp: OTLPExporterConfiguration
    /// `resolver`: exactly one of `static` and `dns`.
    public var resolver: Resolver

    /// Reads the section, failing on the first mistake with its dotted key.
    public init(section: ConfigSection) throws(ConfigurationError) {
        let keyName = try section.string("routing_key", default: routingKey.rawValue)
        guard let routingKey = RoutingKey(rawValue: keyName) else {
            throw ConfigurationError(key: section.keyPath("routing_key"),
                                     "expected traceID or service (the Collector's other keys are for metrics and logs), not \"\(keyName)\"")
        }
        self.routingKey = routingKey
        guard let protocolSection = try section.section("protocol") else {
            throw ConfigurationError(key: section.keyPath("protocol"), "required: protocol: otlp: {...}")
        }
        guard let otlpSection = try protocolSection.section("otlp") else {
            throw ConfigurationError(key: protocolSection.keyPath("otlp"), "required: the otlp exporter's settings, without endpoint")
        }
        otlp = try OTLPExporterConfiguration(section: otlpSection, endpoint: "backend:\(Self.defaultPort)")
        try protocolSection.finish()

        guard let resolverSection = try section.section("resolver") else {
            throw ConfigurationError(key: section.keyPath("resolver"), "required: static: {hostnames: [...]} or dns: {hostname: ...}")
        }
        let staticSection = try resolverSection.section("static")
        let dnsSection = try resolverSection.section("dns")
        for unsupported in ["k8s", "aws_cloud_map"] where resolverSection.value(unsupported) != nil {
            throw ConfigurationError(key: resolverSection.keyPath(unsupported), "not supported; use dns with a headless service's name")
        }
        try resolverSection.finish()
        switch (staticSection, dnsSection) {
        case (nil, nil):
            throw ConfigurationError(key: resolverSection.keyPath("static"), "one resolver is required: static or dns")
        case (.some, .some):
            throw ConfigurationError(key: resolverSection.keyPath("dns"), "only one resolver may be given: static or dns")
        case (let staticSection?, nil):
            let hostnames = try staticSection.stringList("hostnames", default: [])
            try staticSection.finish()
            guard !hostnames.isEmpty else {
                throw ConfigurationError(key: staticSection.keyPath("hostnames"), "at least one host:port is required")
            }
            var backends: [String] = []
            for (index, hostname) in hostnames.enumerated() {
                guard let backend = Self.backendAddress(hostname) else {
                    throw ConfigurationError(key: "\(staticSection.keyPath("hostnames"))[\(index)]", "expected host or host:port, not \"\(hostname)\"")
                }
                backends.append(backend)
            }
            resolver = .fixed(hostnames: backends)
        case (nil, let dns?):
            guard let hostname = try dns.optionalString("hostname"), !hostname.isEmpty else {
                throw ConfigurationError(key: dns.keyPath("hostname"), "required: the name whose addresses are the backends")
            }
            let port = try dns.int("port", default: Self.defaultPort, in: 1...65535)
            let interval = try dns.duration("interval", default: .seconds(5), minimum: .milliseconds(100))
            let timeout = try dns.duration("timeout", default: .seconds(1), minimum: .milliseconds(1))
            try dns.finish()
            resolver = .dns(hostname: hostname, port: port, interval: interval, timeout: timeout)
        }
        try section.finish()
    }

    /// `host:port` for a configured backend; a host alone gets the default port.
    static func backendAddress(_ text: String) -> String? {
        var trimmed = text
        for scheme in ["http://", "https://"] where trimmed.hasPrefix(scheme) { trimmed.removeFirst(scheme.count) }
        guard !trimmed.isEmpty, !trimmed.contains("/") else { return nil }
        if let endpoint = Endpoint(trimmed) { return endpoint.description }
        if trimmed.contains(":") && !trimmed.hasPrefix("[") { return nil }
        return Endpoint(host: trimmed.trimmingCharacters(in: ["[", "]"]), port: defaultPort).description
    }
}
