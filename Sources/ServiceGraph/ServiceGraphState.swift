import DequeModule
import Synchronization
import TraceModel

/// GenAI token usage one span reports for an agent.
public struct TokenUsage: Sendable, Equatable {
    public var agent: String
    public var input: Int64
    public var output: Int64
}

/// What one observed call between two nodes contributes to the graph.
public struct EdgeObservation: Sendable, Equatable {
    public var client: String
    public var server: String
    /// "" for request edges; `messaging_system`, `database`, `virtual_node`, `agent`, `model`, `tool`.
    public var connectionType: String
    /// The configured dimensions' values: first the client side's (`client_<key>`), then the server
    /// side's (`server_<key>`); "" where that side did not have the attribute.
    public var dimensions: [String]
    public var failed: Bool
    public var clientSeconds: Double?
    public var serverSeconds: Double?
    /// When the call happened (span end), Unix nanoseconds.
    public var time: UInt64
    /// Tokens a model call used, for the calling agent's node.
    public var tokens: TokenUsage? = nil
    /// For `virtual_node` edges, which side was not instrumented: `client` (the `user` node) or
    /// `server` (named by a peer attribute); "" otherwise. The connector's `virtual_node` label.
    public var virtualNode = ""
}

/// The pairing rules as a plain value: spans in, edge observations out. Request edges pair a CLIENT
/// span keyed by (trace id, span id) with the SERVER span keyed by (trace id, parent span id), as Tempo
/// and the Collector's servicegraph connector do; PRODUCER/CONSUMER likewise. Agent edges follow
/// service changes from parent to child, `agent.source`/`agent.target`, and GenAI model and tool calls.
///
/// One store keyed by (trace id, span id) holds all three things a span can leave behind for a later
/// one: the half of a call waiting for its other half, the span's own service (for children that come
/// later), and children that came before their parent. A span touches at most two entries: its own and
/// its parent's.
public struct ServiceGraphState: Sendable {
    struct PairKey: Hashable, Sendable {
        var trace: TraceID
        var span: SpanID

        /// The ids' fast keyed hash (`IdentifierHashing`): the store looks up two keys a span.
        func _rawHashValue(seed: Int) -> Int { IdentifierHashing.hash(trace.high, trace.low, span.value, seed: seed) }
    }

    /// The plain fields of a span that pairing reads besides its attributes: handed on without copying the
    /// span (a `Span` passed by value is copied whole, a retain and a release for each string and array).
    struct SpanHeader {
        var trace: TraceID
        var span: SpanID
        var parent: SpanID
        var kind: SpanKind
        var end: UInt64
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
        /// When this half expires, Unix nanoseconds: its own arrival plus the ttl.
        var deadline: UInt64
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

    /// What is stored under one (trace id, span id). Each part expires on its own deadline.
    struct Entry: Sendable {
        /// A CLIENT/PRODUCER keyed at its span id, or a SERVER/CONSUMER keyed at its parent's.
        var half: Half? = nil
        /// A root SERVER/CONSUMER keyed at its own span id, waiting to become `user -> service`; apart
        /// from `half`, where a child SERVER keyed at the same span id waits for a client.
        var root: Half? = nil
        var parent: Parent? = nil
        var children: [Child] = []
        /// When the agent bookkeeping (`parent`, `children`) expires.
        var bookkeepingDeadline: UInt64 = 0

        var isEmpty: Bool { half == nil && root == nil && parent == nil && children.isEmpty }
    }

    /// Entries in an array, found by key through a map of positions: a position stays valid while other
    /// keys come and go, so a span looks each of its two keys up once, and the map's values stay small.
    struct EntryStore {
        private var positions: [PairKey: Int32] = [:]
        /// The entries by position; a free position holds an empty entry.
        var slots: [Entry] = []
        private var free: [Int32] = []

        /// The position of `key`'s entry, nil when it has none.
        func find(_ key: PairKey) -> Int? { positions[key].map(Int.init) }

        /// Stores `entry` for `key`, which has none; returns its position.
        mutating func add(_ key: PairKey, _ entry: Entry) -> Int {
            let slot: Int
            if let reused = free.popLast() {
                slot = Int(reused)
                slots[slot] = entry
            } else {
                slot = slots.count
                slots.append(entry)
            }
            positions[key] = Int32(slot)
            return slot
        }

        /// Removes `key`'s entry at `slot`.
        mutating func remove(_ key: PairKey, at slot: Int) {
            positions[key] = nil
            slots[slot] = Entry()
            free.append(Int32(slot))
        }
    }

    let configuration: ServiceGraphConfiguration
    private var entries = EntryStore()
    private var expiries: Deque<(deadline: UInt64, key: PairKey)> = []
    /// Halves waiting in this store.
    private var halfCount = 0
    /// Bounds the halves waiting, in all shards together, by `max_items`.
    private let halves: StoreBudget
    /// Bounds parents and waiting children (agent-edge bookkeeping) by `max_items`, apart from the halves.
    private let agentItems: StoreBudget
    /// `virtual_node_peer_attributes` as `SpanFacts` keys, so the peer is read from the span's one pass over
    /// its attributes; nil when one of them is not a key `SpanFacts` finds (then each is searched for).
    private let peerFacts: [SpanFacts.Key]?
    /// `ttl` in nanoseconds (a `Duration`'s conversion costs more than the span's other arithmetic).
    private let ttlNanos: UInt64
    /// Halves dropped because the store was full.
    public private(set) var droppedSpans = 0
    /// Halves that expired without a partner or a peer attribute.
    public private(set) var unpairedSpans = 0
    /// Spans skipped because their resource has no `service.name`.
    public private(set) var skippedSpans = 0

    /// A store; shards of one graph pass the same budgets so `max_items` bounds them together.
    public init(configuration: ServiceGraphConfiguration, halves: StoreBudget? = nil, agentItems: StoreBudget? = nil) {
        self.configuration = configuration
        self.halves = halves ?? StoreBudget(limit: configuration.maxItems)
        self.agentItems = agentItems ?? StoreBudget(limit: configuration.maxItems)
        let peerFacts = configuration.virtualNodePeerAttributes.compactMap(SpanFacts.key)
        self.peerFacts = peerFacts.count == configuration.virtualNodePeerAttributes.count ? peerFacts : nil
        ttlNanos = UInt64(clamping: configuration.ttl.nanoseconds)
    }

    /// Unpaired halves held (agent-edge bookkeeping is bounded separately by the same limit).
    public var storedItems: Int { halfCount }

    /// Takes one span; returns the edges it completes. A span whose resource has no `service.name` is
    /// skipped and counted, unless `include_unnamed_services` is set.
    public mutating func observe(_ span: Span, resource: Resource, now: UInt64) -> [EdgeObservation] {
        var edges: [EdgeObservation] = []
        guard let service = configuration.serviceName(of: resource) else {
            skippedSpans += 1
            return edges
        }
        observe([span], at: 0, service: service, resource: resource, now: now, into: &edges)
        return edges
    }

    /// Counts spans skipped for want of a `service.name`.
    public mutating func skip(_ count: Int) {
        skippedSpans += count
    }

    /// Takes the span at `index` of `spans`, of `service` (read where it lies); appends the edges it completes to
    /// `edges`.
    public mutating func observe(_ spans: [Span], at index: Int, service: String, resource: Resource, now: UInt64,
                                 into edges: inout [EdgeObservation]) {
        let span = SpanHeader(trace: spans[index].traceID, span: spans[index].spanID, parent: spans[index].parentSpanID,
                              kind: spans[index].kind, end: spans[index].endTimeUnixNano)
        let failed = spans[index].status.code == .error
        let seconds = Double(spans[index].durationNanos) / 1e9
        // "upsertDimensions": each dimension from the resource, else the span (the connector's lookup order).
        let dimensions = configuration.dimensions.isEmpty ? [] : configuration.dimensions.map { key in
            (resource.attributes[key] ?? spans[index].attributes[key]).map(AttributeText.plain) ?? ""
        }
        let none = [String](repeating: "", count: dimensions.count)
        let deadline = now &+ ttlNanos
        let me = PairKey(trace: span.trace, span: span.span)
        let facts = SpanFacts(spans[index].attributes)
        // Where this span's and its parent's entries are, once looked up (nil inside: no entry).
        var mine: Int?? = nil
        var parents: Int?? = nil

        switch span.kind {
        case .client, .producer:
            let messaging = span.kind == .producer
            if !messaging, let database = databaseNode(spans[index].attributes, resource: resource, facts: facts) {
                // No server span will come: the client's duration stands for both sides, as in Tempo.
                edges.append(EdgeObservation(client: service, server: database, connectionType: "database", dimensions: Self.sides(dimensions, none),
                                             failed: failed, clientSeconds: seconds, serverSeconds: seconds, time: span.end))
            } else {
                // The connector handles a PRODUCER exactly as a CLIENT ("override connection type and
                // continue processing as span kind client"), peer attributes included.
                let half = Half(isClient: true, messaging: messaging, service: service, failed: failed, seconds: seconds,
                                peer: peerAttribute(spans[index].attributes, facts: facts), dimensions: dimensions, time: span.end,
                                deadline: deadline)
                mine = .some(pair(me, at: entries.find(me), half, into: &edges))
            }
        case .server, .consumer:
            let messaging = span.kind == .consumer
            let half = Half(isClient: false, messaging: messaging, service: service, failed: failed, seconds: seconds,
                            peer: nil, dimensions: dimensions, time: span.end, deadline: deadline)
            if !span.parent.isValid {
                // A root server or consumer: nobody in the trace called it. Like Tempo, it waits out the
                // ttl and then becomes an edge from `user` (a virtual node). It waits in its own slot, so
                // a child SERVER keyed at this span id (waiting for a client) does not replace it.
                mine = .some(placeRoot(me, at: entries.find(me), half))
            } else {
                let parentKey = PairKey(trace: span.trace, span: span.parent)
                parents = .some(pair(parentKey, at: entries.find(parentKey), half, into: &edges))
            }
        case .internal, .unspecified:
            break
        }

        guard configuration.agentEdges else { return }
        agentEdges(span, facts: facts, key: me, mine: mine, parents: parents, service: service, failed: failed, seconds: seconds,
                   dimensions: dimensions, none: none, deadline: deadline, into: &edges)
    }

    /// Expires entries past their ttl at `now`; appends the edges expiry completes (virtual nodes).
    public mutating func expire(now: UInt64, into edges: inout [EdgeObservation]) {
        while let first = expiries.first, first.deadline <= now {
            expiries.removeFirst()
            expireKey(first.key, now: now, into: &edges)
        }
    }

    /// Expires entries past their ttl at `now`; returns the edges expiry completes (virtual nodes).
    public mutating func expire(now: UInt64) -> [EdgeObservation] {
        var edges: [EdgeObservation] = []
        expire(now: now, into: &edges)
        return edges
    }

    /// Expires everything (end of a replay, shutdown).
    public mutating func expireAll() -> [EdgeObservation] {
        var edges: [EdgeObservation] = []
        while let first = expiries.popFirst() { expireKey(first.key, now: .max, into: &edges) }
        return edges
    }

    /// Expires the parts of `key`'s entry whose own deadline is at or before `now`.
    private mutating func expireKey(_ key: PairKey, now: UInt64, into edges: inout [EdgeObservation]) {
        guard let slot = entries.find(key) else { return }
        var entry = entries.slots[slot]
        if (entry.parent != nil || !entry.children.isEmpty), entry.bookkeepingDeadline <= now {
            agentItems.release((entry.parent == nil ? 0 : 1) + entry.children.count)
            entry.parent = nil
            entry.children = []
        }
        if let half = entry.half, half.deadline <= now {
            entry.half = nil
            halfCount -= 1
            halves.release()
            let none = [String](repeating: "", count: half.dimensions.count)
            if half.isClient, let peer = half.peer {
                // onExpire: "if e.ServerService == "" { e.ServerService = p.getPeerHost(...) }" — CLIENT and PRODUCER alike.
                edges.append(EdgeObservation(client: half.service, server: peer, connectionType: "virtual_node", dimensions: Self.sides(half.dimensions, none),
                                             failed: half.failed, clientSeconds: half.seconds, serverSeconds: nil, time: half.time,
                                             virtualNode: "server"))
            } else {
                unpairedSpans += 1
            }
        }
        if let root = entry.root, root.deadline <= now {
            entry.root = nil
            halfCount -= 1
            halves.release()
            // onExpire: "if e.ClientService == "" && e.Key.SpanIDIsEmpty() { e.ClientService = "user" }".
            edges.append(EdgeObservation(client: "user", server: root.service, connectionType: "virtual_node",
                                         dimensions: Self.sides([String](repeating: "", count: root.dimensions.count), root.dimensions),
                                         failed: root.failed, clientSeconds: nil, serverSeconds: root.seconds, time: root.time,
                                         virtualNode: "client"))
        }
        if entry.isEmpty {
            entries.remove(key, at: slot)
        } else {
            entries.slots[slot] = entry
        }
    }

    /// Stores a root SERVER/CONSUMER half under its own span id (its entry at `slot`), with its own
    /// deadline; returns where the key's entry is now.
    private mutating func placeRoot(_ key: PairKey, at slot: Int?, _ root: Half) -> Int? {
        if let slot {
            if entries.slots[slot].root == nil {
                guard halves.reserve() else {
                    droppedSpans += 1
                    return slot
                }
                halfCount += 1
            }
            entries.slots[slot].root = root
            expiries.append((root.deadline, key))
            return slot
        }
        guard halves.reserve() else {
            droppedSpans += 1
            return nil
        }
        halfCount += 1
        expiries.append((root.deadline, key))
        return entries.add(key, Entry(root: root))
    }

    /// Pairs `half` with the other side waiting at `key` (its entry at `slot`), or leaves it there until its
    /// own deadline; returns where the key's entry is now.
    private mutating func pair(_ key: PairKey, at slot: Int?, _ half: Half, into edges: inout [EdgeObservation]) -> Int? {
        guard let slot else {
            guard halves.reserve() else {
                droppedSpans += 1
                return nil
            }
            expiries.append((half.deadline, key))
            halfCount += 1
            return entries.add(key, Entry(half: half))
        }
        guard let other = entries.slots[slot].half else {
            guard halves.reserve() else {
                droppedSpans += 1
                return slot
            }
            // The entry may hold agent bookkeeping with an older deadline: the half keeps its own.
            entries.slots[slot].half = half
            expiries.append((half.deadline, key))
            halfCount += 1
            return slot
        }
        guard other.isClient != half.isClient else {
            entries.slots[slot].half = half  // the same side again (a resent span): the later one waits
            expiries.append((half.deadline, key))
            return slot
        }
        entries.slots[slot].half = nil
        halfCount -= 1
        halves.release()
        var remains: Int? = slot
        if entries.slots[slot].isEmpty {
            entries.remove(key, at: slot)
            remains = nil
        }
        let client = half.isClient ? half : other
        let server = half.isClient ? other : half
        edges.append(EdgeObservation(client: client.service, server: server.service,
                                     connectionType: client.messaging || server.messaging ? "messaging_system" : "",
                                     dimensions: Self.sides(client.dimensions, server.dimensions), failed: client.failed || server.failed,
                                     clientSeconds: client.seconds, serverSeconds: server.seconds, time: max(client.time, server.time)))
        return remains
    }

    /// An edge's dimension values: the client side's, then the server side's. Without dimensions configured
    /// both are empty, and so is the result, without the concatenation's call.
    @inline(__always)
    static func sides(_ client: [String], _ server: [String]) -> [String] {
        client.isEmpty && server.isEmpty ? [] : client + server
    }

    /// `mine` and `parents`: where the span's and its parent's entries are, when pairing looked them up.
    private mutating func agentEdges(_ span: SpanHeader, facts: SpanFacts, key me: PairKey, mine: Int??, parents: Int??, service: String, failed: Bool,
                                     seconds: Double, dimensions: [String], none: [String], deadline: UInt64, into edges: inout [EdgeObservation]) {
        func edge(_ client: String, _ server: String, _ type: String) -> EdgeObservation {
            EdgeObservation(client: client, server: server, connectionType: type, dimensions: Self.sides(dimensions, none), failed: failed,
                            clientSeconds: seconds, serverSeconds: nil, time: span.end)
        }
        // Explicit agent-to-agent calls.
        if facts.any, let source = facts.text(.agentSource), let target = facts.text(.agentTarget), !source.isEmpty, !target.isEmpty {
            edges.append(edge(source, target, "agent"))
        }
        // GenAI calls: the agent uses a model or a tool.
        if facts.any, let operation = facts.string(.operation) {
            if Self.isModelOperation(operation),
               let model = facts.string(.requestModel) ?? facts.string(.responseModel) ?? facts.string(.system) {
                var call = edge(service, model, "model")
                let input = facts.integer(.inputTokens), output = facts.integer(.outputTokens)
                if input != 0 || output != 0 {
                    call.tokens = TokenUsage(agent: facts.string(.agentName) ?? service, input: input, output: output)
                }
                edges.append(call)
            } else if operation == "execute_tool", let tool = facts.string(.toolName) {
                edges.append(edge(service, tool, "tool"))
            }
        }
        // A change of service from parent to child that is not already a client/server pair. The span
        // records its own service for children to come and answers the children already waiting.
        let parent = Parent(service: service, kind: span.kind)
        var waiting: [Child] = []
        if let slot = mine ?? entries.find(me) {
            waiting = entries.slots[slot].children
            entries.slots[slot].children = []
            agentItems.release(waiting.count)
            if entries.slots[slot].parent != nil {
                entries.slots[slot].parent = parent
            } else if agentItems.reserve() {
                entries.slots[slot].parent = parent
                entries.slots[slot].bookkeepingDeadline = deadline
                expiries.append((deadline, me))
            }
        } else if agentItems.reserve() {
            _ = entries.add(me, Entry(parent: parent, bookkeepingDeadline: deadline))
            expiries.append((deadline, me))
        }
        for child in waiting where child.service != service && !Self.isRequestPair(parent: span.kind, child: child.kind) {
            edges.append(EdgeObservation(client: service, server: child.service, connectionType: "agent", dimensions: Self.sides(none, child.dimensions),
                                         failed: child.failed, clientSeconds: nil, serverSeconds: child.seconds, time: child.time))
        }
        guard span.parent.isValid else { return }
        let parentKey = PairKey(trace: span.trace, span: span.parent)
        // A span that is its own parent (hostile input) finds the entry just made for it, as a fresh look-up would.
        let index = parentKey == me ? entries.find(me) : parents ?? entries.find(parentKey)
        if let index, let parent = entries.slots[index].parent {
            if parent.service != service, !Self.isRequestPair(parent: parent.kind, child: span.kind) {
                edges.append(EdgeObservation(client: parent.service, server: service, connectionType: "agent", dimensions: Self.sides(none, dimensions),
                                             failed: failed, clientSeconds: nil, serverSeconds: seconds, time: span.end))
            }
            return
        }
        guard agentItems.reserve() else { return }
        let child = Child(service: service, kind: span.kind, failed: failed, seconds: seconds, dimensions: dimensions, time: span.end)
        if let index {
            if entries.slots[index].children.isEmpty {
                entries.slots[index].bookkeepingDeadline = deadline
                expiries.append((deadline, parentKey))
            }
            entries.slots[index].children.append(child)
        } else {
            _ = entries.add(parentKey, Entry(children: [child], bookkeepingDeadline: deadline))
            expiries.append((deadline, parentKey))
        }
    }

    /// A CLIENT parent with a SERVER child (or PRODUCER/CONSUMER) is a request edge, counted there.
    static func isRequestPair(parent: SpanKind, child: SpanKind) -> Bool {
        (parent == .client && child == .server) || (parent == .producer && child == .consumer)
    }

    /// The GenAI operations that call a model.
    static func isModelOperation(_ operation: String) -> Bool {
        switch operation {
        case "chat", "text_completion", "completion", "generate_content", "embeddings": true
        default: false
        }
    }

    /// The database a CLIENT span calls, nil when it is not a database call: with
    /// `database_name_attributes` the connector's rule ("getFirstMatchingValue(DatabaseNameAttributes,
    /// rAttributes, span.Attributes())"), else Tempo's (`SpanFacts.databaseNode`).
    private func databaseNode(_ attributes: [Attribute], resource: Resource, facts: SpanFacts) -> String? {
        guard let names = configuration.databaseNameAttributes else { return facts.databaseNode }
        for name in names {
            if let value = (resource.attributes[name] ?? attributes[name]).map(AttributeText.plain), !value.isEmpty { return value }
        }
        return nil
    }

    private func peerAttribute(_ attributes: [Attribute], facts: SpanFacts) -> String? {
        if let peerFacts {
            for key in peerFacts {
                if let value = facts.text(key), !value.isEmpty { return value }
            }
            return nil
        }
        for key in configuration.virtualNodePeerAttributes {
            if let value = attributes[key].map(AttributeText.plain), !value.isEmpty { return value }
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

/// A limit on stored items shared by the shards of one graph.
public final class StoreBudget: Sendable {
    private let limit: Int
    private let used = Atomic<Int>(0)

    public init(limit: Int) {
        self.limit = limit
    }

    /// Takes one item of the budget; false when none is left.
    func reserve() -> Bool {
        guard used.wrappingAdd(1, ordering: .relaxed).newValue <= limit else {
            used.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    /// Gives back `count` items.
    func release(_ count: Int = 1) {
        if count > 0 { used.wrappingSubtract(count, ordering: .relaxed) }
    }
}

/// Where the attributes the graph reads are in a span's attribute list, found in one pass rather
/// than one search per key, and without copying a value until one is needed.
struct SpanFacts {
    enum Key: Int, CaseIterable {
        case agentSource, agentTarget, operation, requestModel, responseModel, system, toolName, agentName, inputTokens, outputTokens
        case dbNamespace, dbName, dbSystem, dbSystemName, peerService, serverAddress, networkPeerAddress, networkPeerPort

        /// The attribute's name.
        var name: String {
            switch self {
            case .agentSource: "agent.source"
            case .agentTarget: "agent.target"
            case .operation: "gen_ai.operation.name"
            case .requestModel: "gen_ai.request.model"
            case .responseModel: "gen_ai.response.model"
            case .system: "gen_ai.system"
            case .toolName: "gen_ai.tool.name"
            case .agentName: "gen_ai.agent.name"
            case .inputTokens: "gen_ai.usage.input_tokens"
            case .outputTokens: "gen_ai.usage.output_tokens"
            case .dbNamespace: "db.namespace"
            case .dbName: "db.name"
            case .dbSystem: "db.system"
            case .dbSystemName: "db.system.name"
            case .peerService: "peer.service"
            case .serverAddress: "server.address"
            case .networkPeerAddress: "network.peer.address"
            case .networkPeerPort: "network.peer.port"
            }
        }
    }

    /// Bit n set when some key's name is n bytes long.
    static let keyLengths: UInt32 = 1 << 7 | 1 << 9 | 1 << 12 | 1 << 13 | 1 << 14 | 1 << 16 | 1 << 17 | 1 << 20 | 1 << 21 | 1 << 25 | 1 << 26

    private let attributes: [Attribute]
    /// The index of each key's first attribute (as `[Attribute]`'s subscript finds it), -1 when absent; inline,
    /// so a span costs no allocation.
    private var positions = InlineArray<18, Int16>(repeating: -1)
    /// True when any attribute the graph reads is present.
    private(set) var any = false

    init(_ attributes: [Attribute]) {
        self.attributes = attributes
        for index in 0..<min(attributes.count, Int(Int16.max)) {
            if let key = Self.key(attributes[index].key), positions[key.rawValue] < 0 { set(key, Int16(index)) }
        }
    }

    /// The graph's key for an attribute name: most names are passed over on their first byte and length,
    /// and the one or two candidates left are compared. Inlined, so a name in an array is read in place.
    @inline(__always)
    static func key(_ name: String) -> Key? {
        let utf8 = name.utf8
        let length = utf8.count
        // Lengths no key has (`agent.name`, most of an SDK's own) are passed over before a byte is read.
        guard length < 32, Self.keyLengths & 1 << UInt32(length) != 0 else { return nil }
        // Every key is at least 7 bytes long, so the name has a first byte (read by index: `first` is a
        // generic call the optimizer leaves out of line).
        let first = utf8[utf8.startIndex]
        let candidate: Key
        switch (first, length) {
        case (UInt8(ascii: "a"), 12): candidate = name == Key.agentSource.name ? .agentSource : .agentTarget
        case (UInt8(ascii: "g"), 21): candidate = name == Key.operation.name ? .operation : .responseModel
        case (UInt8(ascii: "g"), 20): candidate = .requestModel
        case (UInt8(ascii: "g"), 13): candidate = .system
        case (UInt8(ascii: "g"), 16): candidate = .toolName
        case (UInt8(ascii: "g"), 17): candidate = .agentName
        case (UInt8(ascii: "g"), 25): candidate = .inputTokens
        case (UInt8(ascii: "g"), 26): candidate = .outputTokens
        case (UInt8(ascii: "d"), 12): candidate = .dbNamespace
        case (UInt8(ascii: "d"), 7): candidate = .dbName
        case (UInt8(ascii: "d"), 9): candidate = .dbSystem
        case (UInt8(ascii: "d"), 14): candidate = .dbSystemName
        case (UInt8(ascii: "p"), 12): candidate = .peerService
        case (UInt8(ascii: "s"), 14): candidate = .serverAddress
        case (UInt8(ascii: "n"), 20): candidate = .networkPeerAddress
        case (UInt8(ascii: "n"), 17): candidate = .networkPeerPort
        default: return nil
        }
        return name == candidate.name ? candidate : nil
    }

    private mutating func set(_ key: Key, _ index: Int16) {
        any = true
        positions[key.rawValue] = index
    }

    private func position(_ key: Key) -> Int? {
        let index = positions[key.rawValue]
        return index < 0 ? nil : Int(index)
    }

    /// The attribute's value, when present.
    subscript(_ key: Key) -> AttributeValue? { position(key).map { attributes[$0].value } }

    /// The attribute as a string, when it is one.
    func string(_ key: Key) -> String? { self[key]?.stringValue }

    /// The attribute as label text (numbers and booleans written out).
    func text(_ key: Key) -> String? { self[key].map(AttributeText.plain) }

    /// The attribute as an integer, 0 when absent.
    func integer(_ key: Key) -> Int64 { self[key]?.intValue ?? 0 }

    /// The node a database CLIENT span calls: peer.service, then server.address, then
    /// network.peer.address[:port], then db.namespace / db.name / db.system; nil when not a database call.
    var databaseNode: String? {
        guard any, position(.dbNamespace) != nil || position(.dbName) != nil || position(.dbSystem) != nil
            || position(.dbSystemName) != nil else { return nil }
        if let name = string(.peerService) { return name }
        if let name = string(.serverAddress) { return name }
        if let address = text(.networkPeerAddress) {
            if let port = text(.networkPeerPort) { return "\(address):\(port)" }
            return address
        }
        return string(.dbNamespace) ?? string(.dbName) ?? string(.dbSystem) ?? string(.dbSystemName)
    }
}
