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
    /// Each sink's `match:` (nil: every alert), in the order of `sinks`.
    public var matches: [AlertMatch?] = []
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
                let entry = try ConfigSection(element, path: path)
                var match: AlertMatch?
                if let matchSection = try entry.section("match") { match = try AlertMatch(section: matchSection) }
                if let sink = try Self.sink(entry) {
                    sinks.append(sink)
                    matches.append(match)
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
        let kinds = section.keys.filter { $0 != "match" }
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

/// A `notify:` entry's `match:`: the alerts it gets. Every key given must hold (a key's list: any of its
/// values); an entry without `match:` gets every alert.
public struct AlertMatch: Sendable, Equatable {
    /// `severity:` — critical, error, warning, info.
    public var severities: [AlertSeverity] = []
    /// `agent_type:` — the alert's `agent_type`.
    public var agentTypes: [String] = []
    /// `agent:` — the alert's `agent`.
    public var agents: [String] = []
    /// `rule:` — the alert's `rule` (`error_burst`, `anomaly/latency`).
    public var rules: [String] = []
    /// `signal:` — an anomaly's signal (`latency`); threshold alerts never match a `signal:`.
    public var signals: [String] = []
    /// `labels:` — an anomaly's labels (`peer`, `model`, `tool`) or a threshold alert's `group_by` values
    /// (`agent.name`), each key any of its values.
    public var labels: [(key: String, values: [String])] = []

    /// Matches everything.
    public init() {}

    /// True when the alert meets every key given.
    public func accepts(_ alert: Alert) -> Bool {
        if !severities.isEmpty, !severities.contains(alert.severity) { return false }
        if !agentTypes.isEmpty, !agentTypes.contains(alert.agentType ?? "") { return false }
        if !agents.isEmpty, !agents.contains(alert.agent) { return false }
        if !rules.isEmpty, !rules.contains(alert.rule) { return false }
        if !signals.isEmpty, !signals.contains(alert.anomaly?.signal ?? "") { return false }
        if !labels.isEmpty {
            let present = alert.labelPairs
            for (key, values) in labels {
                guard present.contains(where: { $0.0 == key && values.contains($0.1) }) else { return false }
            }
        }
        return true
    }

    /// Reads a `match:` section, naming the key on a mistake.
    public init(section: ConfigSection) throws(ConfigurationError) {
        for name in try section.stringList("severity", default: []) {
            guard let severity = AlertSeverity(rawValue: name) else {
                throw ConfigurationError(key: section.keyPath("severity"), "expected critical, error, warning or info, not \"\(name)\"")
            }
            severities.append(severity)
        }
        agentTypes = try section.stringList("agent_type", default: [])
        agents = try section.stringList("agent", default: [])
        rules = try section.stringList("rule", default: [])
        signals = try section.stringList("signal", default: [])
        if let labelSection = try section.section("labels") {
            for key in labelSection.keys {
                let values = try labelSection.stringList(key, default: [])
                guard !values.isEmpty else { throw ConfigurationError(key: labelSection.keyPath(key), "needs a value or a list of values") }
                labels.append((key, values))
            }
            try labelSection.finish()
        }
        try section.finish()
    }

    public static func == (lhs: AlertMatch, rhs: AlertMatch) -> Bool {
        lhs.severities == rhs.severities && lhs.agentTypes == rhs.agentTypes && lhs.agents == rhs.agents && lhs.rules == rhs.rules
            && lhs.signals == rhs.signals && lhs.labels.map { $0.key } == rhs.labels.map { $0.key }
            && lhs.labels.map { $0.values } == rhs.labels.map { $0.values }
    }
}

extension Alert {
    /// The labels `match:` sees: an anomaly's labels, or the `group_by` values of a threshold alert's `group`.
    var labelPairs: [(String, String)] {
        if let anomaly { return anomaly.labels }
        return group.split(separator: ",").compactMap { (pair: Substring) -> (String, String)? in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        }
    }
}
