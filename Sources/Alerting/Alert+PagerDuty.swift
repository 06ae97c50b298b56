import JSONText
extension Alert {
    /// The PagerDuty Events API v2 `enqueue` body for a trigger event: `routing_key`, `event_action`
    /// "trigger", `dedup_key` (one incident per rule and group, at most 255 characters), `client`, and a
    /// `payload` with the required `summary` ("A brief text summary of the event ... Maximum of 1024
    /// characters"), `source` (the service), `severity` (critical, error, warning or info) and the optional
    /// `timestamp` (ISO 8601), `component` (the agent), `group` (the agent type, else the service), `class`
    /// (the rule) and `custom_details` (every webhook field).
    public func pagerDutyJSON(routingKey: String) -> [UInt8] {
        JSONValue.object([
            ("routing_key", .string(routingKey)),
            ("event_action", .string("trigger")),
            ("dedup_key", .string(dedupKey)),
            ("client", .string("AgentTrace")),
            ("payload", .object([
                ("summary", .string(String("\(rule): \(message)".prefix(1024)))),
                ("source", .string(service)),
                ("severity", .string(severity.rawValue)),
                ("timestamp", .string(RFC3339.format(unixNanos: time))),
                ("component", .string(agent)),
                ("group", .string(agentType ?? service)),
                ("class", .string(rule)),
                ("custom_details", fields),
            ])),
        ]).encoded()
    }
}
