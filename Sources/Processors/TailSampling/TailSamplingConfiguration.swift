import Pipeline

/// `processors: tail_sampling:` settings, with the OpenTelemetry Collector's names and defaults.
public struct TailSamplingConfiguration: Sendable {
    /// How long after a trace's first span its decision is made. Default 30s.
    public var decisionWait: Duration = .seconds(30)
    /// Traces held at most; at the limit the oldest goes (see `blockOnOverflow`). Default 50000.
    public var numTraces = 50_000
    /// A sizing hint: room for this many new traces a second over `decision_wait` is made at start. Default 0.
    public var expectedNewTracesPerSecond = 0
    /// Trace ids remembered as sampled, so their late spans pass at once. Default 0 (none).
    public var sampledCacheSize = 0
    /// Trace ids remembered as not sampled, so their late spans are dropped at once. Default 0 (none).
    public var notSampledCacheSize = 0
    /// Stop evaluating at the first policy that samples. Default false.
    public var sampleOnFirstMatch = false
    /// At `num_traces`, decide the oldest trace early instead of evicting it with its spans. Default false.
    public var blockOnOverflow = false
    /// After a root span arrives, decide this soon if that is sooner. Default nil (off).
    public var decisionWaitAfterRootReceived: Duration?
    /// A trace whose spans' protobuf size passes this is not sampled. Default 0 (no limit).
    public var maximumTraceSizeBytes = 0
    /// At shutdown, drop undecided traces instead of deciding them on what arrived. Default false.
    public var dropPendingTracesOnShutdown = false
    /// Decide a trace as soon as a policy samples it for good (an AgentTrace extension): its spans go on at
    /// once and its later spans pass straight through. The kept set is the one waiting would give. Default false.
    public var decideEarly = false
    /// Bytes of held spans at most, beside `num_traces` (an AgentTrace extension): as a new trace arrives
    /// over it, the oldest go as at `num_traces`. Default 0 (no byte limit).
    public var maxHeldBytes = 0
    /// The policies, `drop` policies first (the Collector evaluates them first), then in order.
    public private(set) var policies: [SamplingPolicy] = []
    /// What every arriving chunk is checked for, for the policies.
    private(set) var checks = PolicyChecks()

    var decisionWaitNanos: UInt64 { UInt64(clamping: decisionWait.nanoseconds) }

    /// Traces to make room for at start: `num_traces` up to 100,000, or more when
    /// `expected_new_traces_per_sec` x `decision_wait` says so.
    var expectedTraces: Int {
        let hinted = Double(expectedNewTracesPerSecond) * (Double(decisionWait.nanoseconds) / 1e9 + 1)
        return max(min(numTraces, 100_000), Int(min(hinted, 10_000_000)))
    }
    var decisionWaitAfterRootNanos: UInt64? { decisionWaitAfterRootReceived.map { UInt64(clamping: $0.nanoseconds) } }

    public init() {}

    /// Reads the section, failing on unknown keys, bad values and duplicate policy names.
    public init(section: ConfigSection) throws(ConfigurationError) {
        decisionWait = try section.duration("decision_wait", default: decisionWait, minimum: .milliseconds(1))
        numTraces = try section.int("num_traces", default: numTraces, in: 1...100_000_000)
        expectedNewTracesPerSecond = try section.int("expected_new_traces_per_sec", default: 0, in: 0...100_000_000)
        if let cache = try section.section("decision_cache") {
            sampledCacheSize = try cache.int("sampled_cache_size", default: 0, in: 0...100_000_000)
            notSampledCacheSize = try cache.int("non_sampled_cache_size", default: 0, in: 0...100_000_000)
            try cache.finish()
        }
        sampleOnFirstMatch = try section.bool("sample_on_first_match", default: false)
        blockOnOverflow = try section.bool("block_on_overflow", default: false)
        let rootWait = try section.duration("decision_wait_after_root_received", default: .zero)
        decisionWaitAfterRootReceived = rootWait > .zero ? rootWait : nil
        maximumTraceSizeBytes = try section.int("maximum_trace_size_bytes", default: 0, in: 0...Int.max)
        dropPendingTracesOnShutdown = try section.bool("drop_pending_traces_on_shutdown", default: false)
        decideEarly = try section.bool("decide_early", default: false)
        maxHeldBytes = try section.int("max_held_bytes", default: 0, in: 0...Int.max)
        var policies: [SamplingPolicy] = []
        var slots = SamplingPolicy.Slots()
        for policySection in try section.sectionList("policies") {
            let policy = try SamplingPolicy(section: policySection, slots: &slots)
            guard !policies.contains(where: { $0.name == policy.name }) else {
                throw ConfigurationError(key: policySection.keyPath("name"), "duplicate policy name \"\(policy.name)\"")
            }
            policies.append(policy)
        }
        guard !policies.isEmpty else { throw ConfigurationError(key: section.keyPath("policies"), "expected at least one policy") }
        try section.finish()
        self.policies = policies.filter { $0.type == "drop" } + policies.filter { $0.type != "drop" }
        checks = try PolicyChecks(policies)
        if decideEarly {
            // Deciding before the wait is over keeps the same traces only when no answer can turn a
            // "sampled" around later (drop, a size limit) and no evaluation spends a shared budget.
            if let changing = policies.first(where: \.canChangeOtherDecisions) {
                throw ConfigurationError(key: section.keyPath("decide_early"),
                                         "cannot be used with policy \"\(changing.name)\" (type \(changing.type)): drop, rate_limiting, bytes_limiting and composite policies can change decisions as spans arrive or as others are decided")
            }
            if maximumTraceSizeBytes > 0 {
                throw ConfigurationError(key: section.keyPath("decide_early"),
                                         "cannot be used with maximum_trace_size_bytes: a trace sampled early could still grow past it")
            }
        }
    }
}
