import Pipeline
import Prometheus

/// One counter per decision, found without hashing (several are counted for every trace).
struct DecisionCounters: Sendable {
    private let sampled: Counter
    private let notSampled: Counter
    private let dropped: Counter

    init(_ make: (SamplingDecision) -> Counter) {
        (sampled, notSampled, dropped) = (make(.sampled), make(.notSampled), make(.dropped))
    }

    subscript(decision: SamplingDecision) -> Counter {
        switch decision {
        case .sampled: sampled
        case .notSampled: notSampled
        case .dropped: dropped
        }
    }
}

/// A counter for each value of a flag.
struct FlagCounters: Sendable {
    private let yes: Counter
    private let no: Counter

    init(_ make: (Bool) -> Counter) {
        (yes, no) = (make(true), make(false))
    }

    subscript(flag: Bool) -> Counter { flag ? yes : no }
}

/// The processor's metrics, named after the OpenTelemetry Collector's `otelcol_processor_tail_sampling_*`
/// with the prefix `agenttrace_tail_sampling_`.
struct TailSamplingMetrics: Sendable {
    /// Per policy (in evaluation order) and decision.
    let policyDecisions: [DecisionCounters]
    let finalDecisions: DecisionCounters
    /// Spans held until their trace's decision, by whether it was sampled.
    let decidedSpans: FlagCounters
    let tracesOnMemory: Gauge
    let spansOnMemory: Gauge
    let bytesOnMemory: Gauge
    let droppedTooEarly: Counter
    /// Evictions at `num_traces`, by whether spans were lost (an undecided trace evicted).
    let evicted: FlagCounters
    let newTraces: Counter
    let cacheReleases: FlagCounters
    let lateSpans: DecisionCounters
    let lateSpanAge: ValueHistogram
    let removalAge: ValueHistogram
    let decisionAge: ValueHistogram
    let decisionTime: ValueHistogram
    let tooLarge: Counter
    let decodeFailures: Counter
    let earlyDecisions: Counter

    static let prefix = "agenttrace_tail_sampling_"
    static let secondsBuckets: [Double] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600]

    init(_ metrics: SelfMetrics, policies: [String], instance: String) {
        let p = Self.prefix
        func byDecision(_ name: String, help: String, labels: [(String, String)] = []) -> DecisionCounters {
            DecisionCounters { decision in
                metrics.counter(p + name, help: help, labels: labels + [("sampled", decision.sampledLabel), ("decision", decision.rawValue)])
            }
        }
        func byFlag(_ name: String, help: String, label: String) -> FlagCounters {
            FlagCounters { flag in metrics.counter(p + name, help: help, labels: [(label, String(flag))]) }
        }
        // As the Collector labels them: "<instance>.<policy>" when the processor has a name.
        policyDecisions = policies.map { policy in
            byDecision("count_traces_sampled_total", help: "Traces each policy decided, by its decision.",
                       labels: [("policy", instance.isEmpty ? policy : "\(instance).\(policy)")])
        }
        finalDecisions = byDecision("global_count_traces_sampled_total", help: "Traces decided, by the final decision.")
        decidedSpans = byFlag("spans_decided_total", help: "Spans held until their trace's decision, by that decision.", label: "sampled")
        tracesOnMemory = metrics.gauge(p + "sampling_traces_on_memory", help: "Traces held (undecided, or decided and remembered).")
        spansOnMemory = metrics.gauge(p + "sampling_spans_on_memory", help: "Spans held waiting for their trace's decision.")
        bytesOnMemory = metrics.gauge(p + "sampling_bytes_on_memory", help: "Bytes of the spans held (their binary OTLP size).")
        droppedTooEarly = metrics.counter(p + "sampling_trace_dropped_too_early_total",
                                          help: "Traces evicted at num_traces before their decision; their spans are lost.")
        evicted = byFlag("traces_evicted_total", help: "Traces removed at num_traces or max_held_bytes.", label: "undecided")
        newTraces = metrics.counter(p + "new_trace_id_received_total", help: "Traces first seen.")
        cacheReleases = byFlag("early_releases_from_cache_decision_total", help: "Spans passed or dropped by a cached decision.",
                               label: "sampled")
        lateSpans = byDecision("late_spans_total", help: "Spans that arrived after their trace's decision, by that decision.")
        lateSpanAge = metrics.histogram(p + "sampling_late_span_age", help: "Seconds from a trace's decision to a late span of it.",
                                        buckets: Self.secondsBuckets)
        removalAge = metrics.histogram(p + "sampling_trace_removal_age", help: "Seconds from a trace's first span to its removal from memory.",
                                       buckets: Self.secondsBuckets)
        decisionAge = metrics.histogram(p + "sampling_decision_age", help: "Seconds from a trace's first span to its decision.",
                                        buckets: Self.secondsBuckets)
        decisionTime = metrics.histogram(p + "sampling_decision_timer_latency", help: "Milliseconds spent deciding the traces due at one tick.",
                                         buckets: [1, 2, 5, 10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 2000, 5000])
        decodeFailures = metrics.counter(p + "decode_failures_total", help: "Spans of sampled traces that could not be decoded from the held bytes.")
        earlyDecisions = metrics.counter(p + "early_decisions_total",
                                         help: "Traces decided before decision_wait because a policy sampled them for good (decide_early).")
        tooLarge = metrics.counter(p + "traces_dropped_too_large_total", help: "Traces not sampled because they passed maximum_trace_size_bytes.")
    }

    func update(_ state: TailSamplingProcessor.State) {
        tracesOnMemory.set(Double(state.traces.count))
        spansOnMemory.set(Double(state.heldSpans))
        bytesOnMemory.set(Double(state.heldBytes))
    }
}
