import JSONText
import TraceModel

/// One fired alert: what the webhook receives as JSON, what `/api/alerts` lists, and what the Slack and
/// PagerDuty payloads are built from.
public struct Alert: Sendable, Equatable {
    /// A value or threshold as the alert shows it.
    public enum Value: Sendable, Equatable {
        /// A number (attribute values, durations in seconds).
        case number(Double)
        /// Text (attribute values, a status).
        case text(String)
        /// A boolean attribute value.
        case flag(Bool)
    }

    /// The rule that fired.
    public var rule: String
    /// The rule's severity.
    public var severity: AlertSeverity
    /// What the span showed: the attribute's value, the duration in seconds, or the status.
    public var value: Value
    /// What the rule compares with: the number, the text, the duration in seconds, or the status.
    public var threshold: Value
    /// The span's `service.name` (`unknown_service` without one).
    public var service: String
    /// The span's agent: resource `agent.name`, else span `gen_ai.agent.name`, else the service.
    public var agent: String
    /// The resource's `agent.type`, when it has one.
    public var agentType: String?
    /// The span that completed the match.
    public var traceID: TraceID
    /// The span that completed the match.
    public var spanID: SpanID
    /// Its name.
    public var spanName: String
    /// When the alert fired: the span's arrival at the collector, Unix nanoseconds.
    public var time: UInt64
    /// One sentence for people.
    public var message: String
    /// The `group_by` values (`agent.name=research-agent`); empty without `group_by`.
    public var group: String
    /// Matches within the window when it fired; 1 for rules without `count`.
    public var count: Int
    /// The rate window, for rules with `count` above 1.
    public var window: Duration?
    /// Alerts of this rule and group held back by the cooldown since the previous one was sent.
    public var suppressed: Int
    /// What an anomaly detector adds (signal, subject, baseline, score); nil for threshold rules.
    public var anomaly: Anomaly?
    /// The incident an `anomaly_detection` notification summarises, with its alerts; nil for single alerts.
    public var incident: Incident?

    /// The details of an alert fired by `anomaly_detection`.
    public struct Anomaly: Sendable, Equatable {
        /// `latency`, `errors`, `tokens`, `silence`, `loop` or `new_interaction`.
        public var signal: String
        /// What the series is about: the operation, peer, model or callee; empty for agent-wide signals.
        public var subject: String
        /// The typical value, in the units of `value`.
        public var baseline: Value
        /// How unusual `value` is, in the signal's documented units (docs/anomaly-detection.md).
        public var score: Double
        /// Labels for routing and display (`model`, `tool`, `peer`, `cost_usd`), in order.
        public var labels: [(String, String)]

        /// Creates the details.
        public init(signal: String, subject: String, baseline: Value, score: Double, labels: [(String, String)] = []) {
            self.signal = signal
            self.subject = subject
            self.baseline = baseline
            self.score = score
            self.labels = labels
        }

        public static func == (lhs: Anomaly, rhs: Anomaly) -> Bool {
            lhs.signal == rhs.signal && lhs.subject == rhs.subject && lhs.baseline == rhs.baseline && lhs.score == rhs.score
                && lhs.labels.map { $0.0 } == rhs.labels.map { $0.0 } && lhs.labels.map { $0.1 } == rhs.labels.map { $0.1 }
        }
    }

    /// Creates an alert.
    public init(rule: String, severity: AlertSeverity, value: Value, threshold: Value, service: String, agent: String,
                agentType: String? = nil, traceID: TraceID, spanID: SpanID, spanName: String, time: UInt64, message: String,
                group: String = "", count: Int = 1, window: Duration? = nil, suppressed: Int = 0, anomaly: Anomaly? = nil) {
        self.rule = rule
        self.severity = severity
        self.value = value
        self.threshold = threshold
        self.service = service
        self.agent = agent
        self.agentType = agentType
        self.traceID = traceID
        self.spanID = spanID
        self.spanName = spanName
        self.time = time
        self.message = message
        self.group = group
        self.count = count
        self.window = window
        self.suppressed = suppressed
        self.anomaly = anomaly
    }

    /// PagerDuty's deduplication key (at most 255 characters): one incident per rule and group; an incident
    /// notification's is its incident's, so its updates reach the same PagerDuty incident.
    public var dedupKey: String {
        if let incident { return "agenttrace/incident/\(incident.id)" }
        let key = group.isEmpty ? "agenttrace/\(rule)" : "agenttrace/\(rule)/\(group)"
        return String(key.prefix(255))
    }

    /// The fields every payload carries, in the webhook's order.
    public var fields: JSONValue {
        var entries: [(String, JSONValue)] = [
            ("rule", .string(rule)),
            ("severity", .string(severity.rawValue)),
            ("value", value.json),
            ("threshold", threshold.json),
            ("service", .string(service)),
            ("agent", .string(agent)),
            ("agent_type", agentType.map(JSONValue.string) ?? .null),
            ("trace_id", .string(traceID.hex)),
            ("span_id", .string(spanID.hex)),
            ("span_name", .string(spanName)),
            ("time", .string(RFC3339.format(unixNanos: time))),
            ("time_unix_nano", .integer(Int64(clamping: time))),
            ("message", .string(message)),
            ("group", .string(group)),
            ("count", .integer(Int64(count))),
            ("window_seconds", window.map { .number(Double($0.nanoseconds) / 1e9) } ?? .null),
            ("suppressed", .integer(Int64(suppressed))),
        ]
        if let anomaly {
            entries.insert(contentsOf: [
                ("kind", .string("anomaly")),
                ("signal", .string(anomaly.signal)),
                ("subject", .string(anomaly.subject)),
                ("baseline", anomaly.baseline.json),
                ("score", .number(anomaly.score)),
                ("labels", .object(anomaly.labels.map { ($0.0, JSONValue.string($0.1)) })),
            ], at: 2)
        }
        if let incident { entries.append(("incident", incident.json)) }
        return .object(entries)
    }

    /// The webhook body: a JSON object with `rule`, `severity`, `value`, `threshold`, `service`, `agent`,
    /// `agent_type`, `trace_id`, `span_id`, `span_name`, `time` (RFC 3339), `time_unix_nano`, `message`,
    /// `group`, `count`, `window_seconds` and `suppressed`; an anomaly's also `kind` (`anomaly`), `signal`,
    /// `subject`, `baseline`, `score` and `labels`; an incident notification's also `incident` (`id`, `status`,
    /// `probable_cause`, `agents`, `alert_count`, `start`, `last_update`, `merged`, `alerts`).
    public var webhookJSON: [UInt8] { fields.encoded() }
}

extension Alert.Value {
    /// The value in a JSON payload.
    public var json: JSONValue {
        switch self {
        case .number(let number): .number(number)
        case .text(let text): .string(text)
        case .flag(let flag): .bool(flag)
        }
    }

    /// The value as people read it.
    public var text: String {
        switch self {
        case .number(let number): JSONWriter.numberText(number)
        case .text(let text): text
        case .flag(let flag): flag ? "true" : "false"
        }
    }
}

/// RFC 3339 timestamps in UTC with millisecond precision (`2025-01-31T12:00:00.250Z`), computed without
/// Foundation formatters.
public enum RFC3339 {
    /// `unixNanos` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    public static func format(unixNanos: UInt64) -> String {
        let milliseconds = unixNanos / 1_000_000
        let seconds = Int64(milliseconds / 1000)
        let days = seconds / 86_400
        let secondOfDay = seconds % 86_400
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthPrime = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthPrime + 2) / 5 + 1
        let month = monthPrime < 10 ? monthPrime + 3 : monthPrime - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        func pad(_ value: Int64, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):"
            + "\(pad(secondOfDay % 60, 2)).\(pad(Int64(milliseconds % 1000), 3))Z"
    }
}
