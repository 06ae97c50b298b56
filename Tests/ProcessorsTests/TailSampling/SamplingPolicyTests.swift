import Pipeline
import Testing
import TestSupport
import TraceModel
@testable import Processors

/// Traces x policies with the decisions the OpenTelemetry Collector's `tail_sampling` gives them.
@Suite("tail sampling policies")
struct SamplingPolicyTests {
    static func decide(_ yaml: String, _ trace: TraceBuilder, now: UInt64 = TraceBuilder.origin) throws -> SamplingDecision {
        try policy(yaml).evaluate(trace.sampled, now: now)
    }

    static var slow: TraceBuilder { let t = TraceBuilder(1); t.span(durationMs: 150); return t }
    static var fast: TraceBuilder { let t = TraceBuilder(2); t.span(durationMs: 100); return t }

    @Test("always_sample samples everything")
    func alwaysSample() throws {
        #expect(try Self.decide("{name: all, type: always_sample}", Self.fast) == .sampled)
    }

    /// Expected decisions: the Collector's own vectors (contrib internal/sampling/latency_test.go,
    /// TestEvaluate_Latency with threshold 5000 and TestEvaluate_Bounded_Latency with 5000/10000), and
    /// its latency.go: `duration >= threshold` without an upper bound, `threshold < duration <= upper` with one.
    @Test("latency: >= threshold_ms without upper_threshold_ms, (threshold, upper] with it, deciding at the first span that passes")
    func latency() throws {
        func trace(_ number: UInt64, _ spans: [(startMs: UInt64, durationMs: UInt64)]) -> TraceBuilder {
            let t = TraceBuilder(number)
            for span in spans { t.span(startMs: span.startMs, durationMs: span.durationMs) }
            return t
        }
        let p = "{name: slow, type: latency, latency: {threshold_ms: 5000}}"
        #expect(try Self.decide(p, trace(1, [(0, 4500)])) == .notSampled)
        #expect(try Self.decide(p, trace(2, [(0, 5000)])) == .sampled)  // exactly at the threshold
        #expect(try Self.decide(p, trace(3, [(0, 3000), (2500, 3000)])) == .sampled)  // max end - min start
        let zero = "{name: any, type: latency, latency: {threshold_ms: 0}}"
        #expect(try Self.decide(zero, trace(4, [(0, 0)])) == .sampled)
        let banded = "{name: band, type: latency, latency: {threshold_ms: 5000, upper_threshold_ms: 10000}}"
        #expect(try Self.decide(banded, trace(5, [(0, 4500)])) == .notSampled)
        #expect(try Self.decide(banded, trace(6, [(0, 5000)])) == .notSampled)  // the lower bound is exclusive
        #expect(try Self.decide(banded, trace(7, [(0, 5001)])) == .sampled)
        #expect(try Self.decide(banded, trace(8, [(0, 10000)])) == .sampled)
        #expect(try Self.decide(banded, trace(9, [(0, 10001)])) == .notSampled)
        // The Collector's running check: 6 s after the first span is inside the band, so a later,
        // longer span does not undo it.
        #expect(try Self.decide(banded, trace(10, [(0, 6000), (0, 20000)])) == .sampled)
    }

    @Test("numeric_attribute: inclusive range on span or resource, 0 meaning unset, non-integers read as 0, invert_match")
    func numericAttribute() throws {
        let p = "{name: http5xx, type: numeric_attribute, numeric_attribute: {key: http.status_code, min_value: 500, max_value: 599}}"
        let error = TraceBuilder(1)
        error.span().span(attributes: [Attribute("http.status_code", .int(503))])
        let notFound = TraceBuilder(2)
        notFound.span(attributes: [Attribute("http.status_code", .int(404))])
        let edge = TraceBuilder(3)
        edge.span(attributes: [Attribute("http.status_code", .int(599))])
        let double = TraceBuilder(4)
        double.span(attributes: [Attribute("http.status_code", .double(503))])
        let resource = TraceBuilder(5)
        resource.span("api").resource("api", [Attribute("http.status_code", .int(500))])
        #expect(try Self.decide(p, error) == .sampled)
        #expect(try Self.decide(p, notFound) == .notSampled)
        #expect(try Self.decide(p, edge) == .sampled)
        #expect(try Self.decide(p, double) == .notSampled)
        #expect(try Self.decide(p, resource) == .sampled)
        let below = "{name: small, type: numeric_attribute, numeric_attribute: {key: http.status_code, max_value: 10}}"
        #expect(try Self.decide(below, double) == .sampled)  // 503.0 reads as 0, and no lower bound is set
        let inverted = "{name: not5xx, type: numeric_attribute, numeric_attribute: {key: http.status_code, min_value: 500, max_value: 599, invert_match: true}}"
        #expect(try Self.decide(inverted, error) == .notSampled)
        #expect(try Self.decide(inverted, notFound) == .sampled)
        #expect(try Self.decide(inverted, Self.fast) == .sampled)  // no such attribute anywhere
    }

    /// Fractional bounds are AgentTrace's extension; integer bounds above stay the Collector's.
    @Test("numeric_attribute: fractional bounds compare doubles and integers by value (agent scores in 0..1)")
    func numericAttributeDecimal() throws {
        func scored(_ number: UInt64, _ value: AttributeValue?) -> TraceBuilder {
            let t = TraceBuilder(number)
            t.span().span(attributes: value.map { [Attribute("intelligence.integration_score", $0)] } ?? [])
            return t
        }
        let p = "{name: integrated, type: numeric_attribute, numeric_attribute: {key: intelligence.integration_score, min_value: 0.8}}"
        #expect(try Self.decide(p, scored(1, .double(0.93))) == .sampled)
        #expect(try Self.decide(p, scored(2, .double(0.8))) == .sampled)  // inclusive
        #expect(try Self.decide(p, scored(3, .double(0.79))) == .notSampled)
        #expect(try Self.decide(p, scored(4, .int(1))) == .sampled)
        #expect(try Self.decide(p, scored(5, .string("0.93"))) == .notSampled)  // strings read as 0
        #expect(try Self.decide(p, scored(6, .double(.nan))) == .notSampled)
        #expect(try Self.decide(p, scored(7, nil)) == .notSampled)
        let band = "{name: b, type: numeric_attribute, numeric_attribute: {key: intelligence.integration_score, min_value: 0.25, max_value: 0.5}}"
        #expect(try Self.decide(band, scored(8, .double(0.3))) == .sampled)
        #expect(try Self.decide(band, scored(9, .double(0.6))) == .notSampled)
        let below = "{name: l, type: numeric_attribute, numeric_attribute: {key: intelligence.integration_score, max_value: 0.5}}"
        #expect(try Self.decide(below, scored(10, .double(-3.5))) == .sampled)  // no lower bound
        let inverted = "{name: i, type: numeric_attribute, numeric_attribute: {key: intelligence.integration_score, min_value: 0.8, invert_match: true}}"
        #expect(try Self.decide(inverted, scored(11, .double(0.93))) == .notSampled)
        #expect(try Self.decide(inverted, scored(12, .double(0.5))) == .sampled)
        #expect(try Self.decide(inverted, scored(13, nil)) == .sampled)
        // Integer bounds stay the Collector's: a double value reads as 0 there.
        let integer = "{name: n, type: numeric_attribute, numeric_attribute: {key: intelligence.integration_score, min_value: 1, max_value: 10}}"
        #expect(try Self.decide(integer, scored(14, .double(5.5))) == .notSampled)
        #expect(throws: ConfigurationError.self) {
            try policy("{name: x, type: numeric_attribute, numeric_attribute: {key: k, min_value: 0.9, max_value: 0.1}}")
        }
    }

    @Test("probabilistic: the Collector's FNV-1a hash and threshold, so the same trace ids are kept")
    func probabilistic() throws {
        #expect(SamplingPolicy.threshold(percentage: 10) == 0x1999_9999_9999_99FF)
        #expect(SamplingPolicy.threshold(percentage: 50) == 0x7FFF_FFFF_FFFF_FFFF)
        #expect(SamplingPolicy.threshold(percentage: 1) == 184_467_440_737_095_519)
        #expect(SamplingPolicy.threshold(percentage: 0.1) == 18_446_744_073_709_551)
        #expect(SamplingPolicy.threshold(percentage: 100) == .max)
        #expect(SamplingPolicy.threshold(percentage: 0) == 0)
        let id = TraceID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10)
        #expect(SamplingPolicy.traceHash(id, salt: Array("default-hash-seed".utf8)) == 15_838_989_281_584_434_349)
        #expect(SamplingPolicy.traceHash(id, salt: Array("custom-salt".utf8)) == 8_205_203_291_369_812_245)
        let w3c = TraceID(high: 0x4BF9_2F35_77B3_4DA6, low: 0xA3CE_929D_0E0E_4736)
        #expect(SamplingPolicy.traceHash(w3c, salt: Array("default-hash-seed".utf8)) == 11_908_981_664_384_643_253)

        let half = try policy("{name: half, type: probabilistic, probabilistic: {sampling_percentage: 50}}")
        let salted = try policy("{name: salted, type: probabilistic, probabilistic: {hash_salt: custom-salt, sampling_percentage: 50}}")
        #expect(half.evaluate(SampledTrace(traceID: id, chunks: []), now: 0) == .notSampled)
        #expect(salted.evaluate(SampledTrace(traceID: id, chunks: []), now: 0) == .sampled)
        // About a quarter of random ids at 25%.
        let quarter = try policy("{name: q, type: probabilistic, probabilistic: {sampling_percentage: 25}}")
        var generator = SplitMix64(seed: 7)
        let kept = (0..<20_000).filter { _ in
            quarter.evaluate(SampledTrace(traceID: TraceID(high: generator.next(), low: generator.next()), chunks: []), now: 0) == .sampled
        }.count
        #expect(abs(kept - 5_000) < 300)
    }

    @Test("status_code: any span with one of the codes")
    func statusCode() throws {
        let failed = TraceBuilder(1)
        failed.span().span(error: true)
        #expect(try Self.decide("{name: e, type: status_code, status_code: {status_codes: [ERROR]}}", failed) == .sampled)
        #expect(try Self.decide("{name: e, type: status_code, status_code: {status_codes: [ERROR]}}", Self.fast) == .notSampled)
        #expect(try Self.decide("{name: u, type: status_code, status_code: {status_codes: [OK, UNSET]}}", Self.fast) == .sampled)
    }

    @Test("string_attribute: exact values, unanchored regular expressions, resources, empty values, invert_match")
    func stringAttribute() throws {
        let model = TraceBuilder(1)
        model.span("planner").span("planner", attributes: [Attribute("gen_ai.request.model", "gpt-4o")])
        let claude = TraceBuilder(2)
        claude.span("coder", attributes: [Attribute("gen_ai.request.model", "claude-3-5-sonnet")])
        let empty = TraceBuilder(3)
        empty.span(attributes: [Attribute("gen_ai.request.model", "")])
        let exact = "{name: m, type: string_attribute, string_attribute: {key: gen_ai.request.model, values: [gpt-4o, o1]}}"
        #expect(try Self.decide(exact, model) == .sampled)
        #expect(try Self.decide(exact, claude) == .notSampled)
        let regex = "{name: r, type: string_attribute, string_attribute: {key: gen_ai.request.model, values: ['^gpt-'], enabled_regex_matching: true}}"
        #expect(try Self.decide(regex, model) == .sampled)
        #expect(try Self.decide(regex, claude) == .notSampled)
        let partial = "{name: p, type: string_attribute, string_attribute: {key: gen_ai.request.model, values: ['4o'], enabled_regex_matching: true}}"
        #expect(try Self.decide(partial, model) == .sampled)  // matches anywhere, as Go's MatchString
        let any = "{name: a, type: string_attribute, string_attribute: {key: gen_ai.request.model, values: ['.*'], enabled_regex_matching: true}}"
        #expect(try Self.decide(any, empty) == .notSampled)  // empty span values never match
        let service = "{name: s, type: string_attribute, string_attribute: {key: service.name, values: [coder]}}"
        #expect(try Self.decide(service, claude) == .sampled)  // resource attributes count
        let inverted = "{name: i, type: string_attribute, string_attribute: {key: gen_ai.request.model, values: [gpt-4o], invert_match: true}}"
        #expect(try Self.decide(inverted, model) == .notSampled)
        #expect(try Self.decide(inverted, claude) == .sampled)
        #expect(try Self.decide(inverted, Self.fast) == .sampled)
        #expect(throws: ConfigurationError.self) {
            try policy("{name: bad, type: string_attribute, string_attribute: {key: k, values: ['(unclosed'], enabled_regex_matching: true}}")
        }
    }

    @Test("boolean_attribute: non-booleans read as false")
    func booleanAttribute() throws {
        let flagged = TraceBuilder(1)
        flagged.span(attributes: [Attribute("debug", .bool(true))])
        let text = TraceBuilder(2)
        text.span(attributes: [Attribute("debug", "true")])
        let p = "{name: b, type: boolean_attribute, boolean_attribute: {key: debug, value: true}}"
        #expect(try Self.decide(p, flagged) == .sampled)
        #expect(try Self.decide(p, text) == .notSampled)
        #expect(try Self.decide("{name: f, type: boolean_attribute, boolean_attribute: {key: debug, value: false}}", text) == .sampled)
        #expect(try Self.decide("{name: i, type: boolean_attribute, boolean_attribute: {key: debug, value: true, invert_match: true}}", flagged) == .notSampled)
    }

    @Test("rate_limiting: a token bucket of spans, starting full at twice the rate, refilled by time")
    func rateLimiting() throws {
        let limiter = try policy("{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 10}}")
        let fifteen = TraceBuilder(1)
        for _ in 0..<15 { fifteen.span() }
        let t0 = TraceBuilder.origin
        #expect(limiter.evaluate(fifteen.sampled, now: t0) == .sampled)  // 20 -> 5
        #expect(limiter.evaluate(fifteen.sampled, now: t0) == .notSampled)
        #expect(limiter.evaluate(fifteen.sampled, now: t0 + 1_000_000_000) == .sampled)  // 5 + 10 = 15
        let burst = try policy("{name: b, type: rate_limiting, rate_limiting: {spans_per_second: 10, burst_capacity: 12}}")
        #expect(burst.evaluate(fifteen.sampled, now: t0) == .notSampled)  // more spans than the bucket holds
    }

    /// The Collector's bytes_limiting.go: a token bucket of bytes (golang.org/x/time/rate, starting
    /// full), holding `burst_capacity` or by default twice `bytes_per_second`; AllowN(trace size).
    @Test("bytes_limiting: a token bucket of the trace's bytes, starting full at twice the rate, refilled by time")
    func bytesLimiting() throws {
        let limiter = try policy("{name: b, type: bytes_limiting, bytes_limiting: {bytes_per_second: 1000}}")
        let trace = TraceBuilder(1)
        trace.span()
        let big = SampledTrace(traceID: trace.id, chunks: trace.chunks, sizeBytes: 1500)
        let t0 = TraceBuilder.origin
        #expect(limiter.evaluate(big, now: t0) == .sampled)  // 2000 -> 500
        #expect(limiter.evaluate(big, now: t0) == .notSampled)
        #expect(limiter.evaluate(big, now: t0 + 1_000_000_000) == .sampled)  // 500 + 1000 = 1500
        #expect(limiter.evaluate(SampledTrace(traceID: trace.id, chunks: trace.chunks, sizeBytes: 1), now: t0 + 1_000_000_000) == .notSampled)
        let burst = try policy("{name: b2, type: bytes_limiting, bytes_limiting: {bytes_per_second: 1000, burst_capacity: 1200}}")
        #expect(burst.evaluate(big, now: t0) == .notSampled)  // larger than the bucket
        #expect(burst.evaluate(SampledTrace(traceID: trace.id, chunks: trace.chunks, sizeBytes: 1200), now: t0) == .sampled)
    }

    /// `cache_max_size` bounds the remembered regular-expression results (the Collector's LRU of that
    /// size); without it the default holds 128.
    @Test("string_attribute cache_max_size bounds the regex result cache, and results stay right after eviction")
    func stringAttributeCache() throws {
        func matcher(_ yaml: String) throws -> StringMatcher {
            guard case .exists(_, .string(_, let matcher), _) = try policy(yaml).rule else { throw ConfigurationError(key: "", "not a string policy") }
            return matcher
        }
        let small = try matcher("{name: r, type: string_attribute, string_attribute: {key: k, values: ['^a'], enabled_regex_matching: true, cache_max_size: 2}}")
        let byDefault = try matcher("{name: r, type: string_attribute, string_attribute: {key: k, values: ['^a'], enabled_regex_matching: true}}")
        let texts = ["a1", "b1", "a2", "b2", "a3"]
        for text in texts {
            #expect(small.matches(text) == text.hasPrefix("a"))
            #expect(byDefault.matches(text) == text.hasPrefix("a"))
            #expect(small.cachedCount <= 2)
        }
        #expect(small.cachedCount >= 1)
        #expect(byDefault.cachedCount == texts.count)
        for text in texts { #expect(small.matches(text) == text.hasPrefix("a")) }
    }

    @Test("span_count: inclusive bounds, max 0 meaning none")
    func spanCount() throws {
        let three = TraceBuilder(1)
        three.span().span().span()
        #expect(try Self.decide("{name: c, type: span_count, span_count: {min_spans: 2, max_spans: 3}}", three) == .sampled)
        #expect(try Self.decide("{name: c, type: span_count, span_count: {min_spans: 4}}", three) == .notSampled)
        #expect(try Self.decide("{name: c, type: span_count, span_count: {min_spans: 1, max_spans: 2}}", three) == .notSampled)
    }

    @Test("trace_state and trace_flags")
    func traceStateAndFlags() throws {
        let vendor = TraceBuilder(1)
        vendor.span(traceState: "rojo=00f067aa0ba902b7, vendor=gold")
        let broken = TraceBuilder(2)
        broken.span(traceState: "=gold")
        let p = "{name: t, type: trace_state, trace_state: {key: vendor, values: [gold, silver]}}"
        #expect(try Self.decide(p, vendor) == .sampled)
        #expect(try Self.decide(p, broken) == .notSampled)
        let flagged = TraceBuilder(3)
        flagged.span(flags: 0x301)
        #expect(try Self.decide("{name: f, type: trace_flags}", flagged) == .sampled)
        #expect(try Self.decide("{name: f, type: trace_flags}", vendor) == .notSampled)
    }

    @Test("and, not, drop and composite, nested")
    func composed() throws {
        let slowError = TraceBuilder(1)
        slowError.span(durationMs: 500, error: true)
        let slowOnly = TraceBuilder(2)
        slowOnly.span(durationMs: 500)
        let and = """
        {name: slow-errors, type: and, and: {and_sub_policy: [
          {name: e, type: status_code, status_code: {status_codes: [ERROR]}},
          {name: s, type: latency, latency: {threshold_ms: 100}}]}}
        """
        #expect(try Self.decide(and, slowError) == .sampled)
        #expect(try Self.decide(and, slowOnly) == .notSampled)
        #expect(try Self.decide("{name: empty, type: and, and: {and_sub_policy: []}}", slowOnly) == .sampled)
        let not = """
        {name: not-noise, type: not, not: {not_sub_policy: {name: noise, type: string_attribute, string_attribute: {key: service.name, values: [noise]}}}}
        """
        let noise = TraceBuilder(3)
        noise.span("noise")
        #expect(try Self.decide(not, noise) == .notSampled)
        #expect(try Self.decide(not, slowOnly) == .sampled)
        let health = TraceBuilder(4)
        health.span(attributes: [Attribute("url.path", "/health")])
        let drop = """
        {name: no-health, type: drop, drop: {drop_sub_policy: [
          {name: path, type: string_attribute, string_attribute: {key: url.path, values: ['^/health$'], enabled_regex_matching: true}}]}}
        """
        #expect(try Self.decide(drop, health) == .dropped)
        #expect(try Self.decide(drop, slowOnly) == .notSampled)
        #expect(try Self.decide("{name: all, type: drop, drop: {drop_sub_policy: []}}", slowOnly) == .dropped)
        // not(and(...)) and an and holding a not.
        let nested = """
        {name: n, type: not, not: {not_sub_policy: {name: a, type: and, and: {and_sub_policy: [
          {name: e, type: status_code, status_code: {status_codes: [ERROR]}},
          {name: x, type: not, not: {not_sub_policy: {name: fast, type: latency, latency: {threshold_ms: 1000}}}}]}}}}
        """
        #expect(try Self.decide(nested, slowError) == .notSampled)  // error and not over 1 s: the and samples, the not flips it
        #expect(try Self.decide(nested, slowOnly) == .sampled)
    }

    @Test("composite: the first sub-policy that samples decides, within its share of spans per second")
    func composite() throws {
        let composite = try policy("""
        {name: c, type: composite, composite: {max_total_spans_per_second: 10, policy_order: [errors, rest],
          composite_sub_policy: [
            {name: errors, type: status_code, status_code: {status_codes: [ERROR]}},
            {name: rest, type: always_sample}],
          rate_allocation: [{policy: errors, percent: 60}, {policy: rest, percent: 40}]}}
        """)
        let error3 = TraceBuilder(1)
        error3.span(error: true).span().span()
        let ok3 = TraceBuilder(2)
        ok3.span().span().span()
        let t0 = TraceBuilder.origin
        #expect(composite.evaluate(error3.sampled, now: t0) == .sampled)     // errors: 3 of 6
        #expect(composite.evaluate(error3.sampled, now: t0) == .sampled)     // errors: 6 of 6
        #expect(composite.evaluate(error3.sampled, now: t0) == .notSampled)  // over its share: no falling through to rest
        #expect(composite.evaluate(ok3.sampled, now: t0) == .sampled)        // rest: 3 of 4
        #expect(composite.evaluate(ok3.sampled, now: t0) == .notSampled)
        #expect(composite.evaluate(error3.sampled, now: t0 + 1_000_000_000) == .sampled)  // a new second
        // The Collector's composite_helper.go: a sub-policy missing from rate_allocation is allocated
        // 0 spans per second (a map lookup of a missing name), so it never samples, and the first
        // sub-policy that samples decides: no falling through.
        let missing = try policy("""
        {name: c2, type: composite, composite: {max_total_spans_per_second: 6, composite_sub_policy: [
            {name: a, type: always_sample}, {name: b, type: always_sample}]}}
        """)
        #expect(missing.evaluate(ok3.sampled, now: t0) == .notSampled)
        let partial = try policy("""
        {name: c3, type: composite, composite: {max_total_spans_per_second: 10, composite_sub_policy: [
            {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}, {name: rest, type: always_sample}],
          rate_allocation: [{policy: errors, percent: 100}]}}
        """)
        #expect(partial.evaluate(error3.sampled, now: t0) == .sampled)
        #expect(partial.evaluate(ok3.sampled, now: t0) == .notSampled)  // rest has no allocation
        // An entry with percent 0 gets an equal share of the total: 6 / 2 = 3 spans a second.
        let equal = try policy("""
        {name: c4, type: composite, composite: {max_total_spans_per_second: 6, composite_sub_policy: [
            {name: a, type: always_sample}, {name: b, type: always_sample}],
          rate_allocation: [{policy: a, percent: 0}]}}
        """)
        #expect(equal.evaluate(ok3.sampled, now: t0) == .sampled)
        #expect(equal.evaluate(ok3.sampled, now: t0) == .notSampled)
    }

    @Test("configuration errors name the key")
    func configurationErrors() throws {
        let cases: [(String, String)] = [
            ("{name: '', type: always_sample}", "policies[0].name"),
            ("{name: x, type: nope}", "policies[0].type"),
            ("{name: x, type: ottl_condition}", "policies[0].type"),
            ("{name: x, type: numeric_attribute, numeric_attribute: {key: k}}", "policies[0].numeric_attribute"),
            ("{name: x, type: numeric_attribute, numeric_attribute: {key: k, min_value: 9, max_value: 1}}", "policies[0].numeric_attribute.min_value"),
            ("{name: x, type: status_code, status_code: {status_codes: [BAD]}}", "policies[0].status_code.status_codes"),
            ("{name: x, type: latency, latency: {threshold_ms: 10, upper: 5}}", "policies[0].latency.upper"),
            ("{name: x, type: composite, composite: {composite_sub_policy: [{name: a, type: always_sample}], rate_allocation: [{policy: z, percent: 5}]}}",
             "policies[0].composite.rate_allocation[0].policy"),
        ]
        for (yaml, key) in cases {
            do {
                _ = try policy(yaml)
                Issue.record("accepted \(yaml)")
            } catch let error as ConfigurationError {
                #expect(error.key == key, "\(yaml): \(error)")
            }
        }
    }
}

extension SamplingPolicyTests {
    /// docs/tail-sampling.md: `expected_new_traces_per_sec` is a capacity hint (the Collector's too): room for
    /// that many new traces a second over `decision_wait` is made up front; it changes no decision.
    @Test("expected_new_traces_per_sec is read as a sizing hint; a bad value names the key")
    func expectedNewTracesPerSecond() throws {
        let hinted = try tailSampling("decision_wait: 10s\nnum_traces: 1000\nexpected_new_traces_per_sec: 20000\npolicies: [{name: a, type: always_sample}]")
        #expect(hinted.expectedNewTracesPerSecond == 20000)
        // 20 000 a second for decision_wait (10 s) plus the second in which they arrive.
        #expect(hinted.expectedTraces == 220_000)
        let unhinted = try tailSampling("decision_wait: 10s\nnum_traces: 1000\npolicies: [{name: a, type: always_sample}]")
        #expect(unhinted.expectedNewTracesPerSecond == 0)
        #expect(unhinted.expectedTraces == 1000)
        for bad in ["-1", "many", "1.5"] {
            do {
                _ = try tailSampling("expected_new_traces_per_sec: \(bad)\npolicies: [{name: a, type: always_sample}]")
                Issue.record("accepted expected_new_traces_per_sec: \(bad)")
            } catch let error as ConfigurationError {
                #expect(error.key == "processors.tail_sampling.expected_new_traces_per_sec", "\(bad): \(error)")
            }
        }
    }
}
