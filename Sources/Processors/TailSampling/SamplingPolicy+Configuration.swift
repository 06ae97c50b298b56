import Pipeline
import TraceModel

extension SamplingPolicy {
    /// The policy types the OpenTelemetry Collector's `tail_sampling` processor has, all of which are
    /// read here except `ottl_condition` (OTTL is the Collector's own language).
    static let types = [
        "always_sample", "latency", "numeric_attribute", "probabilistic", "status_code", "string_attribute",
        "boolean_attribute", "rate_limiting", "bytes_limiting", "span_count", "trace_state", "trace_flags",
        "and", "not", "drop", "composite",
    ]

    /// Where the next policy's checks go in a `TraceSummary`.
    public struct Slots: Sendable {
        var existence = 0
        var latency = 0

        public init() {}
    }

    /// Reads one policy on its own: `{name, type, <type>: {…}}`, with the Collector's field names.
    public init(section: ConfigSection) throws(ConfigurationError) {
        var slots = Slots()
        try self.init(section: section, slots: &slots)
    }

    /// Reads one policy of a list, numbering its checks from `slots`.
    public init(section: ConfigSection, slots: inout Slots) throws(ConfigurationError) {
        let name = try section.string("name", default: "")
        guard !name.isEmpty else { throw ConfigurationError(key: section.keyPath("name"), "policy name cannot be empty") }
        let type = try section.string("type", default: "")
        guard Self.types.contains(type) else {
            if type == "ottl_condition" {
                throw ConfigurationError(key: section.keyPath("type"), "ottl_condition is not supported; express the condition with the other policy types")
            }
            throw ConfigurationError(key: section.keyPath("type"), "unknown sampling policy type \"\(type)\"; expected one of \(Self.types.joined(separator: ", "))")
        }
        let settings = try section.section(type) ?? ConfigSection.empty(path: section.keyPath(type))
        self.name = name
        self.type = type
        rule = try Self.rule(type: type, settings, slots: &slots)
        try settings.finish()
        try section.finish()
    }

    private static func rule(type: String, _ settings: ConfigSection, slots: inout Slots) throws(ConfigurationError) -> Rule {
        func exists(_ check: ExistenceCheck, invert: Bool = false) -> Rule {
            defer { slots.existence += 1 }
            return .exists(slot: slots.existence, check, invert: invert)
        }
        switch type {
        case "always_sample", "trace_flags":
            return type == "always_sample" ? .alwaysSample : exists(.traceFlags)
        case "latency":
            let threshold = try settings.int("threshold_ms", default: 0, in: 0...Int.max)
            let upper = try settings.int("upper_threshold_ms", default: 0, in: 0...Int.max)
            guard upper == 0 || upper >= threshold else {
                throw ConfigurationError(key: settings.keyPath("upper_threshold_ms"), "must be 0 (no upper bound) or at least threshold_ms")
            }
            defer { slots.latency += 1 }
            return .latency(slot: slots.latency, thresholdMs: Int64(threshold), upperMs: Int64(upper))
        case "numeric_attribute":
            let key = try requiredKey(settings)
            // As in the Collector (processor.go), 0 means "not set": no lower or no upper bound.
            let low = try NumericBound(settings, "min_value")
            let high = try NumericBound(settings, "max_value")
            guard !low.isUnset || !high.isUnset else {
                throw ConfigurationError(key: settings.path, "set min_value, max_value or both")
            }
            let invert = try settings.bool("invert_match", default: false)
            if case .integer(let lowInteger) = low, case .integer(let highInteger) = high {
                guard low.isUnset || high.isUnset || lowInteger <= highInteger else {
                    throw ConfigurationError(key: settings.keyPath("min_value"), "must not be greater than max_value")
                }
                let check = ExistenceCheck.numeric(key: key, min: low.isUnset ? .min : lowInteger, max: high.isUnset ? .max : highInteger)
                return exists(check, invert: invert)
            }
            // AgentTrace's extension: a bound with a fraction (scores in 0..1) compares doubles too.
            guard low.isUnset || high.isUnset || low.number <= high.number else {
                throw ConfigurationError(key: settings.keyPath("min_value"), "must not be greater than max_value")
            }
            let check = ExistenceCheck.decimal(key: key, min: low.isUnset ? -.infinity : low.number, max: high.isUnset ? .infinity : high.number)
            return exists(check, invert: invert)
        case "probabilistic":
            var salt = try settings.string("hash_salt", default: "")
            if salt.isEmpty { salt = "default-hash-seed" }
            let percentage = try settings.double("sampling_percentage", default: 0, in: 0...Double.greatestFiniteMagnitude)
            return .probabilistic(salt: Array(salt.utf8), threshold: threshold(percentage: percentage))
        case "status_code":
            let names = try settings.stringList("status_codes", default: [])
            guard !names.isEmpty else {
                throw ConfigurationError(key: settings.keyPath("status_codes"), "expected at least one status code to filter on")
            }
            var codes: Set<SpanStatus.Code> = []
            for name in names {
                switch name {
                case "OK": codes.insert(.ok)
                case "ERROR": codes.insert(.error)
                case "UNSET": codes.insert(.unset)
                default: throw ConfigurationError(key: settings.keyPath("status_codes"), "unknown status code \"\(name)\"; expected OK, ERROR or UNSET")
                }
            }
            return exists(.statusCode(mask: codes.reduce(0) { $0 | 1 << UInt8($1.rawValue) }))
        case "string_attribute":
            let key = try requiredKey(settings)
            let values = try settings.stringList("values", default: [])
            let regex = try settings.bool("enabled_regex_matching", default: false)
            let cacheSize = try settings.int("cache_max_size", default: 128, in: 0...10_000_000)
            let invert = try settings.bool("invert_match", default: false)
            let matcher: StringMatcher
            do {
                matcher = try StringMatcher(values: values, regex: regex, cacheSize: cacheSize)
            } catch {
                throw ConfigurationError(key: settings.keyPath("values"), "invalid regular expression: \(error)")
            }
            return exists(.string(key: key, matcher: matcher), invert: invert)
        case "boolean_attribute":
            let key = try requiredKey(settings)
            guard settings.value("value") != nil else { throw ConfigurationError(key: settings.keyPath("value"), "expected true or false") }
            let value = try settings.bool("value", default: false)
            return exists(.boolean(key: key, value: value), invert: try settings.bool("invert_match", default: false))
        case "rate_limiting", "bytes_limiting":
            let rateKey = type == "rate_limiting" ? "spans_per_second" : "bytes_per_second"
            let rate = try settings.int(rateKey, default: 0, in: 0...Int.max)
            guard rate > 0 else { throw ConfigurationError(key: settings.keyPath(rateKey), "must be greater than 0") }
            let burst = try settings.int("burst_capacity", default: 0, in: 0...Int.max)
            let bucket = TokenBucket(rate: Double(rate), capacity: Double(burst > 0 ? burst : 2 * rate))
            return type == "rate_limiting" ? .rateLimiting(bucket) : .bytesLimiting(bucket)
        case "span_count":
            let low = try settings.int("min_spans", default: 0, in: 0...Int(Int32.max))
            let high = try settings.int("max_spans", default: 0, in: 0...Int(Int32.max))
            guard high == 0 || high >= low else {
                throw ConfigurationError(key: settings.keyPath("max_spans"), "must be 0 (no upper bound) or at least min_spans")
            }
            return .spanCount(min: low, max: high)
        case "trace_state":
            let key = try requiredKey(settings)
            let values = try settings.stringList("values", default: []).filter { !$0.isEmpty && key.utf8.count + $0.utf8.count < 256 }
            return exists(.traceState(key: key, values: Set(values)))
        case "and", "drop":
            let listKey = type == "and" ? "and_sub_policy" : "drop_sub_policy"
            var policies: [SamplingPolicy] = []
            for sub in try settings.sectionList(listKey) { policies.append(try SamplingPolicy(section: sub, slots: &slots)) }
            return type == "and" ? .and(policies) : .drop(policies)
        case "not":
            guard let sub = try settings.section("not_sub_policy") else {
                throw ConfigurationError(key: settings.keyPath("not_sub_policy"), "expected one policy")
            }
            return .not(try SamplingPolicy(section: sub, slots: &slots))
        case "composite":
            let total = try settings.int("max_total_spans_per_second", default: 0, in: 0...Int.max)
            var policies: [SamplingPolicy] = []
            for sub in try settings.sectionList("composite_sub_policy") { policies.append(try SamplingPolicy(section: sub, slots: &slots)) }
            let order = try settings.stringList("policy_order", default: [])
            for name in order where !policies.contains(where: { $0.name == name }) {
                throw ConfigurationError(key: settings.keyPath("policy_order"), "\"\(name)\" is not a composite_sub_policy")
            }
            // As the Collector's composite_helper.go: a sub-policy with no rate_allocation entry is
            // allocated 0 spans per second, so it never samples; an entry whose percent is 0 gets an
            // equal share of max_total_spans_per_second; otherwise percent/100 of it, truncated.
            var allocations = Array(repeating: 0, count: policies.count)
            for entry in try settings.sectionList("rate_allocation") {
                let policyName = try entry.string("policy", default: "")
                let percent = try entry.double("percent", default: 0, in: 0...100)
                try entry.finish()
                guard let index = policies.firstIndex(where: { $0.name == policyName }) else {
                    throw ConfigurationError(key: entry.keyPath("policy"), "\"\(policyName)\" is not a composite_sub_policy")
                }
                allocations[index] = percent > 0 ? Int(percent / 100 * Double(total)) : total / policies.count
            }
            return .composite(CompositeBudget(total: total, allocations: allocations), policies)
        default:
            throw ConfigurationError(key: settings.path, "unknown sampling policy type \"\(type)\"")
        }
    }

    /// A `numeric_attribute` bound as written: an integer (the Collector's type) or a number with a
    /// fraction (AgentTrace's extension); absent reads as the integer 0, which means "no bound".
    private enum NumericBound {
        case integer(Int64)
        case decimal(Double)

        init(_ settings: ConfigSection, _ key: String) throws(ConfigurationError) {
            if case .scalar(let text)? = settings.value(key), Int64(text.replacingOccurrences(of: "_", with: "")) == nil {
                self = .decimal(try settings.double(key, default: 0))
            } else {
                self = .integer(Int64(try settings.int(key, default: 0, in: Int(Int64.min)...Int(Int64.max))))
            }
        }

        var isUnset: Bool { number == 0 }

        var number: Double {
            switch self {
            case .integer(let value): Double(value)
            case .decimal(let value): value
            }
        }
    }

    private static func requiredKey(_ settings: ConfigSection) throws(ConfigurationError) -> String {
        let key = try settings.string("key", default: "")
        guard !key.isEmpty else { throw ConfigurationError(key: settings.keyPath("key"), "expected the attribute's name") }
        return key
    }
}
