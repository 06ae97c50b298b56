import Pipeline
import Synchronization
import Testing
import TestSupport
import TraceModel
@testable import Processors

/// The processor around the policies: holding, deciding on time, late spans, caches, eviction, marks.
@Suite("tail sampling processor")
struct TailSamplingProcessorTests {
    static let second: UInt64 = 1_000_000_000
    static let t0 = TraceBuilder.origin

    static func processor(_ yaml: String) throws -> TailSamplingProcessor {
        TailSamplingProcessor(configuration: try tailSampling(yaml), metrics: SelfMetrics())
    }

    /// A codec that keeps each encoded batch aside and writes its number: what the processor does
    /// around the codec (resources kept beside the bytes, chunks joined and decoded as one request) is
    /// what is tested; the binary OTLP codec itself is tested in TraceWireTests.
    /// `heldWithoutTraceIDs`: the codec also has the held form, which leaves each span's trace id out
    /// (the processor keeps chunks under it): it stores what it is given with the ids zeroed, as
    /// decoding the held form gives them.
    static func keepingCodec(heldWithoutTraceIDs: Bool = false) -> BatchCodec {
        let kept = Mutex<[SpanBatch]>([])
        let store: @Sendable (SpanBatch) -> [UInt8] = { batch in
            kept.withLock { batches in
                batches.append(batch)
                return withUnsafeBytes(of: UInt64(batches.count - 1).littleEndian, Array.init)
            }
        }
        let decode: BatchCodec.Decode = { bytes in
            kept.withLock { batches in
                var joined = SpanBatch()
                for start in stride(from: 0, to: bytes.count, by: 8) {
                    let number = bytes[start..<start + 8].reversed().reduce(0) { $0 << 8 | Int($1) }
                    joined.resourceSpans += batches[number].resourceSpans
                }
                return joined
            }
        }
        guard heldWithoutTraceIDs else { return BatchCodec(encode: store, decode: decode) }
        return BatchCodec(encode: store, decode: decode, encodeHeld: { selection, _ in
            var zeroed = selection.copied()
            zeroed.resource = Resource()
            for s in zeroed.scopeSpans.indices {
                for i in zeroed.scopeSpans[s].spans.indices { zeroed.scopeSpans[s].spans[i].traceID = .zero }
            }
            return store(SpanBatch(resourceSpans: [zeroed]))
        })
    }

    static let errorsOnly = "policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]"

    @Test("a trace is held for decision_wait after its first span, then released whole or not at all")
    func decisionWait() throws {
        let processor = try Self.processor("decision_wait: 10s\n" + Self.errorsOnly)
        let failed = TraceBuilder(1).span().span().span(error: true)
        let fine = TraceBuilder(2).span().span()
        // The failing trace's spans arrive one per request over 3 s; the other's at once.
        for (index, chunk) in failed.chunks.enumerated() {
            let out = processor.process(SpanBatch(resourceSpans: [chunk]), now: Self.t0 + UInt64(index) * Self.second)
            #expect(TraceBuilder.spanIDs(out, of: failed.id).isEmpty)
        }
        #expect(TraceBuilder.spanIDs(processor.process(fine.batch, now: Self.t0 + Self.second), of: fine.id).isEmpty)
        #expect(processor.heldSpans == 5)
        #expect(TraceBuilder.spanIDs(processor.tick(now: Self.t0 + 9 * Self.second), of: failed.id).isEmpty)
        let released = processor.tick(now: Self.t0 + 11 * Self.second)
        #expect(TraceBuilder.spanIDs(released, of: failed.id) == [1, 2, 3])
        #expect(TraceBuilder.spanIDs(released, of: fine.id).isEmpty)
        #expect(processor.heldSpans == 0)
    }

    @Test("drop wins, then any sampled, else not sampled; drop policies run first whatever their place")
    func combination() throws {
        let processor = try Self.processor("""
        decision_wait: 1s
        policies:
          - {name: all, type: always_sample}
          - {name: no-health, type: drop, drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: url.path, values: [/health]}}]}}
        """)
        let health = TraceBuilder(1).span(attributes: [Attribute("url.path", "/health")])
        let other = TraceBuilder(2).span(attributes: [Attribute("url.path", "/api")])
        _ = processor.process(health.batch, now: Self.t0)
        _ = processor.process(other.batch, now: Self.t0)
        let released = processor.tick(now: Self.t0 + 2 * Self.second)
        #expect(TraceBuilder.spanIDs(released, of: health.id).isEmpty)
        #expect(TraceBuilder.spanIDs(released, of: other.id) == [1])
        let configuration = try tailSampling("policies: [{name: a, type: always_sample}, {name: d, type: drop, drop: {drop_sub_policy: []}}]")
        #expect(configuration.policies.map(\.name) == ["d", "a"])
    }

    @Test("sample_on_first_match stops before later policies spend their rate limits")
    func sampleOnFirstMatch() throws {
        for firstMatch in [false, true] {
            let processor = try Self.processor("""
            decision_wait: 1s
            sample_on_first_match: \(firstMatch)
            policies:
              - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
              - {name: budget, type: rate_limiting, rate_limiting: {spans_per_second: 1, burst_capacity: 1}}
            """)
            let failed = TraceBuilder(1).span(error: true)
            let fine = TraceBuilder(2).span()
            _ = processor.process(failed.batch, now: Self.t0)
            _ = processor.process(fine.batch, now: Self.t0)
            // Both are decided at the same instant, the failing one first: the one token is left for the
            // other trace only if evaluation stopped at `errors`.
            let released = processor.tick(now: Self.t0 + 2 * Self.second)
            let later: [SpanBatch] = []
            #expect(TraceBuilder.spanIDs(released + later, of: fine.id) == (firstMatch ? [1] : []), "sample_on_first_match: \(firstMatch)")
        }
    }

    @Test("late spans without caches follow the decision kept on the trace")
    func lateSpansWithoutCaches() throws {
        let processor = try Self.processor("decision_wait: 1s\n" + Self.errorsOnly)
        let failed = TraceBuilder(1).span(error: true).span()
        let fine = TraceBuilder(2).span().span()
        _ = processor.process(SpanBatch(resourceSpans: [failed.chunks[0], fine.chunks[0]]), now: Self.t0)
        #expect(TraceBuilder.spanIDs(processor.tick(now: Self.t0 + 2 * Self.second), of: failed.id) == [1])
        let late = processor.process(SpanBatch(resourceSpans: [failed.chunks[1], fine.chunks[1]]), now: Self.t0 + 5 * Self.second)
        #expect(TraceBuilder.spanIDs(late, of: failed.id) == [2])
        #expect(TraceBuilder.spanIDs(late, of: fine.id).isEmpty)
    }

    @Test("late spans with caches: the trace is forgotten at once and the cache decides; evicted from the cache, it starts anew")
    func lateSpansWithCaches() throws {
        let processor = try Self.processor("decision_wait: 1s\ndecision_cache: {sampled_cache_size: 1, non_sampled_cache_size: 1}\n" + Self.errorsOnly)
        let failed = TraceBuilder(1).span(error: true).span()
        let failed2 = TraceBuilder(3).span(error: true)
        let fine = TraceBuilder(2).span().span()
        _ = processor.process(SpanBatch(resourceSpans: [failed.chunks[0], fine.chunks[0]]), now: Self.t0)
        _ = processor.tick(now: Self.t0 + 2 * Self.second)
        let late = processor.process(SpanBatch(resourceSpans: [failed.chunks[1], fine.chunks[1]]), now: Self.t0 + 3 * Self.second)
        #expect(TraceBuilder.spanIDs(late, of: failed.id) == [2])
        #expect(TraceBuilder.spanIDs(late, of: fine.id).isEmpty)
        #expect(processor.heldSpans == 0)
        // A second sampled trace pushes the first out of the one-entry cache: its next late span is a new trace.
        _ = processor.process(failed2.batch, now: Self.t0 + 3 * Self.second)
        _ = processor.tick(now: Self.t0 + 5 * Self.second)
        let again = processor.process(SpanBatch(resourceSpans: [failed.chunks[1]]), now: Self.t0 + 6 * Self.second)
        #expect(TraceBuilder.spanIDs(again, of: failed.id).isEmpty)
        #expect(processor.heldSpans == 1)
    }

    @Test("at num_traces the oldest trace is evicted with its spans, and counted; block_on_overflow decides it early instead")
    func eviction() throws {
        for block in [false, true] {
            let metrics = SelfMetrics()
            let processor = TailSamplingProcessor(configuration: try tailSampling("""
            decision_wait: 10s
            num_traces: 2
            block_on_overflow: \(block)
            policies: [{name: all, type: always_sample}]
            """), metrics: metrics)
            let traces = (1...3).map { TraceBuilder(UInt64($0)).span() }
            var released: [SpanBatch] = []
            for (index, trace) in traces.enumerated() {
                released += processor.process(trace.batch, now: Self.t0 + UInt64(index) * Self.second)
            }
            released += processor.tick(now: Self.t0 + 20 * Self.second)
            // Evicted undecided, the first trace's span is lost; decided early, it is released.
            #expect(TraceBuilder.spanIDs(released, of: traces[0].id) == (block ? [1] : []), "block_on_overflow: \(block)")
            #expect(TraceBuilder.spanIDs(released, of: traces[2].id) == [1])
            let text = String(decoding: metrics.render(), as: UTF8.self)
            #expect(text.contains("agenttrace_tail_sampling_sampling_trace_dropped_too_early_total \(block ? 0 : 1)"), "\(text)")
            #expect(text.contains("agenttrace_tail_sampling_traces_evicted_total{undecided=\"\(!block)\"} 1"))
        }
    }

    @Test("a root span brings the decision forward with decision_wait_after_root_received")
    func rootReceived() throws {
        let processor = try Self.processor("decision_wait: 30s\ndecision_wait_after_root_received: 2s\npolicies: [{name: all, type: always_sample}]")
        let trace = TraceBuilder(1).span().span()
        // The child comes first; the root a second later.
        _ = processor.process(SpanBatch(resourceSpans: [trace.chunks[1]]), now: Self.t0)
        _ = processor.process(SpanBatch(resourceSpans: [trace.chunks[0]]), now: Self.t0 + Self.second)
        #expect(TraceBuilder.spanIDs(processor.tick(now: Self.t0 + 2 * Self.second), of: trace.id).isEmpty)
        #expect(TraceBuilder.spanIDs(processor.tick(now: Self.t0 + 3 * Self.second), of: trace.id) == [1, 2])
    }

    @Test("maximum_trace_size_bytes: a trace that grows past it is not sampled")
    func maximumSize() throws {
        let processor = try Self.processor("decision_wait: 1s\nmaximum_trace_size_bytes: 400\npolicies: [{name: all, type: always_sample}]")
        let big = TraceBuilder(1)
        for _ in 0..<10 { big.span(attributes: [Attribute("payload", .string(String(repeating: "x", count: 40)))]) }
        let small = TraceBuilder(2).span()
        _ = processor.process(big.batch, now: Self.t0)
        _ = processor.process(small.batch, now: Self.t0)
        let released = processor.tick(now: Self.t0 + 2 * Self.second)
        #expect(TraceBuilder.spanIDs(released, of: big.id).isEmpty)
        #expect(TraceBuilder.spanIDs(released, of: small.id) == [1])
    }

    /// bytes_limiting spends the trace's encoded size (the Collector's `calculateTraceSize`, the
    /// protobuf size of the trace): any OTLP span is more than 24 bytes (a 16-byte trace id and an
    /// 8-byte span id), so a bucket of 20 bytes keeps nothing and one of 100 kB keeps a small trace.
    @Test("bytes_limiting spends the held trace's encoded size")
    func bytesLimiting() throws {
        for (rate, kept) in [(10, false), (50_000, true)] {
            let processor = try Self.processor("decision_wait: 1s\npolicies: [{name: b, type: bytes_limiting, bytes_limiting: {bytes_per_second: \(rate)}}]")
            let trace = TraceBuilder(1).span().span()
            _ = processor.process(trace.batch, now: Self.t0)
            let released = processor.tick(now: Self.t0 + 2 * Self.second)
            #expect(TraceBuilder.spanIDs(released, of: trace.id) == (kept ? [1, 2] : []), "bytes_per_second \(rate)")
        }
    }

    @Test("shutdown decides what is pending, unless drop_pending_traces_on_shutdown")
    func shutdown() throws {
        for dropPending in [false, true] {
            let processor = try Self.processor("drop_pending_traces_on_shutdown: \(dropPending)\npolicies: [{name: all, type: always_sample}]")
            let trace = TraceBuilder(1).span()
            _ = processor.process(trace.batch, now: Self.t0)
            #expect(TraceBuilder.spanIDs(processor.flush(), of: trace.id) == (dropPending ? [] : [1]))
        }
    }

    @Test("oldestHeldArrival is the first arrival of the oldest trace still undecided, nil once none is")
    func oldestHeldArrival() throws {
        let processor = try Self.processor("decision_wait: 10s\npolicies: [{name: all, type: always_sample}]")
        let first = TraceBuilder(1).span().span()
        let second = TraceBuilder(2).span()
        #expect(processor.oldestHeldArrival == nil)
        _ = processor.process(SpanBatch(resourceSpans: [first.chunks[0]]), now: Self.t0)
        #expect(processor.oldestHeldArrival == Self.t0)
        _ = processor.process(second.batch, now: Self.t0 + 5 * Self.second)
        // A later span of the first trace does not make it younger.
        _ = processor.process(SpanBatch(resourceSpans: [first.chunks[0]]), now: Self.t0 + 6 * Self.second)
        #expect(processor.oldestHeldArrival == Self.t0)
        // The first trace is decided and leaves; the second is still held.
        #expect(!processor.tick(now: Self.t0 + 10 * Self.second).isEmpty)
        #expect(processor.oldestHeldArrival == Self.t0 + 5 * Self.second)
        #expect(!processor.tick(now: Self.t0 + 15 * Self.second).isEmpty)
        #expect(processor.oldestHeldArrival == nil)
    }

    @Test("the same input at the same times gives the same output")
    func deterministic() throws {
        func run() throws -> [[UInt64]] {
            let processor = try Self.processor("""
            decision_wait: 2s
            policies: [{name: q, type: probabilistic, probabilistic: {sampling_percentage: 30}}, {name: r, type: rate_limiting, rate_limiting: {spans_per_second: 5}}]
            """)
            var outputs: [[UInt64]] = []
            for number in 1...200 {
                let trace = TraceBuilder(UInt64(number) &* 0x9E37_79B9).span().span()
                let now = Self.t0 + UInt64(number) * Self.second / 10
                var ids: [UInt64] = []
                for batch in processor.process(trace.batch, now: now) + processor.tick(now: now) {
                    batch.forEachSpan { span, _, _ in ids.append(span.traceID.low) }
                }
                outputs.append(ids)
            }
            return outputs
        }
        let first = try run()
        #expect(first == (try run()))
        #expect(first.joined().count > 0)
    }

    @Test("spans of many traces in one request are split per trace, keeping resource and scope")
    func splitting() {
        let a = TraceBuilder(1).span("x").span("x")
        let b = TraceBuilder(2).span("x")
        var spans = a.chunks.flatMap { $0.scopeSpans[0].spans }
        spans.insert(b.chunks[0].scopeSpans[0].spans[0], at: 1)
        let resource = ResourceSpans(resource: Resource(attributes: [Attribute("service.name", "x")]),
                                     scopeSpans: [ScopeSpans(scope: InstrumentationScope(name: "lib"), spans: spans)])
        let chunks = TailSamplingProcessor.split(resource)
        #expect(chunks.map(\.0) == [a.id, b.id])
        #expect(chunks[0].1.runs == [SpanSelection.Run(scope: 0, spans: 0..<1), SpanSelection.Run(scope: 0, spans: 2..<3)])
        #expect(chunks[0].1.copied().scopeSpans.map { $0.spans.map(\.spanID.value) } == [[1, 2]])
        #expect(chunks[0].1.copied().scopeSpans[0].scope.name == "lib")
        #expect(chunks[1].1.copied().resource == resource.resource)
        #expect(chunks[1].1.spanCount == 1)
    }

    @Test("decide_early: a trace a policy samples for good goes on at once and its later spans pass straight through; the rest wait")
    func decideEarly() throws {
        let metrics = SelfMetrics()
        let processor = TailSamplingProcessor(configuration: try tailSampling("decision_wait: 10s\ndecide_early: true\n" + Self.errorsOnly),
                                              metrics: metrics)
        let failed = TraceBuilder(1).span().span(error: true).span()
        let fine = TraceBuilder(2).span().span()
        #expect(TraceBuilder.spanIDs(processor.process(SpanBatch(resourceSpans: [failed.chunks[0]]), now: Self.t0), of: failed.id).isEmpty)
        // The error arrives: what is held and the error go on at once, before decision_wait.
        let atError = processor.process(SpanBatch(resourceSpans: [failed.chunks[1]]), now: Self.t0 + Self.second)
        #expect(TraceBuilder.spanIDs(atError, of: failed.id) == [1, 2])
        let later = processor.process(SpanBatch(resourceSpans: [failed.chunks[2]]), now: Self.t0 + 2 * Self.second)
        #expect(TraceBuilder.spanIDs(later, of: failed.id) == [3])
        // A trace nothing samples yet waits for its decision as before.
        #expect(TraceBuilder.spanIDs(processor.process(fine.batch, now: Self.t0 + 2 * Self.second), of: fine.id).isEmpty)
        #expect(processor.heldSpans == 2)
        #expect(processor.tick(now: Self.t0 + 13 * Self.second).isEmpty)
        #expect(processor.heldSpans == 0)
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains("agenttrace_tail_sampling_early_decisions_total 1"), "\(text)")
    }

    @Test("decide_early keeps exactly the spans waiting keeps, over a mixed recording with late spans")
    func decideEarlyKeepsWhatWaitingKeeps() throws {
        // The embedded default's policy types, plus span_count and an `and`; the waiting processor is the
        // Collector's behaviour and the oracle.
        let policies = """
        decision_wait: 2s
        policies:
          - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
          - {name: slow, type: latency, latency: {threshold_ms: 400}}
          - {name: alerts, type: string_attribute, string_attribute: {key: alert.rule, values: [".+"], enabled_regex_matching: true}}
          - {name: big, type: span_count, span_count: {min_spans: 6}}
          - {name: both, type: and, and: {and_sub_policy: [{name: p, type: probabilistic, probabilistic: {sampling_percentage: 50}}, {name: n, type: numeric_attribute, numeric_attribute: {key: gen_ai.usage.input_tokens, min_value: 1000, max_value: 100000}}]}}
          - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}
        """
        var random = SplitMix64(seed: 42)
        // 400 traces, 1-8 spans each, arriving over 0-4 s after the trace's first span (some after the
        // 2 s decision), with errors, long spans, alert marks and token counts here and there.
        var arrivals: [(at: UInt64, chunk: ResourceSpans)] = []
        for number in 1...400 {
            let trace = TraceBuilder(UInt64(number) &* 0x9E37_79B9_7F4A_7C15)
            for _ in 0..<Int(random.next() % 8 + 1) {
                var attributes: [Attribute] = []
                if random.next() % 40 == 0 { attributes.append(Attribute("alert.rule", "slow-llm")) }
                if random.next() % 10 == 0 { attributes.append(Attribute("gen_ai.usage.input_tokens", .int(Int64(random.next() % 3000)))) }
                trace.span(startMs: random.next() % 300, durationMs: random.next() % 30 == 0 ? 500 : 20,
                           error: random.next() % 50 == 0, attributes: attributes)
            }
            let start = Self.t0 + UInt64(number) * Self.second / 50
            for (index, chunk) in trace.chunks.enumerated() {
                arrivals.append((index == 0 ? start : start + random.next() % (4 * Self.second), chunk))
            }
        }
        arrivals.sort { $0.at < $1.at }
        func kept(early: Bool) throws -> (spans: Set<[UInt64]>, spanSecondsHeld: Double) {
            let processor = try Self.processor("decide_early: \(early)\n" + policies)
            var out: Set<[UInt64]> = []
            var held = 0.0
            func collect(_ batches: [SpanBatch]) {
                for batch in batches { batch.forEachSpan { span, _, _ in out.insert([span.traceID.low, span.spanID.value]) } }
            }
            var clock = Self.t0
            for arrival in arrivals {
                while clock + Self.second / 10 <= arrival.at {
                    clock += Self.second / 10
                    collect(processor.tick(now: clock))
                    held += Double(processor.heldSpans) / 10
                }
                collect(processor.process(SpanBatch(resourceSpans: [arrival.chunk]), now: arrival.at))
            }
            collect(processor.tick(now: clock + 10 * Self.second))
            return (out, held)
        }
        let waiting = try kept(early: false)
        let early = try kept(early: true)
        #expect(waiting.spans.count > 100 && waiting.spans.count < arrivals.count, "a mix of kept and dropped: \(waiting.spans.count)")
        #expect(early.spans.symmetricDifference(waiting.spans).isEmpty, "\(early.spans.symmetricDifference(waiting.spans).count) spans differ")
        #expect(early.spanSecondsHeld < waiting.spanSecondsHeld, "\(early.spanSecondsHeld) vs \(waiting.spanSecondsHeld)")
    }

    @Test("spans held as bytes come out as the values that went in, resources and order too, as when held as values, with and without decide_early")
    func heldAsBytesReleasesWhatHeldAsValuesReleases() throws {
        let codec = Self.keepingCodec()
        var random = SplitMix64(seed: 7)
        var arrivals: [(at: UInt64, batch: SpanBatch)] = []
        for number in 1...120 {
            let trace = TraceBuilder(UInt64(number))
            for service in ["planner", "coder", "db"] { trace.resource(service, [Attribute("agent.name", .string(service + "-\(number % 3)"))]) }
            for index in 0..<Int(random.next() % 6 + 1) {
                trace.span(["planner", "coder", "db"][index % 3], startMs: random.next() % 100, error: random.next() % 4 == 0)
            }
            let start = Self.t0 + UInt64(number) * Self.second / 20
            if number % 2 == 0 {
                arrivals.append((start, trace.batch))  // every span in one request
            } else {
                for (index, chunk) in trace.chunks.enumerated() {  // one request per span, over a second
                    arrivals.append((start + UInt64(index) * Self.second / 5, SpanBatch(resourceSpans: [chunk])))
                }
            }
        }
        arrivals.sort { $0.at < $1.at }
        func run(_ processor: TailSamplingProcessor) -> [SpanBatch] {
            var out: [SpanBatch] = []
            for arrival in arrivals {
                out += processor.tick(now: arrival.at)
                out += processor.process(arrival.batch, now: arrival.at)
            }
            return out + processor.tick(now: Self.t0 + 60 * Self.second)
        }
        // With decide_early, a chunk that makes its trace sure is kept as a value, after the chunks
        // held as bytes before it.
        for early in [false, true] {
            let yaml = "decision_wait: 2s\ndecide_early: \(early)\n" + Self.errorsOnly
            let asValues = run(try Self.processor(yaml))
            let asBytes = run(TailSamplingProcessor(configuration: try tailSampling(yaml), metrics: SelfMetrics(), codec: codec))
            #expect(asValues.reduce(0) { $0 + $1.spanCount } > 50)
            #expect(asBytes == asValues, "decide_early: \(early)")
        }
    }

    @Test("spans held in the codec's held form, without their trace id, come out with it, as when held as values")
    func heldWithoutTraceIDsReleasesTheirIDs() throws {
        let codec = Self.keepingCodec(heldWithoutTraceIDs: true)
        var arrivals: [(at: UInt64, batch: SpanBatch)] = []
        for number in 1...40 {
            let trace = TraceBuilder(UInt64(number))
            for index in 0..<(number % 4 + 1) { trace.span(["planner", "coder"][index % 2], startMs: UInt64(index), error: number % 3 == 0) }
            let start = Self.t0 + UInt64(number) * Self.second / 10
            if number % 2 == 0 {
                arrivals.append((start, trace.batch))  // every span in one request
            } else {
                for (index, chunk) in trace.chunks.enumerated() {  // one request per span
                    arrivals.append((start + UInt64(index) * Self.second / 4, SpanBatch(resourceSpans: [chunk])))
                }
            }
        }
        arrivals.sort { $0.at < $1.at }
        func run(_ processor: TailSamplingProcessor) -> [SpanBatch] {
            var out: [SpanBatch] = []
            for arrival in arrivals { out += processor.process(arrival.batch, now: arrival.at) + processor.tick(now: arrival.at) }
            return out + processor.tick(now: Self.t0 + 60 * Self.second)
        }
        let yaml = "decision_wait: 2s\n" + Self.errorsOnly
        let asValues = run(try Self.processor(yaml))
        let asBytes = run(TailSamplingProcessor(configuration: try tailSampling(yaml), metrics: SelfMetrics(), codec: codec))
        #expect(asValues.reduce(0) { $0 + $1.spanCount } > 10)
        #expect(asBytes == asValues)
    }

    @Test("decide_early refuses policies whose answers can change later, naming the key")
    func decideEarlyRefusesChangingPolicies() throws {
        for policy in ["{name: d, type: drop, drop: {drop_sub_policy: [{name: h, type: always_sample}]}}",
                       "{name: r, type: rate_limiting, rate_limiting: {spans_per_second: 5}}",
                       "{name: a, type: and, and: {and_sub_policy: [{name: b, type: bytes_limiting, bytes_limiting: {bytes_per_second: 5}}]}}"] {
            #expect {
                try tailSampling("decide_early: true\npolicies: [\(policy)]")
            } throws: { error in
                "\(error)".contains("processors.tail_sampling.decide_early")
            }
        }
        #expect(throws: ConfigurationError.self) { try tailSampling("decide_early: true\nmaximum_trace_size_bytes: 10\n" + Self.errorsOnly) }
    }

    @Test("max_held_bytes: past it, the oldest traces go as at num_traces")
    func maxHeldBytes() throws {
        for block in [false, true] {
            let processor = try Self.processor("""
            decision_wait: 10s
            block_on_overflow: \(block)
            max_held_bytes: 1
            policies: [{name: all, type: always_sample}]
            """)
            let first = TraceBuilder(1).span().span()
            let second = TraceBuilder(2).span()
            var released = processor.process(first.batch, now: Self.t0)
            released += processor.process(second.batch, now: Self.t0 + Self.second)
            // Holding the first trace's bytes already passes the limit: it goes when the second arrives.
            #expect(processor.heldSpans == 1)
            #expect(TraceBuilder.spanIDs(released, of: first.id) == (block ? [1, 2] : []), "block_on_overflow: \(block)")
        }
    }

    @Test("max_held_bytes counts what each trace really holds: its record as well as its spans' bytes")
    func maxHeldBytesCountsRecords() throws {
        // Spans kept as 8 bytes a chunk: four single-span traces hold 32 bytes of spans, under the limit.
        // Each trace also needs its 16-byte id, its arrival and deadline (16) and where its bytes are (8):
        // three traces are past 100 bytes however compactly that is kept.
        let codec = BatchCodec(encode: { _ in [UInt8](repeating: 0, count: 8) }, decode: { _ in SpanBatch() })
        let yaml = "decision_wait: 10s\nmax_held_bytes: 100\npolicies: [{name: all, type: always_sample}]"
        let processor = TailSamplingProcessor(configuration: try tailSampling(yaml), metrics: SelfMetrics(), codec: codec)
        for number in 1...4 {
            _ = processor.process(TraceBuilder(UInt64(number)).span().batch, now: Self.t0 + UInt64(number) * Self.second)
        }
        #expect(processor.heldSpans < 4)
    }

    @Test("traces that keep receiving spans are decided decision_wait after their first span, not held forever",
          arguments: [false, true])
    func recurringTraces(asBytes: Bool) throws {
        // The same 20 trace ids come back every quarter second with more spans (a recording sent in a
        // loop does this). A codec that keeps each batch aside stands for binary OTLP.
        let codec = Self.keepingCodec()
        let configuration = try tailSampling("decision_wait: 10s\nnum_traces: 1000000\npolicies: [{name: all, type: always_sample}]")
        let processor = asBytes ? TailSamplingProcessor(configuration: configuration, metrics: SelfMetrics(), codec: codec)
                                : TailSamplingProcessor(configuration: configuration, metrics: SelfMetrics())
        var released = 0
        var firstRelease: UInt64?
        for round in 0..<100 {
            let now = Self.t0 + UInt64(round) * Self.second / 4
            var batch = SpanBatch()
            for trace in 1...20 { batch.append(contentsOf: TraceBuilder(UInt64(trace)).span().batch) }
            released += processor.process(batch, now: now).reduce(0) { $0 + $1.spanCount }
            let due = processor.tick(now: now).reduce(0) { $0 + $1.spanCount }
            if due > 0, firstRelease == nil { firstRelease = now }
            released += due
        }
        // Decided at 10 s (round 40) with the 41 rounds' spans each trace had; later spans pass at once.
        #expect(firstRelease == Self.t0 + 10 * Self.second)
        #expect(released == 100 * 20)
        #expect(processor.heldSpans == 0)
    }
}

