import Pipeline

/// How urgent an alert is; the same four words as PagerDuty's Events API v2 `payload.severity`.
public enum AlertSeverity: String, Sendable, Equatable, CaseIterable {
    case critical, error, warning, info
}

/// One `notify:` entry: where alerts are POSTed.
public enum AlertSink: Sendable, Equatable {
    /// `webhook: URL` or `webhook: {url, headers}`: the alert as JSON.
    case webhook(url: String, headers: [String: String])
    /// `slack: URL` or `slack: {url}`: a Slack incoming-webhook message.
    case slack(url: String)
    /// `pagerduty: {routing_key, url}`: a PagerDuty Events API v2 trigger event.
    case pagerDuty(routingKey: String, url: String)

    /// The PagerDuty Events API v2 endpoint.
    public static let pagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

    /// `webhook`, `slack` or `pagerduty`.
    public var kind: String {
        switch self {
        case .webhook: "webhook"
        case .slack: "slack"
        case .pagerDuty: "pagerduty"
        }
    }

    /// Where the alert is POSTed.
    public var url: String {
        switch self {
        case .webhook(let url, _), .slack(let url), .pagerDuty(_, let url): url
        }
    }
}

/// `delivery:`: how alerts reach the sinks.
public struct AlertDeliverySettings: Sendable, Equatable {
    /// Alerts waiting per sink at most; more are dropped and counted. Default 1000.
    public var queueSize = 1000
    /// One request's time limit. Default 5s.
    public var timeout: Duration = .seconds(5)
    /// `retry_on_failure:`, the exporters' settings; for alerts the first retry comes after 1s.
    public var retry: RetryConfiguration = {
        var retry = RetryConfiguration()
        retry.initialInterval = .seconds(1)
        return retry
    }()

    /// The defaults.
    public init() {}
}

/// A component's `notify:` and `delivery:` keys, read the same way by every component that fires alerts.
public struct AlertNotifications: Sendable, Equatable {
    /// The sinks switched on, in order.
    public var sinks: [AlertSink] = []
    /// The `notify:` entries switched off because their URL or routing key expanded to nothing (an unset
    /// `${env:…}`), by key.
    public var disabledSinks: [String] = []
    /// Delivery settings.
    public var delivery = AlertDeliverySettings()

    /// No sinks, default delivery.
    public init() {}

    /// Reads `notify:` and `delivery:` from the component's section, naming the key on a bad value.
    public init(section: ConfigSection) throws(ConfigurationError) {
        if let list = section.value("notify") {
            guard case .sequence(let elements) = list else {
                throw ConfigurationError(key: section.keyPath("notify"), "expected a list of sinks ({webhook: URL}, {slack: URL}, {pagerduty: {routing_key}})")
            }
            for (index, element) in elements.enumerated() {
                let path = "\(section.keyPath("notify"))[\(index)]"
                if let sink = try Self.sink(try ConfigSection(element, path: path)) {
                    sinks.append(sink)
                } else {
                    disabledSinks.append(path)
                }
            }
        }
        if let deliverySection = try section.section("delivery") {
            delivery.queueSize = try deliverySection.int("queue_size", default: delivery.queueSize, in: 1...1_000_000)
            delivery.timeout = try deliverySection.duration("timeout", default: delivery.timeout, minimum: .milliseconds(1))
            if let retrySection = try deliverySection.section("retry_on_failure") {
                delivery.retry = try RetryConfiguration(section: retrySection, defaults: delivery.retry)
            }
            try deliverySection.finish()
        }
    }
    /// A sink; nil when its URL (or routing key) expanded to nothing, which switches it off.
    private static func sink(_ section: ConfigSection) throws(ConfigurationError) -> AlertSink? {
        let kinds = section.keys
        guard kinds.count == 1, let kind = kinds.first else {
            throw ConfigurationError(key: section.path, "expected one of {webhook: URL}, {slack: URL}, {pagerduty: {routing_key: KEY}}")
        }
        let sink: AlertSink?
        switch kind {
        case "webhook":
            if case .scalar = section.value(kind) {
                let url = try section.string(kind, default: "")
                sink = url.isEmpty ? nil : .webhook(url: try checkedURL(url, section.keyPath(kind)), headers: [:])
            } else {
                guard let settings = try section.section(kind) else { return nil }
                let url = try settings.string("url", default: "")
                var headers: [String: String] = [:]
                if let headerSection = try settings.section("headers") {
                    for name in headerSection.keys { headers[name] = try headerSection.string(name, default: "") }
                    try headerSection.finish()
                }
                try settings.finish()
                sink = url.isEmpty ? nil : .webhook(url: try checkedURL(url, settings.keyPath("url")), headers: headers)
            }
        case "slack":
            var url: String
            if case .scalar = section.value(kind) {
                url = try section.string(kind, default: "")
                if !url.isEmpty { url = try checkedURL(url, section.keyPath(kind)) }
            } else {
                guard let settings = try section.section(kind) else { return nil }
                url = try settings.string("url", default: "")
                try settings.finish()
                if !url.isEmpty { url = try checkedURL(url, settings.keyPath("url")) }
            }
            sink = url.isEmpty ? nil : .slack(url: url)
        case "pagerduty":
            guard let settings = try section.section(kind) else { return nil }
            let routingKey = try settings.string("routing_key", default: "")
            let url = try checkedURL(try settings.string("url", default: AlertSink.pagerDutyURL), settings.keyPath("url"))
            try settings.finish()
            sink = routingKey.isEmpty ? nil : .pagerDuty(routingKey: routingKey, url: url)
        default:
            throw ConfigurationError(key: section.keyPath(kind), "unknown sink; expected webhook, slack or pagerduty")
        }
        try section.finish()
        return sink
    }

    private static func checkedURL(_ url: String, _ key: String) throws(ConfigurationError) -> String {
        guard url.hasPrefix("http://") || url.hasPrefix("https://"), url.count > 8 else {
            throw ConfigurationError(key: key, "expected an http:// or https:// URL, not \"\(url)\"")
        }
        return url
    }
}
