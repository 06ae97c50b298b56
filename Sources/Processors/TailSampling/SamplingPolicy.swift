import Foundation
import Pipeline
import Synchronization
import TraceModel

/// What a policy, or the processor, decides for a whole trace.
public enum SamplingDecision: String, Sendable, Hashable, CaseIterable {
    case sampled
    case notSampled = "not_sampled"
    /// Dropped whatever any other policy says (the `drop` policy).
    case dropped

    /// The `sampled` label the OpenTelemetry Collector's metrics give the decision.
    var sampledLabel: String { self == .sampled ? "true" : "false" }
}

/// One trace as the policies see it: its spans in the chunks they arrived in (the resource repeated
/// per chunk), the total span count, and its protobuf size.
public struct SampledTrace: Sendable {
    public var traceID: TraceID
    public var chunks: [ResourceSpans]
    public var spanCount: Int
    public var sizeBytes: Int

    public init(traceID: TraceID, chunks: [ResourceSpans], spanCount: Int? = nil, sizeBytes: Int = 0) {
        self.traceID = traceID
        self.chunks = chunks
        self.spanCount = spanCount ?? chunks.reduce(0) { $0 + $1.spanCount }
        self.sizeBytes = sizeBytes
    }
}

/// What the policies need to know of a trace, gathered chunk by chunk as spans arrive, so the spans
/// themselves can be held encoded and decoded only if the trace is kept. Every policy that asks "is
/// there a resource or span that…" is a bit here; latency keeps the running span times.
public struct TraceSummary: Sendable {
    public var traceID: TraceID
    /// What the spans said; kept apart from the id so the processor can keep it under the id, its key.
    var gathered = Gathered()

    /// Per existence check (its slot): some resource or span matched.
    var matched: UInt64 { gathered.matched }
    /// Per latency policy (its slot): the running duration passed its test at some span.
    var latencyPassed: UInt64 { gathered.latencyPassed }
    public var spanCount: Int {
        get { gathered.spanCount }
        set { gathered.spanCount = newValue }
    }
    public var sizeBytes: Int {
        get { gathered.sizeBytes }
        set { gathered.sizeBytes = newValue }
    }

    public init(traceID: TraceID) {
        self.traceID = traceID
    }

    init(traceID: TraceID, gathered: Gathered) {
        self.traceID = traceID
        self.gathered = gathered
    }

    /// Adds a chunk: runs every check not yet matched over its resource and spans, in order.
    mutating func observe(_ chunk: SpanSelection, checks: PolicyChecks) {
        gathered.observe(chunk, checks: checks)
    }

    /// A summary of a whole trace at once (tests, and policies evaluated on their own).
    public init(_ trace: SampledTrace, checks: PolicyChecks) {
        self.init(traceID: trace.traceID)
        for chunk in trace.chunks { observe(SpanSelection(whole: chunk), checks: checks) }
        spanCount = trace.spanCount
        sizeBytes = trace.sizeBytes
    }

    /// The summary of a trace without its id: 44 bytes, kept for every trace held.
    struct Gathered: Sendable {
        var matched: UInt64 = 0
        var latencyPassed: UInt64 = 0
        /// Earliest span start and latest span end so far; 0 means "none yet", as in the Collector's
        /// latency.go (a span starting at 0 is replaced by the next span's start there too).
        var earliestStart: UInt64 = 0
        var latestEnd: UInt64 = 0
        var sizeBytes = 0
        /// 32 bits, last, so the record that keeps it can put a small field after it.
        private var spans: Int32 = 0
        var spanCount: Int {
            get { Int(spans) }
            set { spans = Int32(clamping: newValue) }
        }

        /// Adds a chunk: runs every check not yet matched over its resource and spans, in order.
        mutating func observe(_ chunk: SpanSelection, checks: PolicyChecks) {
            for (slot, check) in checks.existence.enumerated() where matched & (1 << slot) == 0 {
                if check.matches(chunk) { matched |= 1 << slot }
            }
            spans = Int32(clamping: Int(spans) + chunk.spanCount)
            guard !checks.latency.isEmpty else { return }
            for run in chunk.runs {
                let scopeSpans = chunk.resourceSpans.scopeSpans[run.scope].spans
                // By index: the times are read in place rather than the span copied.
                for index in run.spans {
                    let (start, end) = (scopeSpans[index].startTimeUnixNano, scopeSpans[index].endTimeUnixNano)
                    if earliestStart == 0 || start < earliestStart { earliestStart = start }
                    if latestEnd == 0 || end > latestEnd { latestEnd = end }
                    // Go's `duration.Milliseconds()`: signed, truncated toward zero (an end before the
                    // start gives a negative duration, which no threshold passes).
                    let nanoseconds = Int64(clamping: latestEnd) &- Int64(clamping: earliestStart)
                    let milliseconds = nanoseconds / 1_000_000
                    // As the Collector: the test runs after every span, and once passed it stays passed.
                    for (slot, bounds) in checks.latency.enumerated() where Self.latencyPasses(milliseconds, bounds) {
                        latencyPassed |= 1 << slot
                    }
                }
            }
        }

        /// The Collector's latency test (contrib `internal/sampling/latency.go`): without an upper bound,
        /// `duration >= threshold_ms`; with one, `threshold_ms < duration <= upper_threshold_ms`.
        static func latencyPasses(_ milliseconds: Int64, _ bounds: (threshold: Int64, upper: Int64)) -> Bool {
            if bounds.upper == 0 { return milliseconds >= bounds.threshold }
            return bounds.threshold < milliseconds && milliseconds <= bounds.upper
        }
    }
}

/// The per-span checks of a set of policies, each with its slot in `TraceSummary`.
public struct PolicyChecks: Sendable {
    /// "Some resource or span matches" checks, by slot (at most 64).
    var existence: [ExistenceCheck] = []
    /// Latency bounds in milliseconds, by slot (at most 64).
    var latency: [(threshold: Int64, upper: Int64)] = []

    public init() {}

    /// The checks of `policies` (and their sub-policies), which must have been numbered into this.
    init(_ policies: [SamplingPolicy]) throws(ConfigurationError) {
        for policy in policies { policy.collectChecks(into: &self) }
        guard existence.count <= 64, latency.count <= 64 else {
            throw ConfigurationError(key: "policies", "at most 64 attribute, status, trace_state or trace_flags policies and 64 latency policies")
        }
    }
}

/// A question asked of every resource and span of a trace: does one match?
enum ExistenceCheck: Sendable {
    /// Integer bounds: the Collector's `numeric_attribute` exactly; values are read as pdata's
    /// `Value.Int()` reads them, so doubles, strings and booleans read as 0.
    case numeric(key: String, min: Int64, max: Int64)
    /// Bounds with a fractional part (an AgentTrace extension): integers and doubles compare by their
    /// value; other types read as 0, as above; NaN never matches.
    case decimal(key: String, min: Double, max: Double)
    case string(key: String, matcher: StringMatcher)
    /// Non-boolean values read as false.
    case boolean(key: String, value: Bool)
    /// One bit per `SpanStatus.Code` (its raw value): a mask, not a set, as it is asked of every span.
    case statusCode(mask: UInt8)
    case traceState(key: String, values: Set<String>)
    case traceFlags

    func matches(_ chunk: SpanSelection) -> Bool {
        switch self {
        case .numeric(let key, let low, let high):
            func inRange(_ value: AttributeValue?) -> Bool {
                guard let value else { return false }
                let number = value.intValue ?? 0
                return number >= low && number <= high
            }
            return Self.resourceOrSpan(chunk, key, resource: inRange, span: inRange)
        case .decimal(let key, let low, let high):
            func inRange(_ value: AttributeValue?) -> Bool {
                guard let value else { return false }
                let number = value.doubleValue ?? 0
                return number >= low && number <= high
            }
            return Self.resourceOrSpan(chunk, key, resource: inRange, span: inRange)
        case .string(let key, let matcher):
            return Self.resourceOrSpan(
                chunk, key,
                resource: { value in value.map { matcher.matches($0.stringValue ?? "") } ?? false },
                span: { value in
                    guard let text = value?.stringValue, !text.isEmpty else { return false }
                    return matcher.matches(text)
                })
        case .boolean(let key, let expected):
            func matches(_ value: AttributeValue?) -> Bool { value.map { ($0.boolValue ?? false) == expected } ?? false }
            return Self.resourceOrSpan(chunk, key, resource: matches, span: matches)
        case .statusCode(let mask):
            return chunk.containsSpan { spans, index in mask & 1 << UInt8(spans[index].status.code.rawValue) != 0 }
        case .traceState(let key, let values):
            return chunk.containsSpan { spans, index in
                let traceState = spans[index].traceState
                guard !traceState.isEmpty, let value = SamplingPolicy.traceStateValue(traceState, key: key) else { return false }
                return values.contains(value)
            }
        case .traceFlags:
            return chunk.containsSpan { spans, index in spans[index].flags & 0x01 != 0 }
        }
    }

    /// The resource's attribute `key`, then the spans', as the Collector checks "resource or span" policies.
    static func resourceOrSpan(_ chunk: SpanSelection, _ key: String, resource: (AttributeValue?) -> Bool,
                               span: (AttributeValue?) -> Bool) -> Bool {
        resource(chunk.resource.attributes[key]) || chunk.containsSpan { spans, index in span(spans[index].attributes[key]) }
    }
}

/// One `tail_sampling` policy, with the OpenTelemetry Collector's name, type and fields, evaluated as the
/// Collector evaluates it (contrib `processor/tailsamplingprocessor`), so a pasted `policies:` block
/// keeps the same traces.
public struct SamplingPolicy: Sendable {
    /// The policy's `name`.
    public let name: String
    /// The policy's `type`.
    public let type: String
    let rule: Rule

    indirect enum Rule: Sendable {
        case alwaysSample
        /// "Some resource or span matches" (slot in the summary), or with `invert_match` "none does".
        case exists(slot: Int, ExistenceCheck, invert: Bool)
        /// Trace duration in whole milliseconds: `>= threshold` when upper is 0, else `> threshold` and `<= upper`.
        case latency(slot: Int, thresholdMs: Int64, upperMs: Int64)
        case probabilistic(salt: [UInt8], threshold: UInt64)
        case rateLimiting(TokenBucket)
        case bytesLimiting(TokenBucket)
        case spanCount(min: Int, max: Int)
        case and([SamplingPolicy])
        case not(SamplingPolicy)
        case drop([SamplingPolicy])
        case composite(CompositeBudget, [SamplingPolicy])
    }

    func collectChecks(into checks: inout PolicyChecks) {
        switch rule {
        case .exists(let slot, let check, _):
            precondition(slot == checks.existence.count, "policies are numbered in the order their checks are collected")
            checks.existence.append(check)
        case .latency(let slot, let threshold, let upper):
            precondition(slot == checks.latency.count, "policies are numbered in the order their checks are collected")
            checks.latency.append((threshold, upper))
        case .and(let policies), .drop(let policies), .composite(_, let policies):
            for policy in policies { policy.collectChecks(into: &checks) }
        case .not(let policy):
            policy.collectChecks(into: &checks)
        case .alwaysSample, .probabilistic, .rateLimiting, .bytesLimiting, .spanCount:
            break
        }
    }

    /// The decision for a whole trace at `now` (this policy alone, its checks run here).
    public func evaluate(_ trace: SampledTrace, now: UInt64) -> SamplingDecision {
        let checks = (try? PolicyChecks([self])) ?? PolicyChecks()
        return evaluate(TraceSummary(trace, checks: checks), now: now)
    }

    /// The decision for a summarised trace at `now` (Unix nanoseconds; the rate limits refill by it).
    public func evaluate(_ trace: TraceSummary, now: UInt64) -> SamplingDecision {
        switch rule {
        case .alwaysSample:
            return .sampled
        case .exists(let slot, _, let invert):
            return (trace.matched & (1 << slot) != 0) != invert ? .sampled : .notSampled
        case .latency(let slot, _, _):
            return trace.latencyPassed & (1 << slot) != 0 ? .sampled : .notSampled
        case .probabilistic(let salt, let threshold):
            return Self.traceHash(trace.traceID, salt: salt) <= threshold ? .sampled : .notSampled
        case .rateLimiting(let bucket):
            return bucket.take(Double(trace.spanCount), now: now) ? .sampled : .notSampled
        case .bytesLimiting(let bucket):
            return bucket.take(Double(trace.sizeBytes), now: now) ? .sampled : .notSampled
        case .spanCount(let low, let high):
            let count = trace.spanCount
            return count >= low && (high == 0 || count <= high) ? .sampled : .notSampled
        case .and(let policies):
            // "Any NotSampled is NotSampled", stopping there, so later rate limits spend nothing.
            for policy in policies where policy.evaluate(trace, now: now) == .notSampled { return .notSampled }
            return .sampled
        case .not(let policy):
            switch policy.evaluate(trace, now: now) {
            case .sampled: return .notSampled
            case .notSampled: return .sampled
            case .dropped: return .dropped
            }
        case .drop(let policies):
            for policy in policies where policy.evaluate(trace, now: now) == .notSampled { return .notSampled }
            return .dropped
        case .composite(let budget, let policies):
            // The first sub-policy that samples decides, within its share of the spans per second;
            // there is no falling through to later sub-policies once one has sampled.
            for (index, policy) in policies.enumerated() where policy.evaluate(trace, now: now) == .sampled {
                return budget.spend(trace.spanCount, policy: index, now: now) ? .sampled : .notSampled
            }
            return .notSampled
        }
    }

    /// True when this policy samples `trace` now and will whatever spans are still to come: the
    /// answers that only grow (a span matched, the duration passed, the count reached) and those fixed
    /// by the trace id. Rate limits, inversions and budgets are never sure before the decision.
    func samplesForGood(_ trace: TraceSummary) -> Bool {
        switch rule {
        case .alwaysSample, .probabilistic:
            return evaluate(trace, now: 0) == .sampled
        case .exists(_, _, let invert):
            return !invert && evaluate(trace, now: 0) == .sampled
        case .latency:
            return evaluate(trace, now: 0) == .sampled
        case .spanCount(let low, let high):
            return high == 0 && trace.spanCount >= low
        case .and(let policies):
            return policies.allSatisfy { $0.samplesForGood(trace) }
        case .rateLimiting, .bytesLimiting, .not, .drop, .composite:
            return false
        }
    }

    /// True for a policy whose evaluation can change another trace's decision (a shared budget) or turn
    /// a sampled trace into a dropped one (`drop`), here or in a sub-policy.
    var canChangeOtherDecisions: Bool {
        switch rule {
        case .rateLimiting, .bytesLimiting, .drop, .composite: true
        case .and(let policies): policies.contains(where: \.canChangeOtherDecisions)
        case .not(let policy): policy.canChangeOtherDecisions
        case .alwaysSample, .exists, .latency, .probabilistic, .spanCount: false
        }
    }

    /// FNV-1a (64-bit) over the salt's bytes and then the trace id's 16 bytes: the Collector's
    /// `probabilistic` hash, so the same trace ids are kept.
    static func traceHash(_ traceID: TraceID, salt: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ byte: UInt8) {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        for byte in salt { mix(byte) }
        for word in [traceID.high, traceID.low] {
            for shift in stride(from: 56, through: 0, by: -8) { mix(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return hash
    }

    /// The Collector's threshold for a percentage: (2^64 - 1) x ratio, the product rounded to 64 significant
    /// bits (half to even, as Go's big.Float does) and truncated; 100% or more keeps everything.
    static func threshold(percentage: Double) -> UInt64 {
        let ratio = percentage / 100
        guard ratio > 0 else { return 0 }
        guard ratio < 1 else { return .max }
        // ratio = significand x 2^exponent exactly, significand a 53-bit integer.
        let significand = UInt128(ratio.significandBitPattern | (ratio.isNormal ? 1 << 52 : 0))
        let exponent = Int(ratio.exponent) - 52
        var product = UInt128(UInt64.max) * significand
        var scale = exponent
        let bits = 128 - product.leadingZeroBitCount
        if bits > 64 {
            let drop = bits - 64
            let kept = product >> drop
            let remainder = product & ((1 << drop) - 1)
            let half: UInt128 = 1 << (drop - 1)
            var rounded = kept
            if remainder > half || (remainder == half && kept & 1 == 1) { rounded += 1 }
            product = rounded
            scale += drop
        }
        if scale >= 0 {
            return product.leadingZeroBitCount >= 64 + scale ? UInt64(product << scale) : .max
        }
        let shifted = -scale >= 128 ? 0 : product >> (-scale)
        return shifted > UInt128(UInt64.max) ? .max : UInt64(shifted)
    }

    /// The value of `key` in a W3C `tracestate` header (list members `key=value`, comma-separated,
    /// optional whitespace); nil when absent or when the header does not parse.
    static func traceStateValue(_ header: String, key: String) -> String? {
        var found: String?
        for member in header.split(separator: ",", omittingEmptySubsequences: true) {
            let trimmed = member.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            guard let equals = trimmed.firstIndex(of: "="), equals != trimmed.startIndex else { return nil }
            let memberKey = trimmed[..<equals]
            let value = trimmed[trimmed.index(after: equals)...]
            guard !value.isEmpty, value.count <= 256, memberKey.count <= 256 else { return nil }
            if memberKey == key, found == nil { found = String(value) }
        }
        return found
    }
}

/// Matches a `string_attribute` value: exact values, or regular expressions that match anywhere in the
/// text (as Go's `MatchString`: write `^…$` for a whole-value match), with results remembered in a
/// bounded cache.
public final class StringMatcher: Sendable {
    private let values: Set<String>
    private let expressions: [NSRegularExpressionBox]
    private let cacheSize: Int
    private let cache = Mutex<[String: Bool]>([:])

    init(values: [String], regex: Bool, cacheSize: Int) throws {
        let nonEmpty = values.filter { !$0.isEmpty }
        if regex {
            self.values = []
            expressions = try nonEmpty.map { try NSRegularExpressionBox($0) }
        } else {
            self.values = Set(nonEmpty)
            expressions = []
        }
        self.cacheSize = cacheSize > 0 ? cacheSize : 128
    }

    /// How many regular-expression results are remembered now (at most `cache_max_size`).
    var cachedCount: Int { cache.withLock { $0.count } }

    func matches(_ text: String) -> Bool {
        guard !expressions.isEmpty else { return values.contains(text) }
        if let known = cache.withLock({ $0[text] }) { return known }
        let result = expressions.contains { $0.matches(text) }
        cache.withLock { cache in
            if cache.count >= cacheSize { cache.removeAll(keepingCapacity: true) }
            cache[text] = result
        }
        return result
    }
}

/// A compiled regular expression, shareable across threads (it is immutable once built).
final class NSRegularExpressionBox: @unchecked Sendable {
    private let expression: NSRegularExpression

    init(_ pattern: String) throws {
        expression = try NSRegularExpression(pattern: pattern)
    }

    func matches(_ text: String) -> Bool {
        expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
    }
}

/// A token bucket: `rate` tokens a second, holding at most `capacity`, starting full; taking `n` succeeds
/// only when `n` tokens are there (`rate_limiting`, `bytes_limiting`). Time comes from the caller, so a
/// replay's virtual clock drives it the same way every run.
public final class TokenBucket: Sendable {
    private let rate: Double
    private let capacity: Double
    private let state: Mutex<(tokens: Double, last: UInt64?)>

    init(rate: Double, capacity: Double) {
        self.rate = rate
        self.capacity = capacity
        state = Mutex((capacity, nil))
    }

    func take(_ count: Double, now: UInt64) -> Bool {
        state.withLock { state in
            if let last = state.last, now > last {
                state.tokens = min(capacity, state.tokens + Double(now - last) / 1e9 * rate)
            }
            state.last = max(state.last ?? now, now)
            guard state.tokens >= count else { return false }
            state.tokens -= count
            return true
        }
    }
}

/// The `composite` policy's spending: per second, each sub-policy may sample up to its share of
/// `max_total_spans_per_second`.
public final class CompositeBudget: Sendable {
    private let allocations: [Int]
    private let total: Int
    private let state: Mutex<(second: UInt64, spent: [Int])>

    init(total: Int, allocations: [Int]) {
        self.total = total
        self.allocations = allocations
        state = Mutex((UInt64.max, Array(repeating: 0, count: allocations.count)))
    }

    func spend(_ spans: Int, policy index: Int, now: UInt64) -> Bool {
        state.withLock { state in
            let second = now / 1_000_000_000
            if second != state.second {
                state.second = second
                state.spent = Array(repeating: 0, count: allocations.count)
            }
            let after = state.spent[index] + spans
            guard after <= allocations[index], after <= total else { return false }
            state.spent[index] = after
            return true
        }
    }
}
