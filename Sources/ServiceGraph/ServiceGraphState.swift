import DequeModule
import TraceModel

/// What one observed call between two nodes contributes to the graph.
public struct EdgeObservation: Sendable, Equatable {
    public var client: String
    public var server: String
    /// "" for request edges; `messaging_system`, `database`, `virtual_node`, `agent`, `model`, `tool`.
    public var connectionType: String
    public var dimensions: [String]
    public var failed: Bool
    public var clientSeconds: Double?
    public var serverSeconds: Double?
    /// When the call happened (span end), Unix nanoseconds.
    public var time: UInt64
}

/// The pairing rules as a plain value: spans in, edge observations out. Request edges pair a CLIENT
/// span keyed by (trace id, span id) with the SERVER span keyed by (trace id, parent span id), as Tempo
/// and the Collector's servicegraph connector do; PRODUCER/CONSUMER likewise. Agent edges follow
/// service changes from parent to child, `agent.source`/`agent.target`, and GenAI model and tool calls.
public struct ServiceGraphState: Sendable {
    struct PairKey: Hashable, Sendable {
        var trace: TraceID
        var span: SpanID
    }

    /// One side of a call waiting for the other.
    struct Half: Sendable {
        var isClient: Bool
        var messaging: Bool
        var service: String
        var failed: Bool
        var seconds: Double
        var peer: String?
        var dimensions: [String]
        var time: UInt64
        var isRoot = false
    }

    /// A span's service and kind, kept for its children to look up.
    struct Parent: Sendable {
        var service: String
        var kind: SpanKind
    }

    /// A child waiting for its parent's service.
    struct Child: Sendable {
        var service: String
        var kind: SpanKind
        var failed: Bool
        var seconds: Double
        var dimensions: [String]
        var time: UInt64
    }

    let configuration: ServiceGraphConfiguration
    private var halves: [PairKey: Half] = [:]
    private var parents: [PairKey: Parent] = [:]
    private var children: [PairKey: [Child]] = [:]
    private var expiries: Deque<(deadline: UInt64, key: PairKey)> = []
    /// Halves and parents dropped because the store was full.
    public private(set) var droppedSpans = 0
    /// Halves that expired without a partner or a peer attribute.
    public private(set) var unpairedSpans = 0
    /// Token usage per agent (service) from GenAI spans.
    public private(set) var tokens: [String: (input: Int64, output: Int64)] = [:]
    /// The `agent.*` resource attributes last seen per node (by `service.name`, and by `agent.name` where it
    /// differs), shown as node details; at most `max_nodes` nodes.
    public private(set) var agentDetails: [String: [Attribute]] = [:]

    public init(configuration: ServiceGraphConfiguration) {
        self.configuration = configuration
    }

    /// Unpaired halves held (agent-edge bookkeeping is bounded separately by the same limit).
    public var storedItems: Int { halves.count }

    static let databaseAttributes = ["db.system", "db.name", "db.namespace", "db.system.name"]
    static let modelOperations: Set<String> = ["chat", "text_completion", "completion", "generate_content", "embeddings"]

    /// Notes a resource's `agent.*` attributes (as `agent_enrichment` adds them) for its node's details;
    /// called once per resource, not per span.
    public mutating func observe(resource: Resource) {
        var details: [Attribute] = []
        for attribute in resource.attributes where attribute.key.hasPrefix("agent.") { details.append(attribute) }
        guard !details.isEmpty else { return }
        let service = resource.serviceName ?? "unknown_service"
        var names = [service]
        if let agent = resource.attributes["agent.name"]?.stringValue, !agent.isEmpty, agent != service { names.append(agent) }
        for name in names where agentDetails[name] != details {
            guard agentDetails[name] != nil || agentDetails.count < configuration.maxNodes else { continue }
            agentDetails[name] = details
        }
    }

    /// Takes one span; returns the edges it completes.
    public mutating func observe(_ span: Span, resource: Resource, now: UInt64) -> [EdgeObservation] {
        let service = resource.serviceName ?? "unknown_service"
        let failed = span.status.code == .error
        let seconds = Double(span.durationNanos) / 1e9
        let dimensions = configuration.dimensions.map { key in
            (span.attributes[key] ?? resource.attributes[key]).map(AttributeText.plain) ?? ""
        }
        var edges: [EdgeObservation] = []
        let deadline = now &+ UInt64(clamping: configuration.ttl.nanoseconds)

        switch span.kind {
        case .client, .producer:
            let messaging = span.kind == .producer
            if !messaging, let database = databaseNode(span) {
                // No server span will come: the client's duration stands for both sides, as in Tempo.
                edges.append(EdgeObservation(client: service, server: database, connectionType: "database", dimensions: dimensions,
                                             failed: failed, clientSeconds: seconds, serverSeconds: seconds, time: span.endTimeUnixNano))
            } else {
                let key = PairKey(trace: span.traceID, span: span.spanID)
                let half = Half(isClient: true, messaging: messaging, service: service, failed: failed, seconds: seconds,
                                peer: peerAttribute(span), dimensions: dimensions, time: span.endTimeUnixNano)
                if let edge = pair(key, half, deadline: deadline) { edges.append(edge) }
            }
        case .server, .consumer:
            let messaging = span.kind == .consumer
            if !span.parentSpanID.isValid {
                // A root server or consumer: nobody in the trace called it. Like Tempo, it waits out the
                // ttl as a half and then becomes an edge from `user` (a virtual node).
                let key = PairKey(trace: span.traceID, span: span.spanID)
                let half = Half(isClient: false, messaging: messaging, service: service, failed: failed, seconds: seconds,
                                peer: nil, dimensions: dimensions, time: span.endTimeUnixNano, isRoot: true)
                _ = pair(key, half, deadline: deadline)
            } else {
                let key = PairKey(trace: span.traceID, span: span.parentSpanID)
                let half = Half(isClient: false, messaging: messaging, service: service, failed: failed, seconds: seconds,
                                peer: nil, dimensions: dimensions, time: span.endTimeUnixNano)
                if let edge = pair(key, half, deadline: deadline) { edges.append(edge) }
            }
        case .internal, .unspecified:
            break
        }

        guard configuration.agentEdges else { return edges }
        edges += agentEdges(span, service: service, failed: failed, seconds: seconds, dimensions: dimensions, deadline: deadline)
        return edges
    }

    /// Expires halves past their ttl at `now`; returns the edges expiry completes (virtual nodes).
    public mutating func expire(now: UInt64) -> [EdgeObservation] {
        var edges: [EdgeObservation] = []
        while let first = expiries.first, first.deadline <= now {
            expiries.removeFirst()
            edges += expireKey(first.key)
        }
        return edges
    }

    /// Expires everything (end of a replay, shutdown).
    public mutating func expireAll() -> [EdgeObservation] {
        var edges: [EdgeObservation] = []
        while let first = expiries.popFirst() { edges += expireKey(first.key) }
        return edges
    }

    private mutating func expireKey(_ key: PairKey) -> [EdgeObservation] {
        parents[key] = nil
        children[key] = nil
        guard let half = halves.removeValue(forKey: key) else { return [] }
        if half.isClient, !half.messaging, let peer = half.peer {
            return [EdgeObservation(client: half.service, server: peer, connectionType: "virtual_node", dimensions: half.dimensions,
                                    failed: half.failed, clientSeconds: half.seconds, serverSeconds: nil, time: half.time)]
        }
        if !half.isClient, half.isRoot {
            return [EdgeObservation(client: "user", server: half.service, connectionType: "virtual_node", dimensions: half.dimensions,
                                    failed: half.failed, clientSeconds: nil, serverSeconds: half.seconds, time: half.time)]
        }
        unpairedSpans += 1
        return []
    }

    private mutating func pair(_ key: PairKey, _ half: Half, deadline: UInt64) -> EdgeObservation? {
        if let other = halves[key], other.isClient != half.isClient {
            halves[key] = nil
            let client = half.isClient ? half : other
            let server = half.isClient ? other : half
            return EdgeObservation(client: client.service, server: server.service,
                                   connectionType: client.messaging || server.messaging ? "messaging_system" : "",
                                   dimensions: client.dimensions, failed: client.failed || server.failed,
                                   clientSeconds: client.seconds, serverSeconds: server.seconds, time: max(client.time, server.time))
        }
        guard storedItems < configuration.maxItems else {
            droppedSpans += 1
            return nil
        }
        halves[key] = half
        expiries.append((deadline, key))
        return nil
    }

    private mutating func agentEdges(_ span: Span, service: String, failed: Bool, seconds: Double, dimensions: [String],
                                     deadline: UInt64) -> [EdgeObservation] {
        var edges: [EdgeObservation] = []
        func edge(_ client: String, _ server: String, _ type: String) -> EdgeObservation {
            EdgeObservation(client: client, server: server, connectionType: type, dimensions: dimensions, failed: failed,
                            clientSeconds: seconds, serverSeconds: nil, time: span.endTimeUnixNano)
        }
        // Explicit agent-to-agent calls.
        if let source = span.attributes["agent.source"].map(AttributeText.plain), let target = span.attributes["agent.target"].map(AttributeText.plain),
           !source.isEmpty, !target.isEmpty {
            edges.append(edge(source, target, "agent"))
        }
        // GenAI calls: the agent uses a model or a tool.
        if let operation = span.attributes["gen_ai.operation.name"]?.stringValue {
            if Self.modelOperations.contains(operation),
               let model = (span.attributes["gen_ai.request.model"] ?? span.attributes["gen_ai.response.model"] ?? span.attributes["gen_ai.system"])?.stringValue {
                edges.append(edge(service, model, "model"))
                let input = span.attributes["gen_ai.usage.input_tokens"]?.intValue ?? 0
                let output = span.attributes["gen_ai.usage.output_tokens"]?.intValue ?? 0
                if input != 0 || output != 0 {
                    let agent = span.attributes["gen_ai.agent.name"]?.stringValue ?? service
                    tokens[agent, default: (0, 0)].input += input
                    tokens[agent, default: (0, 0)].output += output
                }
            } else if operation == "execute_tool", let tool = span.attributes["gen_ai.tool.name"]?.stringValue {
                edges.append(edge(service, tool, "tool"))
            }
        }
        // A change of service from parent to child that is not already a client/server pair.
        let me = PairKey(trace: span.traceID, span: span.spanID)
        if let waiting = children.removeValue(forKey: me) {
            for child in waiting where child.service != service && !Self.isRequestPair(parent: span.kind, child: child.kind) {
                edges.append(EdgeObservation(client: service, server: child.service, connectionType: "agent", dimensions: child.dimensions,
                                             failed: child.failed, clientSeconds: nil, serverSeconds: child.seconds, time: child.time))
            }
        }
        if span.parentSpanID.isValid {
            let parentKey = PairKey(trace: span.traceID, span: span.parentSpanID)
            if let parent = parents[parentKey] {
                if parent.service != service, !Self.isRequestPair(parent: parent.kind, child: span.kind) {
                    edges.append(EdgeObservation(client: parent.service, server: service, connectionType: "agent", dimensions: dimensions,
                                                 failed: failed, clientSeconds: nil, serverSeconds: seconds, time: span.endTimeUnixNano))
                }
            } else if children.count < configuration.maxItems {
                if children[parentKey] == nil { expiries.append((deadline, parentKey)) }
                children[parentKey, default: []].append(Child(service: service, kind: span.kind, failed: failed, seconds: seconds,
                                                              dimensions: dimensions, time: span.endTimeUnixNano))
            }
        }
        if parents.count < configuration.maxItems {
            if parents[me] == nil, halves[me] == nil { expiries.append((deadline, me)) }
            parents[me] = Parent(service: service, kind: span.kind)
        }
        return edges
    }

    /// A CLIENT parent with a SERVER child (or PRODUCER/CONSUMER) is a request edge, counted there.
    static func isRequestPair(parent: SpanKind, child: SpanKind) -> Bool {
        (parent == .client && child == .server) || (parent == .producer && child == .consumer)
    }

    private func databaseNode(_ span: Span) -> String? {
        guard Self.databaseAttributes.contains(where: { span.attributes[$0] != nil }) else { return nil }
        if let name = span.attributes["peer.service"]?.stringValue { return name }
        if let name = span.attributes["server.address"]?.stringValue { return name }
        if let address = span.attributes["network.peer.address"].map(AttributeText.plain) {
            if let port = span.attributes["network.peer.port"].map(AttributeText.plain) { return "\(address):\(port)" }
            return address
        }
        for key in ["db.namespace", "db.name", "db.system", "db.system.name"] {
            if let name = span.attributes[key]?.stringValue { return name }
        }
        return nil
    }

    private func peerAttribute(_ span: Span) -> String? {
        for key in configuration.virtualNodePeerAttributes {
            if let value = span.attributes[key].map(AttributeText.plain), !value.isEmpty { return value }
        }
        return nil
    }
}

/// Attribute values as label text.
enum AttributeText {
    static func plain(_ value: AttributeValue) -> String {
        switch value {
        case .string(let text): text
        case .bool(let flag): flag ? "true" : "false"
        case .int(let integer): String(integer)
        case .double(let real): String(real)
        default: ""
        }
    }
}
