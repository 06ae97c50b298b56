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
        /// Its key (series live in an array; `slots` finds them by key).
        var key: SeriesKey
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
        /// The agent's name (`agent.name`, else `service.name`).
        var name: String
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

    /// A span's shape: the strings that decide which series it feeds. Spans of one shape feed the same series,
    /// so the shape is hashed once per span instead of every series key (agent, operation, model, peer) per signal.
    struct RouteKey: Hashable {
        /// The agent's slot.
        var agent: Int
        var operation: String?
        var model: String?
        var tool: String?
        /// The peer of a client span (nil for other kinds).
        var peer: String?
        /// The span name, only when it names the latency series (no GenAI operation and no peer).
        var name: String?

        /// A set of places in `recentRoutes` (its first) from the agent and the strings' stored lengths (-1 for
        /// none): no hashing of the strings.
        static func recentSet(agent: Int, _ operation: Int, _ model: Int, _ tool: Int, _ peer: Int, _ name: Int) -> Int {
            var mixed = UInt(bitPattern: agent) &* 0x9E37_79B9
            for length in [operation, model, tool, peer, name] {
                mixed = (mixed ^ UInt(bitPattern: length)) &* 0x0100_0193
            }
            return Int(truncatingIfNeeded: (mixed >> 16) & UInt(AnomalyDetector.recentRouteCount - 1)) & ~(AnomalyDetector.recentWays - 1)
        }
    }

    /// The slots a span shape's series live in (nil: not made yet, or the signal does not apply).
    struct Route {
        var latency: Int?
        var errorsAgent: Int?
        var errorsEdge: Int?
        var tokens: Int?
        /// The callees the shape names (peer, tool, model), once all are known: their new_interaction slots.
        var callees: [Int]?
        /// An LLM call: a GenAI operation other than running a tool or an agent (loop's counts, new_interaction's models).
        var isLLMCall = false
        /// A tool run without `gen_ai.tool.name`: the span name names the tool (for loop's counts).
        var toolIsSpanName = false
    }

    /// A running trace's counts for one agent.
    struct TraceKey: Hashable, Comparable {
        var trace: TraceID
        /// The agent's slot.
        var agent: Int

        static func < (lhs: TraceKey, rhs: TraceKey) -> Bool { (lhs.trace, lhs.agent) < (rhs.trace, rhs.agent) }

        /// The ids' fast keyed hash (`IdentifierHashing`): looked up for every span.
        func _rawHashValue(seed: Int) -> Int {
            IdentifierHashing.hash(trace.high, trace.low, UInt64(bitPattern: Int64(agent)), seed: seed)
        }
    }

    struct TraceState {
        var lastSeen: UInt64
        var spans = 0
        var llm = 0
        /// Calls per tool (a few tools a trace: a list beats hashing).
        var tools: [(name: String, count: Int)] = []
        var maxTool = 0
        var maxToolName = ""
        var flagged = false
    }

    /// One span of a batch, read where it lies: a `Span` passed by value is copied whole (a retain and a
    /// release for each of its strings and arrays); this carries the batch's array and the span's place.
    struct SpanRef {
        let spans: [Span]
        let index: Int

        var kind: SpanKind { spans[index].kind }
        var traceID: TraceID { spans[index].traceID }
        var name: String { spans[index].name }
        /// The span itself, copied: for an alert.
        var span: Span { spans[index] }
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

        init() {}

        /// Reads `attributes`. Filled in place: an initializer that finds the facts copies them out once more.
        mutating func read(_ attributes: [Attribute]) {
            // Keys and values are read where they lie (an attribute taken out of the array is a copy: a retain and
            // a release for its key and its value); the key's length (stored, not counted) picks the one or two
            // names it can be.
            for index in attributes.indices {
                switch attributes[index].key.utf8.count {
                case 12: if attributes[index].key == "peer.service" { peerService = attributes[index].value.stringValue }
                case 14: if attributes[index].key == "server.address" { serverAddress = attributes[index].value.stringValue }
                case 16: if attributes[index].key == "gen_ai.tool.name" { tool = attributes[index].value.stringValue }
                case 20: if attributes[index].key == "gen_ai.request.model" { requestModel = attributes[index].value.stringValue }
                case 21:
                    if attributes[index].key == "gen_ai.operation.name" {
                        operation = attributes[index].value.stringValue
                    } else if attributes[index].key == "gen_ai.response.model" {
                        responseModel = attributes[index].value.stringValue
                    }
                case 25: if attributes[index].key == "gen_ai.usage.input_tokens" { inputTokens = Self.integer(attributes[index].value) }
                case 26: if attributes[index].key == "gen_ai.usage.output_tokens" { outputTokens = Self.integer(attributes[index].value) }
                default: continue
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
    /// What the hot path reads of the configuration, as plain values (no copy of the configuration per span).
    private let latencyOn: Bool
    private let errorsOn: Bool
    private let tokensOn: Bool
    private let loopOn: Bool
    private let learningRate: Double
    private let minErrors: Int
    private let loopMinCount: Int
    private let latencyZ: Double
    private let tokensZ: Double
    private let loopZ: Double
    private let errorThreshold: Double

    /// Every series, in the order made (so what is evicted and when is the same on every run)…
    private(set) var series: [Series] = []
    /// …and where each key's series is.
    private var slots: [SeriesKey: Int] = [:]
    /// Every agent, in the order first seen, and where each name's state is.
    private(set) var agents: [AgentState] = []
    private var agentSlots: [String: Int] = [:]
    /// What each agent's span shapes seen resolve to: their series' slots, found by hashing the shape once.
    /// Apart from `agents`, so a lookup never copies an agent's state; bounded by `max_series` (past it, emptied).
    /// `routes` gives a shape's place in `routeKeys` and `routeTable`.
    private var routes: [RouteKey: Int] = [:]
    private var routeKeys: [RouteKey] = []
    private var routeTable: [Route] = []
    /// Shapes recently resolved, in sets of `recentWays` by `RouteKey.recentSet`, newest first: a span of a shape
    /// seen lately is found by comparing its strings (the decoder shares equal ones, so mostly by reference)
    /// instead of hashing five of them. Shapes whose strings have the same lengths share a set; past four, the
    /// lookup goes on to `routes`.
    private var recentRoutes = [Int](repeating: -1, count: AnomalyDetector.recentRouteCount)
    static let recentRouteCount = 256
    static let recentWays = 4
    private(set) var traces: [TraceKey: TraceState] = [:]
    /// The trace the latest span belonged to, held out of `traces` while its spans keep coming (one hash a trace,
    /// not a span); put back at the end of `observe`.
    private var openKey: TraceKey?
    private var openState = TraceState(lastSeen: 0)
    private var cooldowns: [SeriesKey: Cooldown] = [:]
    /// The callees ever seen per agent, as hashes of (agent, kind, callee), kept apart from the series so a
    /// callee whose series was evicted does not count as new when it comes back; at most `seenCapacity`,
    /// the oldest forgotten first.
    private var seenCallees: Set<UInt64> = []
    private var seenOrder: [UInt64] = []
    private var seenNext = 0
    /// How many callees `seenCallees` remembers: four times `max_series` (8 bytes each, plus the set's).
    let seenCapacity: Int
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
        seenCapacity = configuration.maxSeries * 4
        latencyOn = configuration.latency.enabled
        errorsOn = configuration.errors.enabled
        tokensOn = configuration.tokens.enabled
        loopOn = configuration.loop.enabled
        learningRate = configuration.learningRate
        minErrors = configuration.minErrors
        loopMinCount = configuration.loopMinCount
        latencyZ = configuration.sensitivity(of: configuration.latency).zThreshold
        tokensZ = configuration.sensitivity(of: configuration.tokens).zThreshold
        loopZ = configuration.sensitivity(of: configuration.loop).zThreshold
        errorThreshold = configuration.sensitivity(of: configuration.errors).errorThreshold
    }

    static func nanos(_ duration: Duration) -> UInt64 { UInt64(clamping: max(duration.nanoseconds, 0)) }

    /// The agent a resource's spans belong to: `agent.name`, else `service.name`.
    static func agentName(_ resource: Resource) -> String {
        resource.attributes["agent.name"]?.stringValue ?? resource.serviceName ?? "unknown_service"
    }

    /// Series and agents held.
    var seriesCount: Int { series.count + agents.count }

    /// The state of the agent called `name`, if held.
    func agent(named name: String) -> AgentState? { agentSlots[name].map { agents[$0] } }

    /// The slot of `key`'s series, made (first and last seen `now`) when absent.
    private mutating func slot(_ key: SeriesKey, now: UInt64) -> Int {
        if let slot = slots[key] { return slot }
        series.append(Series(key: key, firstSeen: now, lastSeen: now, windowTime: now))
        slots[key] = series.count - 1
        return series.count - 1
    }

    // MARK: spans

    /// Observes `spans` of `resource` arriving at `now`; appends fired alerts and returns, per span index,
    /// the signals whose anomaly the span is part of (only spans with any).
    mutating func observe(_ spans: [Span], resource: Resource, now: UInt64, fired: inout [Fired]) -> [(Int, [Signal])] {
        let agent = touchAgent(Self.agentName(resource), resource, now: now)
        var marks: [(Int, [Signal])] = []
        for index in spans.indices {
            var signals: [Signal] = []
            observe(SpanRef(spans: spans, index: index), agent: agent, now: now, fired: &fired, signals: &signals)
            if !signals.isEmpty { marks.append((index, signals)) }
        }
        if !spans.isEmpty {
            let last = spans.count - 1
            agents[agent].lastTrace = spans[last].traceID
            agents[agent].lastSpan = spans[last].spanID
            agents[agent].lastSpanName = spans[last].name
        }
        agents[agent].spans += spans.count
        closeOpenTrace()
        enforceBounds(now: now)
        return marks
    }

    /// The agent's slot, made when new; notes its arrival (the gap since the last one, for silence).
    private mutating func touchAgent(_ name: String, _ resource: Resource, now: UInt64) -> Int {
        let agentType = resource.attributes["agent.type"]?.stringValue
        let critical = resource.attributes["agent.critical"]?.boolValue ?? false
        guard let agent = agentSlots[name] else {
            agents.append(AgentState(name: name, firstSeen: now, lastSeen: now, agentType: agentType, critical: critical,
                                     service: resource.serviceName ?? "unknown_service", rateStart: now))
            agentSlots[name] = agents.count - 1
            return agents.count - 1
        }
        agents[agent].agentType = agentType
        agents[agent].critical = critical
        let last = agents[agent].lastSeen
        if now > last {
            agents[agent].gaps.observe(Double(now - last) / 1e9)
            agents[agent].lastSeen = now
        }
        agents[agent].silentReported = false
        return agent
    }

    /// The slots of the span's shape: cached per agent and shape, made on first sight.
    /// The span's shape is its agent, GenAI operation, model, tool, the peer of a client span, and its name when
    /// there is neither operation nor peer. A recent shape is compared where both lie; the key is built otherwise.
    private mutating func resolveRoute(agent: Int, _ facts: SpanFacts, peer: String?, _ span: SpanRef, now: UInt64) -> Int {
        let model = facts.model
        let usesName = facts.operation == nil && peer == nil
        let set = RouteKey.recentSet(agent: agent, facts.operation?.utf8.count ?? -1, model?.utf8.count ?? -1, facts.tool?.utf8.count ?? -1,
                                     peer?.utf8.count ?? -1, usesName ? span.spans[span.index].name.utf8.count : -1)
        for way in set..<set + Self.recentWays {
            let recent = recentRoutes[way]
            if recent < 0 { break }
            if routeKeys[recent].agent == agent, routeKeys[recent].operation == facts.operation, routeKeys[recent].model == model,
               routeKeys[recent].tool == facts.tool, routeKeys[recent].peer == peer,
               usesName ? Self.same(routeKeys[recent].name, span.spans[span.index].name) : routeKeys[recent].name == nil {
                return recent
            }
        }
        let key = RouteKey(agent: agent, operation: facts.operation, model: model, tool: facts.tool, peer: peer,
                           name: usesName ? span.name : nil)
        if let known = routes[key] {
            rememberRecent(known, in: set)
            return known
        }
        let name = agents[key.agent].name
        var route = Route()
        route.isLLMCall = key.operation.map { $0 != "execute_tool" && $0 != "invoke_agent" && $0 != "create_agent" } ?? false
        route.toolIsSpanName = key.tool == nil && key.operation == "execute_tool"
        if latencyOn {
            let latencyKey = if let operation = key.operation {
                SeriesKey(signal: .latency, agent: name, a: operation, b: (operation == "execute_tool" ? key.tool : key.model) ?? "")
            } else {
                SeriesKey(signal: .latency, agent: name, a: key.peer ?? key.name ?? "", b: "")
            }
            route.latency = slot(latencyKey, now: now)
        }
        if errorsOn {
            route.errorsAgent = slot(SeriesKey(signal: .errors, agent: name, a: "", b: ""), now: now)
            if let peer = key.peer { route.errorsEdge = slot(SeriesKey(signal: .errors, agent: name, a: peer, b: ""), now: now) }
        }
        if routes.count >= configuration.maxSeries { forgetRoutes() }
        routes[key] = routeTable.count
        rememberRecent(routeTable.count, in: set)
        routeKeys.append(key)
        routeTable.append(route)
        return routeTable.count - 1
    }

    private static func same(_ stored: String?, _ name: String) -> Bool {
        guard let stored else { return false }
        return stored == name
    }

    /// Puts `route` first in its set of `recentRoutes`; the oldest of the set leaves.
    private mutating func rememberRecent(_ route: Int, in set: Int) {
        var way = set + Self.recentWays - 1
        while way > set {
            recentRoutes[way] = recentRoutes[way - 1]
            way -= 1
        }
        recentRoutes[set] = route
    }

    private mutating func forgetRoutes() {
        routes = [:]
        routeKeys = []
        routeTable = []
        for index in recentRoutes.indices { recentRoutes[index] = -1 }
    }

    private mutating func observe(_ span: SpanRef, agent: Int, now: UInt64, fired: inout [Fired], signals: inout [Signal]) {
        var facts = SpanFacts()
        facts.read(span.spans[span.index].attributes)
        let isError = span.spans[span.index].status.code == .error
        let peer = span.kind == .client ? facts.peer : nil
        let routeIndex = resolveRoute(agent: agent, facts, peer: peer, span, now: now)
        var route = routeTable[routeIndex]
        // latency: per agent and operation. Failed calls often end early; their durations would teach the
        // baseline the wrong thing.
        if let slot = route.latency, !isError,
           observeValue(slot, isLatency: true, Double(span.spans[span.index].durationNanos) / 1e9, span, agent: agent, now: now, fired: &fired, facts: facts) {
            signals.append(.latency)
        }
        // errors: per agent, and per edge for client calls.
        if let agentSlot = route.errorsAgent {
            var anomalous = observeError(agentSlot, agentWide: true, isError, span, agent: agent, now: now, fired: &fired)
            if let edge = route.errorsEdge {
                anomalous = observeError(edge, agentWide: false, isError, span, agent: agent, now: now, fired: &fired) || anomalous
            }
            if anomalous { signals.append(.errors) }
        }
        // tokens: per call, per agent and model; and the agent's rate.
        if tokensOn, facts.inputTokens != nil || facts.outputTokens != nil {
            let total = Double(max(facts.inputTokens ?? 0, 0)) + Double(max(facts.outputTokens ?? 0, 0))
            let tokenSlot: Int
            if let known = route.tokens {
                tokenSlot = known
            } else {
                tokenSlot = slot(SeriesKey(signal: .tokens, agent: agents[agent].name, a: facts.model ?? "", b: ""), now: now)
                route.tokens = tokenSlot
                routeTable[routeIndex].tokens = tokenSlot
            }
            var anomalous = observeValue(tokenSlot, isLatency: false, total, span, agent: agent, now: now, fired: &fired, facts: facts)
            anomalous = addToRate(agent, total, span, now: now, fired: &fired) || anomalous
            if anomalous { signals.append(.tokens) }
        }
        // loop: per trace and agent.
        if loopOn, countInTrace(span, tool: route.toolIsSpanName ? span.name : facts.tool, isLLMCall: route.isLLMCall, agent: agent, now: now,
                                fired: &fired) {
            signals.append(.loop)
        }
        // new_interaction: callees (peers, tools, models). Known ones only are seen again.
        if let callees = route.callees {
            var index = 0
            while index < callees.count {
                series[callees[index]].lastSeen = now
                index += 1
            }
        } else {
            var anomalous = false
            var callees: [Int] = []
            if let peer { anomalous = observeCallee(agent, kind: "peer", peer, span, now: now, fired: &fired, slots: &callees) || anomalous }
            if let tool = facts.tool { anomalous = observeCallee(agent, kind: "tool", tool, span, now: now, fired: &fired, slots: &callees) || anomalous }
            if route.isLLMCall, let model = facts.model {
                anomalous = observeCallee(agent, kind: "model", model, span, now: now, fired: &fired, slots: &callees) || anomalous
            }
            routeTable[routeIndex].callees = callees
            if anomalous { signals.append(.newInteraction) }
        }
    }

    /// True when the series may alert: enough observations and old enough.
    private func isWarm(firstSeen: UInt64, observations: Int, now: UInt64) -> Bool {
        observations >= minSamples && now &- firstSeen >= warmup
    }

    private func zThreshold(_ signal: Configuration.Signal) -> Double { configuration.sensitivity(of: signal).zThreshold }

    /// Latency and tokens per call: learns the value; fires when the recent level is far above the baseline.
    private mutating func observeValue(_ slot: Int, isLatency: Bool, _ value: Double, _ span: SpanRef, agent: Int, now: UInt64,
                                       fired: inout [Fired], facts: SpanFacts) -> Bool {
        let threshold = isLatency ? latencyZ : tokensZ
        let (far, score, count) = Self.learnValue(&series[slot], value, now: now, minSamples: minSamples, rate: learningRate, warmup: warmup,
                                                  threshold: threshold)
        // The agent's busiest latency series, for the baseline gauge: refreshed every 16th observation.
        if isLatency, count & 15 == 0, count >= agents[agent].latencyObservations {
            agents[agent].latencyObservations = count
            agents[agent].latencyTypical = series[slot].baseline.typical
        }
        guard far else { return false }
        let signalSettings = isLatency ? configuration.latency : configuration.tokens
        let learned = series[slot].baseline
        let key = series[slot].key
        let baseline = learned.typical
        let level = learned.recentLevel
        let boundary = learned.level(atScore: threshold)
        if isLatency {
            // Labels only now, so a span that fires nothing allocates none.
            var labels: [(String, String)] = []
            if let operation = facts.operation { labels.append(("operation", operation)) }
            if let model = facts.model { labels.append(("model", model)) }
            if let tool = facts.tool { labels.append(("tool", tool)) }
            if span.kind == .client, let peer = facts.peer { labels.append(("peer", peer)) }
            fire(key, signalSettings, value: .number(level), baseline: .number(baseline), threshold: .number(boundary), score: score,
                 span: span.span, now: now, message: "\(key.agent): \(key.subject) takes \(Self.seconds(level))s recently, "
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
                 threshold: .number(boundary.rounded()), score: score, span: span.span, now: now,
                 message: "\(key.agent): \(Int(level.rounded())) tokens per call to \(key.a.isEmpty ? "its model" : key.a) recently, "
                    + "typically \(Int(baseline.rounded()))\(costText) (robust z \(Self.rounded(score)))", labels: tokenLabels, fired: &fired)
        }
        return true
    }

    /// One value into a value series (in place, in the array); returns whether it is anomalous — warm, the
    /// recent level and the value itself far above the baseline (only upward: slower calls, more tokens, so the
    /// spans marked are the unusual ones) — the recent level's score, and the observations.
    private static func learnValue(_ entry: inout Series, _ value: Double, now: UInt64, minSamples: Int, rate: Double, warmup: UInt64,
                                   threshold: Double) -> (Bool, Double, Int) {
        entry.lastSeen = now
        entry.observations += 1
        let wasReady = entry.baseline.isReady
        entry.baseline.observe(value, minSamples: minSamples, rate: rate)
        let warm = wasReady && entry.observations >= minSamples && now &- entry.firstSeen >= warmup
        let score = entry.baseline.score
        // The value's own score (a log) only when the rest already holds.
        return (warm && score >= threshold && entry.baseline.score(of: value) >= threshold, score, entry.observations)
    }

    /// Errors: the short window's error count against the long-run share.
    private mutating func observeError(_ slot: Int, agentWide: Bool, _ isError: Bool, _ span: SpanRef, agent: Int, now: UInt64,
                                       fired: inout [Fired]) -> Bool {
        let (errors, expected, share, warm) = Self.learnError(&series[slot], isError, now: now, rate: errorRate, window: errorWindow,
                                                              minSamples: minSamples, warmup: warmup)
        if agentWide { agents[agent].errorShare = share }
        guard isError, warm, errors >= minErrors else { return false }
        let score = poissonSurprise(errors, expected: expected)
        guard score >= errorThreshold else { return false }
        let key = series[slot].key
        let where_ = key.a.isEmpty ? "" : " calling \(key.a)"
        fire(key, configuration.errors, value: .number(Double(errors)), baseline: .number(Self.rounded(expected, places: 3)),
             threshold: .number(Double(configuration.minErrors)), score: score, span: span.span, now: now,
             message: "\(key.agent)\(where_): \(errors) errors recently where \(Self.rounded(expected, places: 2)) were expected "
                + "(usual error share \(Self.rounded(share * 100, places: 2))%)",
             labels: key.a.isEmpty ? [] : [("peer", key.a)], fired: &fired)
        return true
    }

    /// One call into an error series: returns the window's errors, the errors expected in it, the baseline
    /// share, and whether the series is warm.
    private static func learnError(_ entry: inout Series, _ isError: Bool, now: UInt64, rate: Double, window: Double, minSamples: Int,
                                   warmup: UInt64) -> (Int, Double, Double, Bool) {
        // The window's counts decay with time constant `errors.window`; what decays out of the window passes
        // through a second window of the same length before it joins the long-run counts (which forget about
        // `rate` per call), so a burst is judged against a baseline it has not yet taught. Spans of one batch
        // arrive at one time: nothing decays between them.
        if now != entry.windowTime {
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
            entry.windowCalls *= decay
            entry.windowErrors *= decay
            entry.windowTime = now
        }
        entry.windowCalls += 1
        if isError { entry.windowErrors += 1 }
        // A path that never failed starts near 0 (a prior of 0.05 errors in 10 calls).
        let share = (entry.baseErrors + 0.05) / (entry.baseCalls + 10)
        entry.lastSeen = now
        entry.observations += 1
        let warm = entry.observations >= minSamples && now &- entry.firstSeen >= warmup
        return (Int(entry.windowErrors.rounded()), entry.windowCalls * share, share, warm)
    }

    /// The agent's token rate: windows of `tokens.rate_window`, each sum one observation.
    private mutating func addToRate(_ agent: Int, _ tokens: Double, _ span: SpanRef, now: UInt64, fired: inout [Fired]) -> Bool {
        let anomalous = now &- agents[agent].rateStart >= rateWindow ? closeRateWindows(agent, now: now, span: span.span, fired: &fired) : false
        agents[agent].rateSum += tokens
        return anomalous
    }

    /// Closes the agent's finished rate windows (a few empty ones at most), learning and judging each sum.
    @discardableResult
    private mutating func closeRateWindows(_ agent: Int, now: UInt64, span: Span?, fired: inout [Fired]) -> Bool {
        var state = agents[agent]
        guard state.rateStart <= now, now &- state.rateStart >= rateWindow else { return false }
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
                let key = SeriesKey(signal: .tokens, agent: state.name, a: "rate", b: "")
                let seconds = Double(rateWindow) / 1e9
                fire(key, configuration.tokens, value: .number(sum), baseline: .number(state.rate.typical.rounded()),
                     threshold: .number(state.rate.level(atScore: threshold).rounded()), score: score, span: span, agentState: state,
                     now: now, message: "\(state.name): \(Int(sum)) tokens in \(JSONWriter.numberText(seconds))s, typically "
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
    private mutating func countInTrace(_ span: SpanRef, tool: String?, isLLMCall: Bool, agent: Int, now: UInt64, fired: inout [Fired]) -> Bool {
        let key = TraceKey(trace: span.traceID, agent: agent)
        // Spans of one trace mostly come together: the trace stays open, out of the dictionary, until another's span.
        if openKey != key { openTrace(key, now: now) }
        let (spans, llm, maxTool, flagged) = Self.count(in: &openState, tool: tool, isLLMCall: isLLMCall, now: now)
        if flagged { return true }
        // The agent's baselines are looked at only once a count could be a loop.
        guard max(maxTool, llm, spans) >= loopMinCount, now &- agents[agent].firstSeen >= warmup else { return false }
        let threshold = loopZ
        // Without allocating: the most called tool, the LLM calls, the spans.
        for check in 0..<3 {
            let (what, count, baseline): (String, Int, RobustBaseline) = switch check {
            case 0: ("tool", maxTool, agents[agent].toolPerTrace)
            case 1: ("llm", llm, agents[agent].llmPerTrace)
            default: ("spans", spans, agents[agent].spansPerTrace)
            }
            guard count >= configuration.loopMinCount, baseline.isReady else { continue }
            let score = baseline.score(of: Double(count))
            guard score >= threshold else { continue }
            openState.flagged = true
            let toolName = openState.maxToolName
            let name = agents[agent].name
            let words = check == 0 ? "calls of \(toolName)" : check == 1 ? "LLM calls" : "spans"
            let seriesKey = SeriesKey(signal: .loop, agent: name, a: what, b: what == "tool" ? toolName : "")
            fire(seriesKey, configuration.loop, value: .number(Double(count)), baseline: .number(baseline.typical.rounded()),
                 threshold: .number(max(Double(configuration.loopMinCount), baseline.level(atScore: threshold)).rounded(.up)),
                 score: score, span: span.span, now: now,
                 message: "\(name): \(count) \(words) in one running trace, typically \(Int(baseline.typical.rounded())) per trace",
                 labels: what == "tool" ? [("tool", toolName)] : [], fired: &fired)
            return true
        }
        return false
    }

    /// Makes `key`'s trace the open one (made when new), putting the open one back.
    private mutating func openTrace(_ key: TraceKey, now: UInt64) {
        closeOpenTrace()
        openState = traces.removeValue(forKey: key) ?? TraceState(lastSeen: now)
        openKey = key
    }

    /// Puts the open trace back into `traces` (at the end of every `observe`, so nothing else sees it open).
    private mutating func closeOpenTrace() {
        guard let key = openKey else { return }
        traces[key] = openState
        openKey = nil
        openState = TraceState(lastSeen: 0)
    }

    /// Counts one span in its trace's state; returns the spans, LLM calls, most calls of one tool, and
    /// whether the trace already looped.
    private static func count(in state: inout TraceState, tool: String?, isLLMCall: Bool, now: UInt64) -> (Int, Int, Int, Bool) {
        state.lastSeen = now
        state.spans += 1
        if isLLMCall { state.llm += 1 }
        if let tool {
            var count = 1
            if let index = state.tools.firstIndex(where: { $0.name == tool }) {
                state.tools[index].count += 1
                count = state.tools[index].count
            } else if state.tools.count < 256 {
                state.tools.append((tool, 1))
            }
            if count > state.maxTool {
                state.maxTool = count
                state.maxToolName = tool
            }
        }
        return (state.spans, state.llm, state.maxTool, state.flagged)
    }

    /// New interaction: the first call of a callee by an agent past its warm-up. A callee seen before (even if
    /// its series was evicted since) is not new.
    private mutating func observeCallee(_ agent: Int, kind: String, _ callee: String, _ span: SpanRef, now: UInt64,
                                        fired: inout [Fired], slots made: inout [Int]) -> Bool {
        let name = agents[agent].name
        let key = SeriesKey(signal: .newInteraction, agent: name, a: kind, b: callee)
        if let known = slots[key] {
            series[known].lastSeen = now
            made.append(known)
            return false
        }
        made.append(slot(key, now: now))
        guard rememberCallee(Self.calleeHash(name, kind, callee)) else { return false }
        let state = agents[agent]
        guard configuration.newInteraction.enabled, isWarm(firstSeen: state.firstSeen, observations: state.spans, now: now) else { return false }
        fire(key, configuration.newInteraction, value: .text(callee), baseline: .text(""), threshold: .text(""), score: 1, span: span.span,
             now: now, message: "\(name) called \(kind) \(callee) for the first time", labels: [(kind, callee)], fired: &fired)
        return true
    }

    /// Remembers a callee's hash; false when it was already remembered.
    private mutating func rememberCallee(_ hash: UInt64) -> Bool {
        guard seenCallees.insert(hash).inserted else { return false }
        if seenOrder.count < seenCapacity {
            seenOrder.append(hash)
        } else {
            seenCallees.remove(seenOrder[seenNext])
            seenOrder[seenNext] = hash
            seenNext = (seenNext + 1) % seenCapacity
        }
        return true
    }

    /// FNV-1a over the agent, kind and callee (each followed by a 0 byte): the same on every run, unlike `Hasher`.
    static func calleeHash(_ agent: String, _ kind: String, _ callee: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for part in [agent, kind, callee] {
            for byte in part.utf8 {
                hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
            }
            hash = (hash ^ 0) &* 0x100_0000_01b3
        }
        return hash
    }

    /// The calls between agents and peers seen (caller, callee), from client spans' `peer.service` or
    /// `server.address`: the edges incidents are correlated along.
    var edges: [(String, String)] {
        series.compactMap { $0.key.signal == .newInteraction && $0.key.a == "peer" ? ($0.key.agent, $0.key.b) : nil }
    }

    // MARK: time

    /// Lets time pass: silence (checked every call, so within a tick of the moment), finished traces and
    /// rate windows (every second).
    mutating func tick(now: UInt64, fired: inout [Fired]) {
        if configuration.silence.enabled {
            let factor = configuration.sensitivity(of: configuration.silence).silenceFactor
            for agent in agents.indices {
                let state = agents[agent]
                guard !state.silentReported, now > state.lastSeen, state.gaps.count >= minSamples, now &- state.firstSeen >= warmup else { continue }
                let typical = state.gaps.value
                let limit = max(Double(minSilence) / 1e9, typical * factor)
                let silent = Double(now - state.lastSeen) / 1e9
                guard silent >= limit else { continue }
                agents[agent].silentReported = true
                fire(SeriesKey(signal: .silence, agent: state.name, a: "", b: ""), configuration.silence, value: .number(Self.rounded(silent, places: 3)),
                     baseline: .number(Self.rounded(typical, places: 3)), threshold: .number(Self.rounded(limit, places: 3)),
                     score: Self.rounded(silent / max(typical, 0.001), places: 2), span: nil, agentState: state, now: now,
                     message: "\(state.name) sent no span for \(Self.rounded(silent, places: 1))s; it usually sends within "
                        + "\(Self.rounded(typical, places: 2))s (95th percentile gap), silent from \(Self.rounded(limit, places: 1))s",
                     fired: &fired)
            }
        }
        guard now >= nextSweep else { return }
        nextSweep = now &+ 1_000_000_000
        if configuration.tokens.enabled {
            for agent in agents.indices { closeRateWindows(agent, now: now, span: nil, fired: &fired) }
        }
        finishIdleTraces(now: now)
        cooldowns = cooldowns.filter { _, entry in entry.suppressed > 0 || now &- entry.lastFired < cooldown }
    }

    /// Traces idle for `loop.trace_idle` are over: their counts join their agents' baselines (unless they looped).
    private mutating func finishIdleTraces(now: UInt64) {
        let finished = traces.filter { now &- $0.value.lastSeen >= traceIdle }.sorted { ($0.value.lastSeen, $0.key) < ($1.value.lastSeen, $1.key) }
        for (key, state) in finished {
            traces[key] = nil
            guard !state.flagged, agents.indices.contains(key.agent) else { continue }
            agents[key.agent].spansPerTrace.observe(Double(state.spans), minSamples: minSamples, rate: configuration.learningRate)
            agents[key.agent].llmPerTrace.observe(Double(state.llm), minSamples: minSamples, rate: configuration.learningRate)
            agents[key.agent].toolPerTrace.observe(Double(state.maxTool), minSamples: minSamples, rate: configuration.learningRate)
        }
    }

    // MARK: bounds

    /// Evicts the least recently seen series and agents beyond `max_series` (a twentieth more at a time), and
    /// the least recently seen traces beyond `max_traces` (a quarter more), so eviction is rare. The cut-off is found on
    /// the arrival times alone (sorting numbers, not keys); ties at the cut-off go in the order made, so
    /// which entries go is the same on every run. Series and agents live in arrays: what stays is moved
    /// up and found again by key, and every agent's cached span shapes are forgotten.
    private mutating func enforceBounds(now: UInt64) {
        if series.count + agents.count > configuration.maxSeries {
            let excess = series.count + agents.count - configuration.maxSeries + configuration.maxSeries / 20
            let cutoff = Self.cutoff(series.map(\.lastSeen) + agents.map(\.lastSeen), keeping: excess)
            var tiesLeft = excess - (series.lazy.filter { $0.lastSeen < cutoff }.count + agents.lazy.filter { $0.lastSeen < cutoff }.count)
            func keep(_ lastSeen: UInt64) -> Bool {
                if lastSeen > cutoff { return true }
                if lastSeen == cutoff {
                    guard tiesLeft > 0 else { return true }
                    tiesLeft -= 1
                }
                return false
            }
            let before = series.count + agents.count
            let agentsBefore = agents.count
            series = series.filter { keep($0.lastSeen) }
            let keptAgents = agents.indices.filter { keep(agents[$0].lastSeen) }
            evictions += before - series.count - keptAgents.count
            slots = Dictionary(uniqueKeysWithValues: series.enumerated().map { ($0.element.key, $0.offset) })
            var newSlot: [Int: Int] = [:]
            for (new, old) in keptAgents.enumerated() { newSlot[old] = new }
            agents = keptAgents.map { agents[$0] }
            agentSlots = Dictionary(uniqueKeysWithValues: agents.enumerated().map { ($0.element.name, $0.offset) })
            forgetRoutes()
            if keptAgents.count != agentsBefore {
                traces = Dictionary(uniqueKeysWithValues: traces.compactMap { key, state in
                    newSlot[key.agent].map { (TraceKey(trace: key.trace, agent: $0), state) }
                })
            }
        }
        if traces.count > configuration.maxTraces {
            // A quarter at a time: past max_traces, traffic is usually fast enough to come back soon, and each cut
            // sorts every trace held.
            let excess = traces.count - configuration.maxTraces + configuration.maxTraces / 4
            let cutoff = Self.cutoff(traces.values.map(\.lastSeen), keeping: excess)
            // Removed in place: filtering into a new dictionary copies every trace kept.
            var doomed: [TraceKey] = []
            doomed.reserveCapacity(excess)
            for index in traces.indices where traces.values[index].lastSeen < cutoff {
                doomed.append(traces.keys[index])
            }
            for key in doomed { traces.removeValue(forKey: key) }
            var removed = doomed.count
            if removed < excess {
                let ties = traces.filter { $0.value.lastSeen == cutoff }.keys.sorted().prefix(excess - removed)
                for key in ties { traces[key] = nil }
                removed += ties.count
            }
            droppedTraces += removed
        }
    }

    /// The `count`-th smallest of `times` (1-based): entries older than it go, and as many at it as needed.
    /// Found by selection (Hoare's partition around the middle element, narrowing to the side that holds
    /// it), linear on average: sorting every trace held cost more than the rest of the cut.
    static func cutoff(_ times: consuming [UInt64], keeping count: Int) -> UInt64 {
        // Taken over from the caller, which made it for this: partitioned in place, not copied first.
        var values = times
        let target = min(max(count, 1), values.count) - 1
        var low = 0
        var high = values.count - 1
        while low < high {
            let pivot = values[low + (high - low) / 2]
            var left = low
            var right = high
            while left <= right {
                while values[left] < pivot { left += 1 }
                while values[right] > pivot { right -= 1 }
                if left <= right {
                    values.swapAt(left, right)
                    left += 1
                    right -= 1
                }
            }
            // [low...right] <= pivot <= [left...high], and everything strictly between equals the pivot.
            if target <= right {
                high = right
            } else if target >= left {
                low = left
            } else {
                return values[target]
            }
        }
        return values[target]
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
        let state = agentState ?? agent(named: key.agent)
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
