import Alerting
import JSONText
import Prometheus
import TraceModel

/// The rules compiled once at configuration time, and their windows and cooldowns: spans in, fired alerts
/// out. A plain value driven by the caller's clock (`now`, the span's arrival), so tests need no sleeps.
///
/// Per span, each rule first checks its condition (an attribute lookup, a duration or a status); the
/// `where:` filters, the group, the window and the cooldown are looked at only for spans that meet it, so
/// a span that matches nothing costs no allocation.
struct TriggerEvaluator {
    typealias Rule = ThresholdTriggersProcessor.Configuration.Rule

    /// A rule's condition with its constants parsed.
    enum Condition {
        case above(key: String, Double)
        case below(key: String, Double)
        case equals(key: String, text: String, number: Double?, flag: Bool?)
        case durationAbove(nanos: UInt64)
        case status(SpanStatus.Code)

        /// The attribute the condition reads, if any.
        var key: String? {
            switch self {
            case .above(let key, _), .below(let key, _), .equals(let key, _, _, _): key
            case .durationAbove, .status: nil
            }
        }
    }

    /// A `where:` entry, compiled.
    enum Filter {
        case kind([SpanKind])
        case name([String])
        case attribute(key: String, values: [String])
    }

    /// The per-rule Prometheus counters.
    struct RuleMetrics {
        /// Spans that met the condition and the filters.
        let matched: Counter
        /// Alerts fired (counted by the processor once they are in the alert log).
        let fired: Counter
        /// Alerts held back by the cooldown.
        let suppressed: Counter
        /// Matches not tracked because `max_groups` groups were already held.
        let droppedGroups: Counter
    }

    /// What the per-span check looks at, flattened so that checking copies nothing: the condition's kind,
    /// its attribute key with the key's UTF-8 length (compared first, so most keys are rejected without a
    /// string comparison), and its constants.
    struct Probe {
        enum Kind { case above, below, equals, durationAbove, status }
        let kind: Kind
        let key: String
        let keyLength: Int
        let threshold: Double
        let nanos: UInt64
        let status: SpanStatus.Code

        init(_ condition: Condition) {
            switch condition {
            case .above(let key, let value): (kind, self.key, threshold, nanos, status) = (.above, key, value, 0, .unset)
            case .below(let key, let value): (kind, self.key, threshold, nanos, status) = (.below, key, value, 0, .unset)
            case .equals(let key, _, _, _): (kind, self.key, threshold, nanos, status) = (.equals, key, 0, 0, .unset)
            case .durationAbove(let value): (kind, key, threshold, nanos, status) = (.durationAbove, "", 0, value, .unset)
            case .status(let code): (kind, key, threshold, nanos, status) = (.status, "", 0, 0, code)
            }
            keyLength = key.utf8.count
        }
    }

    /// One rule, compiled.
    struct CompiledRule {
        let name: String
        let severity: AlertSeverity
        let condition: Condition
        let probe: Probe
        let filters: [Filter]
        /// Matches needed within `window` (nanoseconds).
        let count: Int
        let window: UInt64
        let groupBy: [String]
        /// Nanoseconds.
        let cooldown: UInt64
        /// A custom message, or nil for the generated sentence.
        let message: String?
        let metrics: RuleMetrics
    }

    /// A rule's state for one group.
    struct GroupState {
        /// Arrival times of the last `count` matches, a ring; empty for rules without a rate.
        var times: [UInt64]
        var next = 0
        var filled = 0
        var lastFired: UInt64?
        var suppressed = 0
        var lastMatch: UInt64 = 0
    }

    /// A rule (by index) and a group of its `group_by` values.
    struct GroupKey: Hashable {
        var rule: Int
        var group: String
    }

    /// The rules, in configuration order (bit `i` of a match mask is rule `i`).
    let rules: [CompiledRule]
    /// Groups held at most.
    let maxGroups: Int
    /// Every rule's groups.
    private(set) var groups: [GroupKey: GroupState] = [:]
    /// Matches dropped because of `max_groups`, in total.
    private(set) var droppedMatches = 0
    /// For each rule reading an attribute: the current resource's value of it, the fallback when a span lacks it.
    private var resourceValues: [AttributeValue?]

    /// Compiles the rules; `metrics` gives each rule (by name) its counters.
    init(configuration: ThresholdTriggersProcessor.Configuration, metrics: (String) -> RuleMetrics) {
        maxGroups = configuration.maxGroups
        rules = configuration.rules.map { rule in
            let condition: Condition
            switch rule.condition {
            case .attribute(let key, .above(let threshold)): condition = .above(key: key, threshold)
            case .attribute(let key, .below(let threshold)): condition = .below(key: key, threshold)
            case .attribute(let key, .equals(let text)):
                let flag: Bool? = switch text.lowercased() {
                case "true": true
                case "false": false
                default: nil
                }
                condition = .equals(key: key, text: text, number: Double(text), flag: flag)
            case .durationAbove(let duration): condition = .durationAbove(nanos: UInt64(clamping: duration.nanoseconds))
            case .status(let code): condition = .status(code)
            }
            let filters: [Filter] = rule.filters.map { filter in
                switch filter.key {
                case "span.kind": .kind(filter.values.compactMap(SpanKind.named))
                case "span.name": .name(filter.values)
                default: .attribute(key: filter.key, values: filter.values)
                }
            }
            return CompiledRule(name: rule.name, severity: rule.severity, condition: condition, probe: Probe(condition), filters: filters,
                                count: rule.count, window: UInt64(clamping: rule.window.nanoseconds), groupBy: rule.groupBy,
                                cooldown: UInt64(clamping: (rule.cooldown ?? configuration.cooldown).nanoseconds),
                                message: rule.message, metrics: metrics(rule.name))
        }
        resourceValues = Array(repeating: nil, count: rules.count)
    }

    /// Notes the resource of the spans that follow (once per resource, not per span).
    mutating func begin(resource: Resource) {
        for index in rules.indices {
            if let key = rules[index].condition.key { resourceValues[index] = resource.attributes[key] }
        }
    }

    /// Evaluates every rule on `spans[index]` (of `resource`, which `begin` saw) arriving at `now`; appends
    /// fired alerts to `fired` and returns the rules the span met, one bit each. The span is read in place:
    /// nothing is copied or allocated unless a rule's condition holds.
    mutating func evaluate(_ spans: [Span], _ index: Int, resource: Resource, now: UInt64, fired: inout [Alert]) -> UInt64 {
        var mask: UInt64 = 0
        for rule in rules.indices {
            guard let observed = observe(rule, spans, index), passes(rules[rule].filters, spans[index], resource) else { continue }
            mask |= 1 << UInt64(rule)
            rules[rule].metrics.matched.increment()
            if let alert = match(rule, observed: observed, spans[index], resource, now: now) { fired.append(alert) }
        }
        return mask
    }

    /// Evaluates every rule on one span (a convenience for tests); see `evaluate(_:_:resource:now:fired:)`.
    mutating func evaluate(_ span: Span, resource: Resource, now: UInt64, fired: inout [Alert]) -> UInt64 {
        evaluate([span], 0, resource: resource, now: now, fired: &fired)
    }

    /// What `spans[index]` shows for rule `rule`'s condition when it meets it; nil when it does not.
    private func observe(_ rule: Int, _ spans: [Span], _ index: Int) -> Alert.Value? {
        switch rules[rule].probe.kind {
        case .durationAbove:
            let duration = spans[index].durationNanos
            return duration > rules[rule].probe.nanos ? .number(Double(duration) / 1e9) : nil
        case .status:
            let status = rules[rule].probe.status
            return spans[index].status.code == status ? .text(Self.statusName(status)) : nil
        case .above:
            guard let number = Self.number(lookup(rule, spans, index) ?? resourceValues[rule]), number > rules[rule].probe.threshold else { return nil }
            return .number(number)
        case .below:
            guard let number = Self.number(lookup(rule, spans, index) ?? resourceValues[rule]), number < rules[rule].probe.threshold else { return nil }
            return .number(number)
        case .equals:
            guard let value = lookup(rule, spans, index) ?? resourceValues[rule],
                  case .equals(_, let text, let number, let flag) = rules[rule].condition else { return nil }
            switch value {
            case .string(let value): return value == text ? .text(value) : nil
            case .bool(let value): return value == flag ? .flag(value) : nil
            case .int(let value): return Double(value) == number ? .number(Double(value)) : nil
            case .double(let value): return value == number ? .number(value) : nil
            default: return nil
            }
        }
    }

    /// The span's attribute that rule `rule` reads, found by length first and then by text, without copying attributes.
    private func lookup(_ rule: Int, _ spans: [Span], _ index: Int) -> AttributeValue? {
        let length = rules[rule].probe.keyLength
        for position in spans[index].attributes.indices
        where spans[index].attributes[position].key.utf8.count == length && spans[index].attributes[position].key == rules[rule].probe.key {
            return spans[index].attributes[position].value
        }
        return nil
    }

    private static func number(_ value: AttributeValue?) -> Double? {
        switch value {
        case .double(let number): number.isNaN ? nil : number
        case .int(let number): Double(number)
        case .string(let text): Double(text).flatMap { $0.isNaN ? nil : $0 }
        default: nil
        }
    }

    private func passes(_ filters: [Filter], _ span: Span, _ resource: Resource) -> Bool {
        for filter in filters {
            switch filter {
            case .kind(let kinds):
                guard kinds.contains(span.kind) else { return false }
            case .name(let names):
                guard names.contains(span.name) else { return false }
            case .attribute(let key, let values):
                guard let value = span.attributes[key] ?? resource.attributes[key], values.contains(Self.text(value)) else { return false }
            }
        }
        return true
    }

    /// Counts a match in its group; returns the alert when the rule fires outside its cooldown.
    private mutating func match(_ index: Int, observed: Alert.Value, _ span: Span, _ resource: Resource, now: UInt64) -> Alert? {
        let rule = rules[index]
        let group = rule.groupBy.isEmpty ? "" : rule.groupBy.map { key in
            "\(key)=\((span.attributes[key] ?? resource.attributes[key]).map(Self.text) ?? "")"
        }.joined(separator: ",")
        let key = GroupKey(rule: index, group: group)
        if groups[key] == nil {
            guard groups.count < maxGroups else {
                droppedMatches += 1
                rule.metrics.droppedGroups.increment()
                return nil
            }
            groups[key] = GroupState(times: rule.count > 1 ? Array(repeating: 0, count: rule.count) : [])
        }
        switch Self.record(&groups[key, default: GroupState(times: [])], rule: rule, now: now) {
        case .pending:
            return nil
        case .suppressed:
            rule.metrics.suppressed.increment()
            return nil
        case .fire(let matches, let suppressed):
            return makeAlert(rule, observed: observed, span, resource, now: now, group: group, matches: matches, suppressed: suppressed)
        }
    }

    /// What one match does to its group.
    enum Outcome: Equatable {
        /// A rate rule still short of `count` matches within the window.
        case pending
        /// The rule would fire, but the group is cooling down.
        case suppressed
        /// The rule fires: `matches` in the window, `suppressed` alerts held back since the last one.
        case fire(matches: Int, suppressed: Int)
    }

    /// Counts a match at `now` in `state` (in place, so the ring is never copied).
    static func record(_ state: inout GroupState, rule: CompiledRule, now: UInt64) -> Outcome {
        state.lastMatch = now
        var matches = 1
        if rule.count > 1 {
            state.times[state.next] = now
            state.next = (state.next + 1) % rule.count
            state.filled = min(state.filled + 1, rule.count)
            // A full ring: `next` is the oldest of the last `count` matches.
            guard state.filled == rule.count, now &- state.times[state.next] <= rule.window else { return .pending }
            matches = rule.count
            state.filled = 0
        }
        if let last = state.lastFired, now &- last < rule.cooldown {
            state.suppressed += 1
            return .suppressed
        }
        let suppressed = state.suppressed
        state.suppressed = 0
        state.lastFired = now
        return .fire(matches: matches, suppressed: suppressed)
    }

    private func makeAlert(_ rule: CompiledRule, observed: Alert.Value, _ span: Span, _ resource: Resource, now: UInt64,
                           group: String, matches: Int, suppressed: Int) -> Alert {
        let service = resource.serviceName ?? "unknown_service"
        let agent = resource.attributes["agent.name"]?.stringValue ?? span.attributes["gen_ai.agent.name"]?.stringValue ?? service
        let threshold: Alert.Value
        let condition: String
        switch rule.condition {
        case .above(let key, let value):
            threshold = .number(value)
            condition = "\(key) is \(observed.text), above \(JSONWriter.numberText(value))"
        case .below(let key, let value):
            threshold = .number(value)
            condition = "\(key) is \(observed.text), below \(JSONWriter.numberText(value))"
        case .equals(let key, let text, let number, let flag):
            switch observed {
            case .number: threshold = number.map(Alert.Value.number) ?? .text(text)
            case .flag: threshold = flag.map(Alert.Value.flag) ?? .text(text)
            case .text: threshold = .text(text)
            }
            condition = "\(key) is \(observed.text)"
        case .durationAbove(let nanos):
            threshold = .number(Double(nanos) / 1e9)
            condition = "took \(observed.text)s, above \(JSONWriter.numberText(Double(nanos) / 1e9))s"
        case .status(let code):
            threshold = .text(Self.statusName(code))
            condition = "has status \(Self.statusName(code))"
        }
        var message = rule.message ?? "span \"\(span.name)\" of \(agent) \(condition)"
        if rule.message == nil, rule.count > 1 {
            message = "\(matches) spans within \(JSONWriter.numberText(Double(rule.window) / 1e9))s"
                + (group.isEmpty ? "" : " for \(group)") + "; the last: \(message)"
        }
        return Alert(rule: rule.name, severity: rule.severity, value: observed, threshold: threshold, service: service, agent: agent,
                     agentType: resource.attributes["agent.type"]?.stringValue, traceID: span.traceID, spanID: span.spanID,
                     spanName: span.name, time: now, message: message, group: group, count: matches,
                     window: rule.count > 1 ? .nanoseconds(Int64(clamping: rule.window)) : nil, suppressed: suppressed)
    }

    /// Forgets groups that have been quiet for their window and cooldown and hold no suppressed count.
    mutating func sweep(now: UInt64) {
        groups = groups.filter { key, state in
            let rule = rules[key.rule]
            let idle = now &- state.lastMatch >= max(rule.window, rule.cooldown)
            let cooled = state.lastFired.map { now &- $0 >= rule.cooldown } ?? true
            return !(idle && cooled && state.suppressed == 0)
        }
    }

    /// `unset`, `ok` or `error`.
    static func statusName(_ code: SpanStatus.Code) -> String {
        switch code {
        case .unset: "unset"
        case .ok: "ok"
        case .error: "error"
        }
    }

    /// Attribute values as filter and group text.
    static func text(_ value: AttributeValue) -> String {
        switch value {
        case .string(let text): text
        case .bool(let flag): flag ? "true" : "false"
        case .int(let integer): String(integer)
        case .double(let real): JSONWriter.numberText(real)
        default: ""
        }
    }
}
