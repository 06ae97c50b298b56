import JSONText

extension Alert {
    /// What an incident notification carries (`anomaly_detection`): the incident and the alerts it summarises.
    public struct Incident: Sendable, Equatable {
        /// The incident's number (`/api/incidents`).
        public var id: Int
        /// `opened` for the incident's first notification, `updated` for later ones.
        public var status: String
        /// The incident's anomalous agents.
        public var agents: [String]
        /// The most downstream node its anomalous paths share, if any.
        public var probableCause: String?
        /// First and last alert, Unix nanoseconds.
        public var start: UInt64
        public var lastUpdate: UInt64
        /// Alerts in the incident in total, including those of earlier notifications.
        public var alertCount: Int
        /// Incidents merged into this one since its last notification.
        public var merged: [Int]
        /// The alerts this notification carries, in firing order: all so far when `opened`, the ones that
        /// joined since the last notification when `updated`.
        public var alerts: [Alert]

        /// Creates the details.
        public init(id: Int, status: String, agents: [String], probableCause: String?, start: UInt64, lastUpdate: UInt64,
                    alertCount: Int, merged: [Int], alerts: [Alert]) {
            self.id = id
            self.status = status
            self.agents = agents
            self.probableCause = probableCause
            self.start = start
            self.lastUpdate = lastUpdate
            self.alertCount = alertCount
            self.merged = merged
            self.alerts = alerts
        }

        /// The `incident` object of the webhook payload.
        var json: JSONValue {
            .object([
                ("id", .integer(Int64(id))),
                ("status", .string(status)),
                ("probable_cause", probableCause.map(JSONValue.string) ?? .null),
                ("agents", .array(agents.map(JSONValue.string))),
                ("alert_count", .integer(Int64(alertCount))),
                ("start", .string(RFC3339.format(unixNanos: start))),
                ("last_update", .string(RFC3339.format(unixNanos: lastUpdate))),
                ("merged", .array(merged.map { .integer(Int64($0)) })),
                ("alerts", .array(alerts.map(\.fields))),
            ])
        }
    }

    /// One notification for an incident: the fields of its most severe alert (the first of those), with
    /// `severity` the highest of its alerts, `group` `incident=<id>`, `count` the alerts it carries, a
    /// `message` that summarises them, and `incident` with every alert. Nil without alerts.
    public static func incidentNotification(_ incident: Incident) -> Alert? {
        let rank = { (severity: AlertSeverity) in AlertSeverity.allCases.firstIndex(of: severity) ?? 0 }
        guard var alert = incident.alerts.min(by: { rank($0.severity) < rank($1.severity) }) else { return nil }
        let lead = alert.message
        alert.group = "incident=\(incident.id)"
        alert.count = incident.alerts.count
        alert.suppressed = incident.alerts.reduce(0) { $0 + $1.suppressed }
        let shown = incident.agents.prefix(5).joined(separator: ", ")
        let more = incident.agents.count > 5 ? " and \(incident.agents.count - 5) more" : ""
        var text = "Incident \(incident.id)\(incident.status == "opened" ? "" : " (\(incident.status))"): "
            + "\(incident.alerts.count == 1 ? "1 anomaly" : "\(incident.alerts.count) anomalies") on \(shown)\(more)"
        if let cause = incident.probableCause { text += "; probable cause \(cause)" }
        if !incident.merged.isEmpty { text += "; incidents \(incident.merged.map(String.init).joined(separator: ", ")) merged into it" }
        alert.message = "\(text). \(lead)"
        alert.incident = incident
        return alert
    }

    /// This notification with only the alerts `accepts` keeps (a sink's `match:`); nil when it keeps none.
    /// An alert that is no incident notification is kept whole or not at all.
    public func routed(by accepts: (Alert) -> Bool) -> Alert? {
        guard var incident else { return accepts(self) ? self : nil }
        let kept = incident.alerts.filter(accepts)
        guard kept.count != incident.alerts.count else { return self }
        incident.alerts = kept
        return Alert.incidentNotification(incident)
    }
}
