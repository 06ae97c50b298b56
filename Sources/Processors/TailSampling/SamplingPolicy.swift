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
/// per chunk), the total span count, and an estimate of its protobuf size.
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

    /// True when a resource matches `resource` or a span matches `span`, checking each chunk's resource
    /// before its spans, as the Collector does.
    func hasResourceOrSpan(resource: (Resource) -> Bool, span: (Span) -> Bool) -> Bool {
        for chunk in chunks {
            if resource(chunk.resource) { return true }
            for scope in chunk.scopeSpans where scope.spans.contains(where: span) { return true }
        }
        return false
    }

    /// True when some span matches.
    func hasSpan(_ span: (Span) -> Bool) -> Bool {
        chunks.contains { $0.scopeSpans.contains { $0.spans.contains(where: span) } }
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
        /// Trace duration in whole milliseconds: `> threshold`, and `<= upper` when upper is not 0.
        case latency(thresholdMs: Int64, upperMs: Int64)
        case numericAttribute(key: String, min: Int64, max: Int64, invert: Bool)
        case probabilistic(salt: [UInt8], threshold: UInt64)
        case statusCode(Set<SpanStatus.Code>)
        case stringAttribute(key: String, matcher: StringMatcher, invert: Bool)
        case booleanAttribute(key: String, value: Bool, invert: Bool)
        case rateLimiting(TokenBucket)
        case bytesLimiting(TokenBucket)
        case spanCount(min: Int, max: Int)
        case traceState(key: String, values: Set<String>)
        case traceFlags
        case and([SamplingPolicy])
        case not(SamplingPolicy)
        case drop([SamplingPolicy])
        case composite(CompositeBudget, [SamplingPolicy])
    }

    /// The decision for `trace` at `now` (Unix nanoseconds; the rate limits refill by it).
    public func evaluate(_ trace: SampledTrace, now: UInt64) -> SamplingDecision {
        switch rule {
        case .alwaysSample:
            return .sampled
        case .latency(let threshold, let upper):
            // As the Collector: a running duration over the spans in order, deciding at the first span
            // where the test passes.
            var earliest = UInt64.max
            var latest: UInt64 = 0
            for chunk in trace.chunks {
                for scope in chunk.scopeSpans {
                    for span in scope.spans {
                        earliest = min(earliest, span.startTimeUnixNano)
                        latest = max(latest, span.endTimeUnixNano)
                        let milliseconds = latest >= earliest ? Int64(clamping: (latest - earliest) / 1_000_000) : 0
                        if milliseconds > threshold, upper == 0 || milliseconds <= upper { return .sampled }
                    }
                }
            }
            return .notSampled
        case .numericAttribute(let key, let low, let high, let invert):
            // Non-integer values read as 0, as the Collector's typed accessor does.
            func inRange(_ value: AttributeValue?) -> Bool {
                guard let value else { return false }
                let number = value.intValue ?? 0
                return number >= low && number <= high
            }
            let found = trace.hasResourceOrSpan(resource: { inRange($0.attributes[key]) }, span: { inRange($0.attributes[key]) })
            return found != invert ? .sampled : .notSampled
        case .probabilistic(let salt, let threshold):
            return Self.traceHash(trace.traceID, salt: salt) <= threshold ? .sampled : .notSampled
        case .statusCode(let codes):
            return trace.hasSpan { codes.contains($0.status.code) } ? .sampled : .notSampled
        case .stringAttribute(let key, let matcher, let invert):
            let found = trace.hasResourceOrSpan(
                resource: { resource in resource.attributes[key].map { matcher.matches($0.stringValue ?? "") } ?? false },
                span: { span in
                    guard let text = span.attributes[key]?.stringValue, !text.isEmpty else { return false }
                    return matcher.matches(text)
                })
            return found != invert ? .sampled : .notSampled
        case .booleanAttribute(let key, let expected, let invert):
            // Non-boolean values read as false.
            func matches(_ value: AttributeValue?) -> Bool { value.map { ($0.boolValue ?? false) == expected } ?? false }
            let found = trace.hasResourceOrSpan(resource: { matches($0.attributes[key]) }, span: { matches($0.attributes[key]) })
            return found != invert ? .sampled : .notSampled
        case .rateLimiting(let bucket):
            return bucket.take(Double(trace.spanCount), now: now) ? .sampled : .notSampled
        case .bytesLimiting(let bucket):
            return bucket.take(Double(trace.sizeBytes), now: now) ? .sampled : .notSampled
        case .spanCount(let low, let high):
            let count = trace.spanCount
            return count >= low && (high == 0 || count <= high) ? .sampled : .notSampled
        case .traceState(let key, let values):
            return trace.hasSpan { span in
                guard !span.traceState.isEmpty, let value = Self.traceStateValue(span.traceState, key: key) else { return false }
                return values.contains(value)
            } ? .sampled : .notSampled
        case .traceFlags:
            return trace.hasSpan { $0.flags & 0x01 != 0 } ? .sampled : .notSampled
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
