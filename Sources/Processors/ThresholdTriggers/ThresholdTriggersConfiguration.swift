import Alerting
import Pipeline
import TraceModel

extension ThresholdTriggersProcessor {
    /// `processors: threshold_triggers:` settings.
    public struct Configuration: Sendable, Equatable {
        /// One rule: a condition on a span, an optional `where:` filter, and optionally a rate
        /// (`count` matches within `window`, per `group_by` group).
        public struct Rule: Sendable, Equatable {
            /// What a span must show.
            public enum Condition: Sendable, Equatable {
                /// `attribute: KEY` with `above:`, `below:` or `equals:`; the span's attribute, else the resource's.
                case attribute(String, Comparison)
                /// `duration_above: 30s`.
                case durationAbove(Duration)
                /// `status: error` (or `ok`, `unset`).
                case status(SpanStatus.Code)
            }

            /// How an attribute is compared.
            public enum Comparison: Sendable, Equatable {
                /// Numeric (integers, doubles, and strings that read as numbers), strictly greater.
                case above(Double)
                /// Numeric, strictly less.
                case below(Double)
                /// Equal as text, as a number when both read as numbers, or as a boolean.
                case equals(String)
            }

            /// One `where:` entry: the span's (else the resource's) attribute must equal one of `values`.
            /// `span.kind` (client, server, internal, producer, consumer, unspecified) and `span.name` are the
            /// span's own fields.
            public struct Filter: Sendable, Equatable {
                /// The attribute, or `span.kind` / `span.name`.
                public var key: String
                /// Accepted values, as text.
                public var values: [String]

                public init(key: String, values: [String]) {
                    self.key = key
                    self.values = values
                }
            }

            /// The rule's name: the alert's `rule`, the `alert.rule` attribute, the metric label.
            public var name: String
            /// Default `warning`.
            public var severity = AlertSeverity.warning
            /// The span condition.
            public var condition: Condition
            /// Every filter must hold. Default none.
            public var filters: [Filter] = []
            /// Matches needed within `window` to fire. Default 1 (every match fires).
            public var count = 1
            /// The sliding window for `count`, in arrival time. Default 60s.
            public var window: Duration = .seconds(60)
            /// Attributes (span, else resource) whose values split the rule into groups, each with its own window
            /// and cooldown. Default none: one group.
            public var groupBy: [String] = []
            /// Overrides the processor's `cooldown` for this rule. Default none.
            public var cooldown: Duration?
            /// A custom message; default none (a generated sentence).
            public var message: String?

            public init(name: String, severity: AlertSeverity = .warning, condition: Condition) {
                self.name = name
                self.severity = severity
                self.condition = condition
            }
        }

        /// One `notify:` entry (shared with every component that fires alerts).
        public typealias Sink = AlertSink
        /// `delivery:`: how alerts reach the sinks.
        public typealias Delivery = AlertDeliverySettings

        /// The rules, in order. At most 64.
        public var rules: [Rule] = []
        /// No repeated alert per rule and group inside this; suppressed alerts are counted in the next one. Default 300s.
        public var cooldown: Duration = .seconds(300)
        /// Where alerts go, besides `/api/alerts` and /metrics. Default none.
        public var notify: [Sink] = []
        /// Each `notify:` sink's `match:` (nil: every alert), in the order of `notify`.
        public var notifyMatches: [AlertMatch?] = []
        /// The `notify:` entries switched off because their URL or routing key expanded to nothing (an unset
        /// `${env:…}`), by key; the processor logs a warning for each.
        public var disabledSinks: [String] = []
        /// Delivery settings.
        public var delivery = Delivery()
        /// Rule groups (windows and cooldowns) kept at most; matches of new groups beyond it are dropped and
        /// counted. Default 10000.
        public var maxGroups = 10_000

        /// The most rules one processor evaluates (one bit each per span).
        public static let maxRules = 64

        public init() {}

        /// Reads the section, failing on unknown keys or bad values, naming the key.
        public init(section: ConfigSection) throws(ConfigurationError) {
            cooldown = try section.duration("cooldown", default: cooldown)
            maxGroups = try section.int("max_groups", default: maxGroups, in: 1...10_000_000)
            if let list = section.value("rules") {
                guard case .sequence(let elements) = list else {
                    throw ConfigurationError(key: section.keyPath("rules"), "expected a list of rules")
                }
                for (index, element) in elements.enumerated() {
                    let rule = try Self.rule(try ConfigSection(element, path: "\(section.keyPath("rules"))[\(index)]"))
                    if rules.contains(where: { $0.name == rule.name }) {
                        throw ConfigurationError(key: "\(section.keyPath("rules"))[\(index)].name", "\"\(rule.name)\" is used twice")
                    }
                    rules.append(rule)
                }
                guard rules.count <= Self.maxRules else {
                    throw ConfigurationError(key: section.keyPath("rules"), "at most \(Self.maxRules) rules per processor")
                }
            }
            let notifications = try AlertNotifications(section: section)
            notify = notifications.sinks
            notifyMatches = notifications.matches
            disabledSinks = notifications.disabledSinks
            delivery = notifications.delivery
            try section.finish()
        }

        private static func rule(_ section: ConfigSection) throws(ConfigurationError) -> Rule {
            guard let name = try section.optionalString("name"), !name.isEmpty else {
                throw ConfigurationError(key: section.keyPath("name"), "required: every rule has a name")
            }
            guard name.allSatisfy({ !$0.isWhitespace && $0 != "," }) else {
                throw ConfigurationError(key: section.keyPath("name"), "\"\(name)\" may not contain spaces or commas")
            }
            let severityName = try section.string("severity", default: AlertSeverity.warning.rawValue)
            guard let severity = AlertSeverity(rawValue: severityName) else {
                throw ConfigurationError(key: section.keyPath("severity"), "expected critical, error, warning or info, not \"\(severityName)\"")
            }
            var conditions: [Rule.Condition] = []
            if let key = try section.optionalString("attribute") {
                guard !key.isEmpty else { throw ConfigurationError(key: section.keyPath("attribute"), "must name an attribute") }
                var comparisons: [Rule.Comparison] = []
                if section.value("above") != nil { comparisons.append(.above(try section.double("above", default: 0))) }
                if section.value("below") != nil { comparisons.append(.below(try section.double("below", default: 0))) }
                if let text = try section.optionalString("equals") { comparisons.append(.equals(text)) }
                guard comparisons.count == 1 else {
                    throw ConfigurationError(key: section.keyPath("attribute"), "needs exactly one of above, below or equals")
                }
                conditions.append(.attribute(key, comparisons[0]))
            } else {
                for key in ["above", "below", "equals"] where section.value(key) != nil {
                    throw ConfigurationError(key: section.keyPath(key), "needs `attribute:` to say what is compared")
                }
            }
            if section.value("duration_above") != nil {
                conditions.append(.durationAbove(try section.duration("duration_above", default: .zero)))
            }
            if let statusName = try section.optionalString("status") {
                let code: SpanStatus.Code
                switch statusName.lowercased() {
                case "error": code = .error
                case "ok": code = .ok
                case "unset": code = .unset
                default: throw ConfigurationError(key: section.keyPath("status"), "expected error, ok or unset, not \"\(statusName)\"")
                }
                conditions.append(.status(code))
            }
            guard conditions.count == 1 else {
                throw ConfigurationError(key: section.path,
                                         conditions.isEmpty ? "needs a condition: attribute (with above, below or equals), duration_above or status"
                                                            : "has more than one condition; write one rule per condition")
            }
            var rule = Rule(name: name, severity: severity, condition: conditions[0])
            if let whereSection = try section.section("where") {
                for key in whereSection.keys {
                    let values = try whereSection.stringList(key, default: [])
                    guard !values.isEmpty else { throw ConfigurationError(key: whereSection.keyPath(key), "needs a value or a list of values") }
                    if key == "span.kind" {
                        for value in values where SpanKind.named(value) == nil {
                            throw ConfigurationError(key: whereSection.keyPath(key),
                                                     "expected client, server, internal, producer, consumer or unspecified, not \"\(value)\"")
                        }
                    }
                    rule.filters.append(Rule.Filter(key: key, values: values))
                }
                try whereSection.finish()
            }
            rule.count = try section.int("count", default: rule.count, in: 1...100_000)
            rule.window = try section.duration("window", default: rule.window, minimum: .milliseconds(1))
            rule.groupBy = try section.stringList("group_by", default: rule.groupBy)
            if section.value("cooldown") != nil { rule.cooldown = try section.duration("cooldown", default: .zero) }
            rule.message = try section.optionalString("message")
            try section.finish()
            return rule
        }
    }
}

extension SpanKind {
    /// The kind from its lower-case name (`client`); nil for anything else.
    static func named(_ name: String) -> SpanKind? {
        switch name.lowercased() {
        case "client": .client
        case "server": .server
        case "internal": .internal
        case "producer": .producer
        case "consumer": .consumer
        case "unspecified": .unspecified
        default: nil
        }
    }
}
