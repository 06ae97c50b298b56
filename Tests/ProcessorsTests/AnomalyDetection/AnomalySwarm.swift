import Foundation
import TestSupport
import TraceModel

/// A simulated agent swarm for the anomaly detector's tests: agents whose traces arrive as a Poisson
/// process, each trace a root span, LLM calls through a gateway (log-normal durations and token counts),
/// tool calls, and a small natural error rate on LLM calls — realistic spread, fixed seed. Faults are
/// switched on per agent.
struct AnomalySwarm {
    /// One agent's traffic and the faults injected into it.
    struct Agent {
        var name: String
        /// Traces per second.
        var rate = 1.0
        var critical = false
        var latencyFactor = 1.0
        var tokenFactor = 1.0
        /// The share of `search` tool calls that fail (an edge error burst).
        var toolErrorShare = 0.0
        var silent = false
        /// A tool called for the first time.
        var extraTool: String?
    }

    var agents: [Agent]
    var random = SplitMix64(seed: 16)
    /// The virtual clock, Unix nanoseconds.
    var now: UInt64 = 1_700_000_000_000_000_000
    /// The step between arrivals.
    let step: UInt64 = 100_000_000
    private var nextID: UInt64 = 1

    init(agents: Int = 8) {
        self.agents = (0..<agents).map { Agent(name: "agent-\($0)") }
    }

    /// A uniform number in (0, 1).
    mutating func uniform() -> Double { (Double(random.next() >> 11) + 0.5) / Double(1 << 53) }

    /// A log-normal number with the given median and log-space standard deviation.
    mutating func logNormal(median: Double, sigma: Double) -> Double {
        let normal = (-2 * log(uniform())).squareRoot() * cos(2 * Double.pi * uniform())
        return median * exp(sigma * normal)
    }

    /// A Poisson count with mean `mean` (small means).
    mutating func poisson(_ mean: Double) -> Int {
        let limit = exp(-mean)
        var product = uniform()
        var count = 0
        while product > limit {
            count += 1
            product *= uniform()
        }
        return count
    }

    mutating func id() -> UInt64 {
        nextID += 1
        return nextID
    }

    /// The resource of agent `index`.
    func resource(_ index: Int) -> Resource {
        Resource(attributes: [Attribute("service.name", .string(agents[index].name)), Attribute("agent.name", .string(agents[index].name)),
                              Attribute("agent.type", .string("worker")), Attribute("agent.critical", .bool(agents[index].critical))])
    }

    /// One whole trace of agent `index`, ending now.
    mutating func trace(_ index: Int) -> [Span] {
        let agent = agents[index]
        let trace = TraceID(high: UInt64(index + 1), low: id())
        let root = SpanID(id())
        var spans: [Span] = []
        let end = now
        let first = nextID
        nextID += 100
        var counter = first
        func make(_ name: String, _ kind: SpanKind, _ seconds: Double, _ attributes: [Attribute], error: Bool = false) -> Span {
            counter += 1
            return Span(traceID: trace, spanID: SpanID(counter), parentSpanID: root, name: name, kind: kind,
                        startTimeUnixNano: end - UInt64(seconds * 1e9), endTimeUnixNano: end, attributes: attributes,
                        status: SpanStatus(code: error ? .error : .unset))
        }
        for _ in 0..<(2 + Int(uniform() * 2)) {
            let input = Int64(logNormal(median: 600, sigma: 0.4) * agent.tokenFactor)
            let output = Int64(logNormal(median: 200, sigma: 0.5) * agent.tokenFactor)
            spans.append(make("chat gpt-4o", .client, logNormal(median: 0.8, sigma: 0.35) * agent.latencyFactor, [
                Attribute("gen_ai.operation.name", "chat"), Attribute("gen_ai.request.model", "gpt-4o"),
                Attribute("gen_ai.usage.input_tokens", .int(input)), Attribute("gen_ai.usage.output_tokens", .int(output)),
                Attribute("peer.service", "llm-gateway"),
            ], error: uniform() < 0.01))
        }
        for _ in 0..<(1 + Int(uniform() * 2)) {
            spans.append(make("execute_tool search", .client, logNormal(median: 0.2, sigma: 0.4), [
                Attribute("gen_ai.operation.name", "execute_tool"), Attribute("gen_ai.tool.name", "search"),
                Attribute("peer.service", "search-api"),
            ], error: uniform() < agent.toolErrorShare))
        }
        if let extra = agent.extraTool {
            spans.append(make("execute_tool \(extra)", .client, 0.1, [
                Attribute("gen_ai.operation.name", "execute_tool"), Attribute("gen_ai.tool.name", .string(extra)),
            ]))
        }
        spans.append(Span(traceID: trace, spanID: root, name: "handle task", kind: .server,
                          startTimeUnixNano: now - UInt64(logNormal(median: 2, sigma: 0.3) * 1e9), endTimeUnixNano: now))
        return spans
    }

    /// One step of the clock: each agent's traces that end in it, as one batch (nil when none).
    mutating func stepBatch() -> SpanBatch? {
        now += step
        var resources: [ResourceSpans] = []
        for index in agents.indices where !agents[index].silent {
            let count = poisson(agents[index].rate * Double(step) / 1e9)
            guard count > 0 else { continue }
            var spans: [Span] = []
            for _ in 0..<count { spans += trace(index) }
            resources.append(ResourceSpans(resource: resource(index), scopeSpans: [ScopeSpans(spans: spans)]))
        }
        return resources.isEmpty ? nil : SpanBatch(resourceSpans: resources)
    }
}
