import JSONText
extension Alert {
    /// Slack's documented limits for the blocks used here (Block Kit reference): a header's `plain_text`
    /// "Maximum length for the text in this field is 150 characters"; a section's `text` 3000 characters;
    /// "Maximum number of items is 10" fields, each of at most 2000 characters.
    enum SlackLimits {
        /// A header block's text.
        static let header = 150
        /// A section block's text.
        static let sectionText = 3000
        /// A section block's fields.
        static let fields = 10
        /// One field's text.
        static let field = 2000
    }

    /// A Slack incoming-webhook message: `text` (the notification and fallback, "used as fallback string
    /// for notifications" when `blocks` are present) plus `blocks`: a header, the message, up to ten fields,
    /// and a context line.
    public var slackJSON: [UInt8] {
        let title = "[\(severity.rawValue.uppercased())] \(rule)"
        var fieldTexts = [
            "*Service*\n\(Self.slackEscape(service))",
            "*Agent*\n\(Self.slackEscape(agent))",
            "*Value*\n\(Self.slackEscape(value.text))",
            "*Threshold*\n\(Self.slackEscape(threshold.text))",
            "*Span*\n\(Self.slackEscape(spanName))",
            "*Trace*\n`\(traceID.hex)`",
        ]
        if !group.isEmpty { fieldTexts.append("*Group*\n\(Self.slackEscape(group))") }
        if let window { fieldTexts.append("*Matches*\n\(count) in \(JSONWriter.numberText(Double(window.nanoseconds) / 1e9))s") }
        if suppressed > 0 { fieldTexts.append("*Suppressed*\n\(suppressed) since the last alert") }
        if let incident {
            fieldTexts.insert("*Incident*\n#\(incident.id) \(incident.status), \(incident.alertCount) alerts"
                + (incident.probableCause.map { ", probable cause \(Self.slackEscape($0))" } ?? ""), at: 0)
        }
        let fields: [JSONValue] = fieldTexts.prefix(SlackLimits.fields).map {
            .object([("type", .string("mrkdwn")), ("text", .string(String($0.prefix(SlackLimits.field))))])
        }
        let blocks: [JSONValue] = [
            .object([("type", .string("header")),
                     ("text", .object([("type", .string("plain_text")), ("text", .string(String(title.prefix(SlackLimits.header)))),
                                       ("emoji", .bool(true))]))]),
            .object([("type", .string("section")),
                     ("text", .object([("type", .string("mrkdwn")),
                                       ("text", .string(String(Self.slackEscape(message).prefix(SlackLimits.sectionText))))]))]),
            .object([("type", .string("section")), ("fields", .array(fields))]),
            .object([("type", .string("context")),
                     ("elements", .array([.object([("type", .string("mrkdwn")),
                                                   ("text", .string("AgentTrace · span `\(spanID.hex)` · \(RFC3339.format(unixNanos: time))"))])]))]),
        ]
        return JSONValue.object([("text", .string("\(title): \(Self.slackEscape(message))")), ("blocks", .array(blocks))]).encoded()
    }

    /// Slack's formatting rule: "&" → `&amp;`, "<" → `&lt;`, ">" → `&gt;`, and nothing else.
    static func slackEscape(_ text: String) -> String {
        guard text.contains(where: { $0 == "&" || $0 == "<" || $0 == ">" }) else { return text }
        return text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;")
    }
}
