import Alerting
import Foundation
import JSONText
import TraceModel

/// The anomaly detector's state machine: spans in (with their arrival time), alerts and span marks out;
/// `tick(now:)` lets time pass (silence, finished traces, rate windows). A plain value driven by the
/// caller's clock, so replay on the recording's clock gives the same alerts every run, and tests need no
/// sleeps. Everything it holds is bounded by `max_series` (series and agents) and `max_traces`.
struct AnomalyDetector {
    typealias Configuration = AnomalyDetectionProcessor.Configuration

    /// The six signals, named as in configuration and in the alert's `signal`.
    enum Signal: String, CaseIterable, Sendable, Comparable {
        case latency, errors, tokens, silence, loop
        case newInteraction = "new_interaction"

        static func < (lhs: Signal, rhs: Signal) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// Which series a span feeds: a signal, an agent and what about it (`a`, `b`: operation and model,
    /// peer, model, callee kind and name).
    struct SeriesKey: Hashable, Comparable {
        var signal: Signal
        var agent: String
        var a: String
        var b: String

        /// `a` and `b` as one subject (`chat gpt-4o`).
        var subject: String { b.isEmpty ? a : a.isEmpty ? b : "\(a) \(b)" }

        static func < (lhs: SeriesKey, rhs: SeriesKey) -> Bool {
            (lhs.signal, lhs.agent, lhs.a, lhs.b) < (rhs.signal, rhs.agent, rhs.a, rhs.b)
        }
    }

    /// One series: a value baseline (latency, tokens), an error share, or a seen callee.
    struct Series {
        var firstSeen: UInt64
        var lastSeen: UInt64
        /// Latency and tokens per call.
        var baseline = RobustBaseline()
        /// Errors: the long-run share as decayed counts (per observation)…
        var baseErrors = 0.0
        var baseCalls = 0.0
        /// …and the short window as counts decayed with time constant `errors.window`.
        var windowErrors = 0.0
        var windowCalls = 0.0
        var windowTime: UInt64 = 0
        /// …and what left the window, on its way to the long-run counts.
        var delayErrors = 0.0
        var delayCalls = 0.0
        /// Observations, in total.
        var observations = 0
    }

    /// One agent: its activity (silence, new interactions), token rate and per-trace count baselines.
    struct AgentState {
        var firstSeen: UInt64
        var lastSeen: UInt64
        var agentType: String?
        var critical = false
        var service = ""
        var spans = 0
        /// Distinct arrival times and the 95th percentile of the gaps between them.
        var gaps = QuantileTracker(q: 0.95)
        var silentReported = false
        var lastTrace = TraceID.zero
        var lastSpan = SpanID.zero
        var lastSpanName = ""
        /// Tokens in the current rate window, which started at `rateStart`.
        var rateStart: UInt64 = 0
        var rateSum = 0.0
        var rate = RobustBaseline()
        /// Per-trace counts of finished traces: spans, LLM calls, calls of the most called tool.
        var spansPerTrace = RobustBaseline()
        var llmPerTrace = RobustBaseline()
        var toolPerTrace = RobustBaseline()
        /// The latency baseline with the most observations (for the baseline gauge).
        var latencyTypical = 0.0
        var latencyObservations = 0
        /// The agent-wide error share baseline (for the baseline gauge).
        var errorShare = 0.0
    }

    /// A running trace's counts for one agent.
    struct TraceKey: Hashable, Comparable {
        var trace: TraceID
        var agent: String

        static func < (lhs: TraceKey, rhs: TraceKey) -> Bool { (lhs.trace, lhs.agent) < (rhs.trace, rhs.agent) }
    }

    struct TraceState {
        var lastSeen: UInt64
        var spans = 0
        var llm = 0
        var tools: [String: Int] = [:]
        var maxTool = 0
        var maxToolName = ""
        var flagged = false
    }

    /// No repeated alert per signal, agent and subject inside the cooldown.
    struct Cooldown {
        var lastFired: UInt64
        var suppressed = 0
    }

    /// What one span carries that the signals read, found in one pass over its attributes.
    struct SpanFacts {
        var operation: String?
        var requestModel: String?
        var responseModel: String?
        var tool: String?
        var inputTokens: Int64?
        var outputTokens: Int64?
        var peerService: String?
        var serverAddress: String?

        init(_ attributes: [Attribute]) {
            for attribute in attributes {
                guard let first = attribute.key.utf8.first, first == UInt8(ascii: "g") || first == UInt8(ascii: "p")
                        || first == UInt8(ascii: "s") else { continue }
                switch attribute.key {
                case "gen_ai.operation.name": operation = attribute.value.stringValue
                case "gen_ai.request.model": requestModel = attribute.value.stringValue
                case "gen_ai.response.model": responseModel = attribute.value.stringValue
                case "gen_ai.tool.name": tool = attribute.value.stringValue
                case "gen_ai.usage.input_tokens": inputTokens = Self.integer(attribute.value)
                case "gen_ai.usage.output_tokens": outputTokens = Self.integer(attribute.value)
                case "peer.service": peerService = attribute.value.stringValue
                case "server.address": serverAddress = attribute.value.stringValue
                default: break
                }
            }
        }

        static func integer(_ value: AttributeValue) -> Int64? {
            switch value {
            case .int(let number): number
            case .double(let number): number.isFinite ? Int64(clamping: Int(number)) : nil
            case .string(let text): Int64(text)
            default: nil
            }
        }

        var model: String? { requestModel ?? responseModel }
        /// An LLM call: a GenAI operation other than running a tool.
        var isLLMCall: Bool { operation.map { $0 != "execute_tool" && $0 != "invoke_agent" && $0 != "create_agent" } ?? false }
        /// The peer of a client call.
        var peer: String? { peerService ?? serverAddress }
    }

    /// A fired alert's signal, for the per-signal counters.
    struct Fired {
        var signal: Signal
        var alert: Alert
    }

    let configuration: Configuration
    private let minSamples: Int
    private let warmup: UInt64
    private let cooldown: UInt64
    private let errorWindow: Double
    private let rateWindow: UInt64
    private let minSilence: UInt64
    private let traceIdle: UInt64
    private let errorRate: Double

    private(set) var series: [SeriesKey: Series] = [:]
    private(set) var agents: [String: AgentState] = [:]
    private(set) var traces: [TraceKey: TraceState] = [:]
    private var cooldowns: [SeriesKey: Cooldown] = [:]
    /// Series and agents evicted for `max_series`, in total.
    private(set) var evictions = 0
    /// Running traces dropped for `max_traces`, in total.
    private(set) var droppedTraces = 0
    /// Suppressed alerts per signal since the last read (the processor moves them to counters).
    var suppressedSinceRead: [Signal: Int] = [:]
    private var nextSweep: UInt64 = 0

    init(configuration: Configuration) {
        self.configuration = configuration
        minSamples = configuration.minSamples
        warmup = Self.nanos(configuration.warmup)
        cooldown = Self.nanos(configuration.cooldown)
        errorWindow = Double(Self.nanos(configuration.errorWindow))
        rateWindow = Self.nanos(configuration.rateWindow)
        minSilence = Self.nanos(configuration.minSilence)
        traceIdle = Self.nanos(configuration.traceIdle)
        // The error share's baseline remembers ten times longer than the value baselines: a burst must not
        // become the new normal within the burst.
        errorRate = configuration.learningRate / 10
    }

    /// Runs `body` on the entry for `key` (made by `make` when absent) in place, hashing the key once.
    private static func update<Result>(_ dictionary: inout [SeriesKey: Series], _ key: SeriesKey, _ make: @autoclosure () -> Series,
                                       _ body: (inout Series) -> Result) -> Result {
        body(&dictionary[key, default: make()])
    }

    static func nanos(_ duration: Duration) -> UInt64 { UInt64(clamping: max(duration.nanoseconds, 0)) }

    /// The agent a resource's spans belong to: `agent.name`, else `service.name`.
    static func agentName(_ resource: Resource) -> String {
        resource.attributes["agent.name"]?.stringValue ?? resource.serviceName ?? "unknown_service"
    }

    // MARK: spans

    /// Observes `spans` of `resource` arriving at `now`; appends fired alerts and returns, per span index,
    /// the signals whose anomaly the span is part of (only spans with any).
    mutating func observe(_ spans: [Span], resource: Resource, now: UInt64, fired: inout [Fired]) -> [(Int, [Signal])] {
        let agent = Self.agentName(resource)
        touchAgent(agent, resource, now: now)
        var marks: [(Int, [Signal])] = []
        for index in spans.indices {
            var signals: [Signal] = []
            observe(spans[index], agent: agent, now: now, fired: &fired, signals: &signals)
            if !signals.isEmpty { marks.append((index, signals)) }
        }
        if let last = spans.last {
            agents[agent]?.lastTrace = last.traceID
            agents[agent]?.lastSpan = last.spanID
            agents[agent]?.lastSpanName = last.name
        }
        agents[agent]?.spans += spans.count
        enforceBounds(now: now)
        return marks
    }

    private mutating func touchAgent(_ agent: String, _ resource: Resource, now: UInt64) {
        if agents[agent] == nil {
            agents[agent] = AgentState(firstSeen: now, lastSeen: now, rateStart: now)
            agents[agent]?.service = resource.serviceName ?? "unknown_service"
            agents[agent]?.agentType = resource.attributes["agent.type"]?.stringValue
            agents[agent]?.critical = resource.attributes["agent.critical"]?.boolValue ?? false
            return
        }
        agents[agent]?.agentType = resource.attributes["agent.type"]?.stringValue
        agents[agent]?.critical = resource.attributes["agent.critical"]?.boolValue ?? false
        if let last = agents[agent]?.lastSeen, now > last {
            agents[agent]?.gaps.observe(Double(now - last) / 1e9)
            agents[agent]?.lastSeen = now
        }
        agents[agent]?.silentReported = false
    }

    private mutating func observe(_ span: Span, agent: String, now: UInt64, fired: inout [Fired], signals: inout [Signal]) {
        let facts = SpanFacts(span.attributes)
        let isError = span.status.code == .error
        // latency: per agent and operation.
        if configuration.latency.enabled {
            let key: SeriesKey
            if let operation = facts.operation {
                key = SeriesKey(signal: .latency, agent: agent, a: operation,
                                b: (operation == "execute_tool" ? facts.tool : facts.model) ?? "")
            } else if span.kind == .client, let peer = facts.peer {
                key = SeriesKey(signal: .latency, agent: agent, a: peer, b: "")
            } else {
                key = SeriesKey(signal: .latency, agent: agent, a: span.name, b: "")
            }
            // Failed calls often end early; their durations would teach the baseline the wrong thing.
            if !isError, observeValue(key, Double(span.durationNanos) / 1e9, span, now: now, fired: &fired, facts: facts) {
                signals.append(.latency)
            }
        }
        // errors: per agent, and per edge for client calls.
        if configuration.errors.enabled {
            var anomalous = observeError(SeriesKey(signal: .errors, agent: agent, a: "", b: ""), isError, span, now: now, fired: &fired)
            if span.kind == .client, let peer = facts.peer {
                anomalous = observeError(SeriesKey(signal: .errors, agent: agent, a: peer, b: ""), isError, span, now: now, fired: &fired)
                    || anomalous
            }
            if anomalous { signals.append(.errors) }
        }
        // tokens: per call, per agent and model; and the agent's rate.
        if configuration.tokens.enabled, facts.inputTokens != nil || facts.outputTokens != nil {
            let total = Double(max(facts.inputTokens ?? 0, 0)) + Double(max(facts.outputTokens ?? 0, 0))
            let key = SeriesKey(signal: .tokens, agent: agent, a: facts.model ?? "", b: "")
            var anomalous = observeValue(key, total, span, now: now, fired: &fired, facts: facts)
            anomalous = addToRate(agent, total, span, now: now, fired: &fired) || anomalous
            if anomalous { signals.append(.tokens) }
        }
        // loop: per trace and agent.
        if configuration.loop.enabled, countInTrace(span, facts, agent: agent, now: now, fired: &fired) { signals.append(.loop) }
        // new_interaction: callees (peers, tools, models).
        do {
            var anomalous = false
            if span.kind == .client, let peer = facts.peer {
                anomalous = observeCallee(agent, kind: "peer", peer, span, now: now, fired: &fired) || anomalous
            }
            if let tool = facts.tool { anomalous = observeCallee(agent, kind: "tool", tool, span, now: now, fired: &fired) || anomalous }
            if facts.isLLMCall, let model = facts.model {
                anomalous = observeCallee(agent, kind: "model", model, span, now: now, fired: &fired) || anomalous
            }
            if anomalous { signals.append(.newInteraction) }
        }
    }

    /// True when the series may alert: enough observations and old enough.
    private func isWarm(firstSeen: UInt64, observations: Int, now: UInt64) -> Bool {
        observations >= minSamples && now &- firstSeen >= warmup
    }

    private func zThreshold(_ signal: Configuration.Signal) -> Double { configuration.sensitivity(of: signal).zThreshold }

    /// Latency and tokens per call: learns the value; fires when the recent level is far above the baseline.
    private mutating func observeValue(_ key: SeriesKey, _ value: Double, _ span: Span, now: UInt64, fired: inout [Fired],
                                       facts: SpanFacts) -> Bool {
        let signalSettings = key.signal == .latency ? configuration.latency : configuration.tokens
        let threshold = zThreshold(signalSettings)
        let (minSamples, rate, warmup) = (minSamples, configuration.learningRate, warmup)
        // One hash: the entry is changed in place; the typical value (an exp) only when it is needed.
        let (score, single, warm, count) = Self.update(&series, key, Series(firstSeen: now, lastSeen: now)) { entry in
            entry.lastSeen = now
            entry.observations += 1
            let wasReady = entry.baseline.isReady
            entry.baseline.observe(value, minSamples: minSamples, rate: rate)
            let warm = wasReady && entry.observations >= minSamples && now &- entry.firstSeen >= warmup
            let score = entry.baseline.score
            return (score, score >= threshold ? entry.baseline.score(of: value) : 0, warm, entry.observations)
        }
        // The agent's busiest latency series, for the baseline gauge: refreshed every 16th observation.
        if key.signal == .latency, count & 15 == 0, count >= (agents[key.agent]?.latencyObservations ?? 0) {
            agents[key.agent]?.latencyObservations = count
            agents[key.agent]?.latencyTypical = series[key]?.baseline.typical ?? 0
        }
        // Only upward anomalies: slower calls, more tokens. The span itself must be far too, so the spans
        // marked are the unusual ones.
        guard warm, score >= threshold, single >= threshold, let learned = series[key]?.baseline else { return false }
        let baseline = learned.typical
        let level = learned.recentLevel
        let boundary = learned.level(atScore: threshold)
        if key.signal == .latency {
            // Labels only now, so a span that fires nothing allocates none.
            var labels: [(String, String)] = []
            if let operation = facts.operation { labels.append(("operation", operation)) }
            if let model = facts.model { labels.append(("model", model)) }
            if let tool = facts.tool { labels.append(("tool", tool)) }
            if span.kind == .client, let peer = facts.peer { labels.append(("peer", peer)) }
            fire(key, signalSettings, value: .number(level), baseline: .number(baseline), threshold: .number(boundary), score: score,
                 span: span, now: now, message: "\(key.agent): \(key.subject) takes \(Self.seconds(level))s recently, "
                    + "typically \(Self.seconds(baseline))s (robust z \(Self.rounded(score)))", labels: labels, fired: &fired)
        } else {
            var tokenLabels: [(String, String)] = [("model", key.a)]
            var costText = ""
            if let model = facts.model, let price = configuration.pricing[model] {
                let cost = (Double(facts.inputTokens ?? 0) * price.input + Double(facts.outputTokens ?? 0) * price.output) / 1e6
                tokenLabels.append(("cost_usd", JSONWriter.numberText(cost)))
                costText = ", this call $\(JSONWriter.numberText((cost * 1e6).rounded() / 1e6))"
            }
            fire(key, signalSettings, value: .number(level.rounded()), baseline: .number(baseline.rounded()),
                 threshold: .number(boundary.rounded()), score: score, span: span, now: now,
                 message: "\(key.agent): \(Int(level.rounded())) tokens per call to \(key.a.isEmpty ? "its model" : key.a) recently, "
                    + "typically \(Int(baseline.rounded()))\(costText) (robust z \(Self.rounded(score)))", labels: tokenLabels, fired: &fired)
        }
        return true
    }

    /// Errors: the short window's error count against the long-run share.
    private mutating func observeError(_ key: SeriesKey, _ isError: Bool, _ span: Span, now: UInt64, fired: inout [Fired]) -> Bool {
        let (rate, window, minSamples, warmup) = (errorRate, errorWindow, minSamples, warmup)
        let (errors, expected, share, warm) = Self.update(&series, key, Series(firstSeen: now, lastSeen: now, windowTime: now)) { entry in
            // The window's counts decay with time constant `errors.window`; what decays out of the window passes
            // through a second window of the same length before it joins the long-run counts (which forget about
            // `rate` per call), so a burst is judged against a baseline it has not yet taught.
            let decay = Foundation.exp(-Double(now &- entry.windowTime) / window)
            let leavingCalls = entry.windowCalls * (1 - decay)
            let leavingErrors = entry.windowErrors * (1 - decay)
            let settlingCalls = entry.delayCalls * (1 - decay)
            let settlingErrors = entry.delayErrors * (1 - decay)
            entry.delayCalls = entry.delayCalls * decay + leavingCalls
            entry.delayErrors = entry.delayErrors * decay + leavingErrors
            let forget = max(0, 1 - rate * settlingCalls)
            entry.baseCalls = entry.baseCalls * forget + settlingCalls
            entry.baseErrors = entry.baseErrors * forget + settlingErrors
            entry.windowCalls = entry.windowCalls * decay + 1
            entry.windowErrors = entry.windowErrors * decay + (isError ? 1 : 0)
            entry.windowTime = now
            // A path that never failed starts near 0 (a prior of 0.05 errors in 10 calls).
            let share = (entry.baseErrors + 0.05) / (entry.baseCalls + 10)
            entry.lastSeen = now
            entry.observations += 1
            let warm = entry.observations >= minSamples && now &- entry.firstSeen >= warmup
            return (Int(entry.windowErrors.rounded()), entry.windowCalls * share, share, warm)
        }
        if key.a.isEmpty { agents[key.agent]?.errorShare = share }
        guard isError, warm, errors >= configuration.minErrors else { return false }
        let score = poissonSurprise(errors, expected: expected)
        let threshold = configuration.sensitivity(of: configuration.errors).errorThreshold
        guard score >= threshold else { return false }
        let where_ = key.a.isEmpty ? "" : " calling \(key.a)"
        fire(key, configuration.errors, value: .number(Double(errors)), baseline: .number(Self.rounded(expected, places: 3)),
             threshold: .number(Double(configuration.minErrors)), score: score, span: span, now: now,
             message: "\(key.agent)\(where_): \(errors) errors recently where \(Self.rounded(expected, places: 2)) were expected "
                + "(usual error share \(Self.rounded(share * 100, places: 2))%)",
             labels: key.a.isEmpty ? [] : [("peer", key.a)], fired: &fired)
        return true
    }

    /// The agent's token rate: windows of `tokens.rate_window`, each sum one observation.
    private mutating func addToRate(_ agent: String, _ tokens: Double, _ span: Span, now: UInt64, fired: inout [Fired]) -> Bool {
        let anomalous = closeRateWindows(agent, now: now, span: span, fired: &fired)
        agents[agent]?.rateSum += tokens
        return anomalous
    }

    /// Closes the agent's finished rate windows (a few empty ones at most), learning and judging each sum.
    @discardableResult
    private mutating func closeRateWindows(_ agent: String, now: UInt64, span: Span?, fired: inout [Fired]) -> Bool {
        guard let start = agents[agent]?.rateStart, start <= now, now &- start >= rateWindow, var state = agents[agent] else { return false }
        var anomalous = false
        var closed = 0
        while now &- state.rateStart >= rateWindow, closed < 3 {
            let sum = state.rateSum
            let wasReady = state.rate.isReady
            let single = state.rate.score(of: sum)
            state.rate.observe(sum, minSamples: minSamples, rate: configuration.learningRate)
            let score = state.rate.score
            let threshold = zThreshold(configuration.tokens)
            // Like the other value signals: the recent level and this window both far above the baseline.
            if wasReady, now &- state.firstSeen >= warmup, score >= threshold, single >= threshold, sum > 0 {
                anomalous = true
                let key = SeriesKey(signal: .tokens, agent: agent, a: "rate", b: "")
                let seconds = Double(rateWindow) / 1e9
                agents[agent] = state
                fire(key, configuration.tokens, value: .number(sum), baseline: .number(state.rate.typical.rounded()),
                     threshold: .number(state.rate.level(atScore: threshold).rounded()), score: score, span: span, agentState: state,
                     now: now, message: "\(agent): \(Int(sum)) tokens in \(JSONWriter.numberText(seconds))s, typically "
                        + "\(Int(state.rate.typical.rounded())) (robust z \(Self.rounded(score)))", fired: &fired)
            }
            state.rateSum = 0
            state.rateStart &+= rateWindow
            closed += 1
        }
        if now &- state.rateStart >= rateWindow { state.rateStart = now }
        agents[agent] = state
        return anomalous
    }

    /// Loop: counts the span in its trace; fires once per trace when a count is far above the agent's usual.
    private mutating func countInTrace(_ span: Span, _ facts: SpanFacts, agent: String, now: UInt64, fired: inout [Fired]) -> Bool {
        let key = TraceKey(trace: span.traceID, agent: agent)
        var state = traces[key] ?? TraceState(lastSeen: now)
        traces[key] = nil
        defer { traces[key] = state }
        state.lastSeen = now
        state.spans += 1
        if facts.isLLMCall { state.llm += 1 }
        let tool = facts.tool ?? (facts.operation == "execute_tool" ? span.name : nil)
        if let tool {
            let count = (state.tools[tool] ?? 0) + 1
            if state.tools.count < 256 || state.tools[tool] != nil { state.tools[tool] = count }
            if count > state.maxTool {
                state.maxTool = count
                state.maxToolName = tool
            }
        }
        if state.flagged { return true }
        // The agent's baselines are looked at only once a count could be a loop.
        guard max(state.maxTool, state.llm, state.spans) >= configuration.loopMinCount, let agentState = agents[agent],
              now &- agentState.firstSeen >= warmup else { return false }
        let threshold = zThreshold(configuration.loop)
        // Without allocating: the most called tool, the LLM calls, the spans.
        for check in 0..<3 {
            let (what, count, baseline): (String, Int, RobustBaseline) = switch check {
            case 0: ("tool", state.maxTool, agentState.toolPerTrace)
            case 1: ("llm", state.llm, agentState.llmPerTrace)
            default: ("spans", state.spans, agentState.spansPerTrace)
            }
            guard count >= configuration.loopMinCount, baseline.isReady else { continue }
            let score = baseline.score(of: Double(count))
            guard score >= threshold else { continue }
            state.flagged = true
            let words = check == 0 ? "calls of \(state.maxToolName)" : check == 1 ? "LLM calls" : "spans"
            let seriesKey = SeriesKey(signal: .loop, agent: agent, a: what, b: what == "tool" ? state.maxToolName : "")
            fire(seriesKey, configuration.loop, value: .number(Double(count)), baseline: .number(baseline.typical.rounded()),
                 threshold: .number(max(Double(configuration.loopMinCount), baseline.level(atScore: threshold)).rounded(.up)),
                 score: score, span: span, now: now,
                 message: "\(agent): \(count) \(words) in one running trace, typically \(Int(baseline.typical.rounded())) per trace",
                 labels: what == "tool" ? [("tool", state.maxToolName)] : [], fired: &fired)
            return true
        }
        return false
    }

    /// New interaction: the first call of a callee by an agent past its warm-up.
    private mutating func observeCallee(_ agent: String, kind: String, _ callee: String, _ span: Span, now: UInt64,
                                        fired: inout [Fired]) -> Bool {
        let key = SeriesKey(signal: .newInteraction, agent: agent, a: kind, b: callee)
        if series[key] != nil {
            series[key]?.lastSeen = now
            return false
        }
        series[key] = Series(firstSeen: now, lastSeen: now)
        guard configuration.newInteraction.enabled, let state = agents[agent], isWarm(firstSeen: state.firstSeen, observations: state.spans, now: now) else { return false }
        fire(key, configuration.newInteraction, value: .text(callee), baseline: .text(""), threshold: .text(""), score: 1, span: span,
             now: now, message: "\(agent) called \(kind) \(callee) for the first time", labels: [(kind, callee)], fired: &fired)
        return true
    }

    /// The calls between agents and peers seen (caller, callee), from client spans' `peer.service` or
    /// `server.address`: the edges incidents are correlated along.
    var edges: [(String, String)] {
        series.keys.filter { $0.signal == .newInteraction && $0.a == "peer" }.map { ($0.agent, $0.b) }
    }

    // MARK: time

    /// Lets time pass: silence (checked every call, so within a tick of the moment), finished traces and
    /// rate windows (every second).
    mutating func tick(now: UInt64, fired: inout [Fired]) {
        if configuration.silence.enabled {
            let factor = configuration.sensitivity(of: configuration.silence).silenceFactor
            for agent in agents.keys.sorted() {
                guard let state = agents[agent], !state.silentReported, now > state.lastSeen,
                      state.gaps.count >= minSamples, now &- state.firstSeen >= warmup else { continue }
                let typical = state.gaps.value
                let limit = max(Double(minSilence) / 1e9, typical * factor)
                let silent = Double(now - state.lastSeen) / 1e9
                guard silent >= limit else { continue }
                agents[agent]?.silentReported = true
                fire(SeriesKey(signal: .silence, agent: agent, a: "", b: ""), configuration.silence, value: .number(Self.rounded(silent, places: 3)),
                     baseline: .number(Self.rounded(typical, places: 3)), threshold: .number(Self.rounded(limit, places: 3)),
                     score: Self.rounded(silent / max(typical, 0.001), places: 2), span: nil, agentState: state, now: now,
                     message: "\(agent) sent no span for \(Self.rounded(silent, places: 1))s; it usually sends within "
                        + "\(Self.rounded(typical, places: 2))s (95th percentile gap), silent from \(Self.rounded(limit, places: 1))s",
                     fired: &fired)
            }
        }
        guard now >= nextSweep else { return }
        nextSweep = now &+ 1_000_000_000
        if configuration.tokens.enabled {
            for agent in agents.keys.sorted() { closeRateWindows(agent, now: now, span: nil, fired: &fired) }
        }
        finishIdleTraces(now: now)
        cooldowns = cooldowns.filter { _, entry in entry.suppressed > 0 || now &- entry.lastFired < cooldown }
    }

    /// Traces idle for `loop.trace_idle` are over: their counts join their agents' baselines (unless they looped).
    private mutating func finishIdleTraces(now: UInt64) {
        let finished = traces.filter { now &- $0.value.lastSeen >= traceIdle }.sorted { ($0.value.lastSeen, $0.key) < ($1.value.lastSeen, $1.key) }
        for (key, state) in finished {
            traces[key] = nil
            guard !state.flagged, agents[key.agent] != nil else { continue }
            agents[key.agent]?.spansPerTrace.observe(Double(state.spans), minSamples: minSamples, rate: configuration.learningRate)
            agents[key.agent]?.llmPerTrace.observe(Double(state.llm), minSamples: minSamples, rate: configuration.learningRate)
            agents[key.agent]?.toolPerTrace.observe(Double(state.maxTool), minSamples: minSamples, rate: configuration.learningRate)
        }
    }

    // MARK: bounds

    /// Evicts the least recently seen series and agents beyond `max_series`, and the least recently seen
    /// traces beyond `max_traces` — a twentieth more at a time, so eviction is rare. The cut-off is found on
    /// the arrival times alone (sorting numbers, not keys); only ties at the cut-off are ordered by key, so
    /// which entries go is the same on every run.
    private mutating func enforceBounds(now: UInt64) {
        if series.count + agents.count > configuration.maxSeries {
            let excess = series.count + agents.count - configuration.maxSeries + configuration.maxSeries / 20
            let cutoff = Self.cutoff(series.values.map(\.lastSeen) + agents.values.map(\.lastSeen), keeping: excess)
            var removed = 0
            series = series.filter { entry in
                guard entry.value.lastSeen < cutoff else { return true }
                removed += 1
                return false
            }
            agents = agents.filter { entry in
                guard entry.value.lastSeen < cutoff else { return true }
                removed += 1
                return false
            }
            if removed < excess {
                let ties = series.filter { $0.value.lastSeen == cutoff }.keys.sorted().prefix(excess - removed)
                for key in ties { series[key] = nil }
                removed += ties.count
            }
            if removed < excess {
                let ties = agents.filter { $0.value.lastSeen == cutoff }.keys.sorted().prefix(excess - removed)
                for agent in ties { agents[agent] = nil }
                removed += ties.count
            }
            evictions += removed
        }
        if traces.count > configuration.maxTraces {
            let excess = traces.count - configuration.maxTraces + configuration.maxTraces / 20
            let cutoff = Self.cutoff(traces.values.map(\.lastSeen), keeping: excess)
            var removed = 0
            traces = traces.filter { entry in
                guard entry.value.lastSeen < cutoff else { return true }
                removed += 1
                return false
            }
            if removed < excess {
                let ties = traces.filter { $0.value.lastSeen == cutoff }.keys.sorted().prefix(excess - removed)
                for key in ties { traces[key] = nil }
                removed += ties.count
            }
            droppedTraces += removed
        }
    }

    /// The `count`-th smallest of `times` (1-based): entries older than it go, and as many at it as needed.
    static func cutoff(_ times: [UInt64], keeping count: Int) -> UInt64 {
        let sorted = times.sorted()
        return sorted[min(max(count, 1), sorted.count) - 1]
    }

    // MARK: alerts

    private mutating func fire(_ key: SeriesKey, _ settings: Configuration.Signal, value: Alert.Value, baseline: Alert.Value,
                               threshold: Alert.Value, score: Double, span: Span?, agentState: AgentState? = nil, now: UInt64,
                               message: String, labels: [(String, String)] = [], fired: inout [Fired]) {
        if let entry = cooldowns[key], now &- entry.lastFired < cooldown {
            cooldowns[key]?.suppressed += 1
            suppressedSinceRead[key.signal, default: 0] += 1
            return
        }
        let suppressed = cooldowns[key]?.suppressed ?? 0
        cooldowns[key] = Cooldown(lastFired: now)
        let state = agentState ?? agents[key.agent]
        let severity = settings.severity ?? ((state?.critical ?? false) ? .critical : .warning)
        let subject = key.signal == .newInteraction ? key.b : key.subject
        let alert = Alert(rule: "anomaly/\(key.signal.rawValue)", severity: severity, value: value, threshold: threshold,
                          service: state?.service ?? key.agent, agent: key.agent, agentType: state?.agentType,
                          traceID: span?.traceID ?? state?.lastTrace ?? .zero, spanID: span?.spanID ?? state?.lastSpan ?? .zero,
                          spanName: span?.name ?? state?.lastSpanName ?? "", time: now, message: message,
                          group: subject.isEmpty ? "agent=\(key.agent)" : "agent=\(key.agent),subject=\(subject)",
                          suppressed: suppressed,
                          anomaly: Alert.Anomaly(signal: key.signal.rawValue, subject: subject, baseline: baseline,
                                                 score: Self.rounded(score, places: 2), labels: labels))
        fired.append(Fired(signal: key.signal, alert: alert))
    }

    static func rounded(_ value: Double, places: Int = 1) -> Double {
        let scale = Foundation.pow(10, Double(places))
        return (value * scale).rounded() / scale
    }

    static func seconds(_ value: Double) -> String { JSONWriter.numberText(rounded(value, places: 3)) }
}
