import Foundation
import JSONText
import Pipeline
import Testing
import TraceModel
@testable import ServiceGraph

func resource(_ service: String) -> Resource { Resource(attributes: [Attribute("service.name", .string(service))]) }

func span(_ id: UInt64, parent: UInt64 = 0, kind: SpanKind, trace: UInt64 = 1, error: Bool = false, start: UInt64 = 1_000_000_000,
          end: UInt64 = 1_200_000_000, attributes: [Attribute] = []) -> Span {
    Span(traceID: TraceID(high: trace, low: 1), spanID: SpanID(id), parentSpanID: SpanID(parent), kind: kind,
         startTimeUnixNano: start, endTimeUnixNano: end, attributes: attributes,
         status: SpanStatus(code: error ? .error : .unset))
}

@Suite("service graph pairing")
struct ServiceGraphStateTests {
    var configuration: ServiceGraphConfiguration {
        var configuration = ServiceGraphConfiguration()
        configuration.ttl = .seconds(2)
        return configuration
    }

    @Test("a CLIENT and its SERVER child form one edge, in either order, failed when either side failed")
    func pairing() {
        for reversed in [false, true] {
            var state = ServiceGraphState(configuration: configuration)
            let client = span(10, kind: .client)
            let server = span(20, parent: 10, kind: .server, error: true, start: 1_050_000_000, end: 1_150_000_000)
            let first = reversed ? (server, resource("b")) : (client, resource("a"))
            let second = reversed ? (client, resource("a")) : (server, resource("b"))
            #expect(state.observe(first.0, resource: first.1, now: 0).filter { $0.connectionType == "" }.isEmpty)
            let edges = state.observe(second.0, resource: second.1, now: 0).filter { $0.connectionType == "" }
            #expect(edges.count == 1)
            #expect(edges.first?.client == "a")
            #expect(edges.first?.server == "b")
            #expect(edges.first?.failed == true)
            #expect(edges.first?.clientSeconds == 0.2)
            #expect(edges.first?.serverSeconds == 0.1)
        }
    }

    @Test("an unpaired CLIENT with a peer becomes a virtual node at expiry; a root SERVER is called by user")
    func virtualAndUser() {
        var state = ServiceGraphState(configuration: configuration)
        _ = state.observe(span(10, kind: .client, attributes: [Attribute("peer.service", "payments")]), resource: resource("a"), now: 0)
        #expect(state.expire(now: 1_000_000_000).isEmpty)
        let expired = state.expire(now: 2_000_000_001)
        #expect(expired.map { "\($0.client)->\($0.server):\($0.connectionType)" } == ["a->payments:virtual_node"])
        #expect(state.observe(span(30, kind: .server, trace: 2), resource: resource("b"), now: 3_000_000_000).isEmpty)
        let root = state.expire(now: 5_000_000_001)
        #expect(root.map { "\($0.client)->\($0.server):\($0.connectionType)" } == ["user->b:virtual_node"])
    }

    @Test("a root CONSUMER is also called by user, at expiry")
    func rootConsumer() {
        var state = ServiceGraphState(configuration: configuration)
        #expect(state.observe(span(40, kind: .consumer, trace: 3), resource: resource("worker"), now: 0).isEmpty)
        #expect(state.expire(now: 2_000_000_001).map { "\($0.client)->\($0.server):\($0.connectionType)" } == ["user->worker:virtual_node"])
    }

    @Test("max_nodes bounds the graph; what would pass it is dropped and counted")
    func maxNodes() {
        var configuration = ServiceGraphConfiguration()
        configuration.maxNodes = 3
        let metrics = SelfMetrics()
        let graph = ServiceGraph(configuration: configuration, metrics: metrics)
        let observations = (0..<5).map {
            EdgeObservation(client: "a", server: "s\($0)", connectionType: "", dimensions: [], failed: false,
                            clientSeconds: 0.1, serverSeconds: 0.1, time: 1)
        }
        graph.record(observations)
        #expect(graph.snapshot().nodes.count == 3)
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains("traces_service_graph_dropped_spans_total 3"))
    }

    @Test("database and messaging edges")
    func databaseAndMessaging() {
        var state = ServiceGraphState(configuration: configuration)
        let database = state.observe(span(10, kind: .client, attributes: [Attribute("db.system", "postgresql"), Attribute("server.address", "pg")]),
                                     resource: resource("a"), now: 0)
        #expect(database.map { "\($0.server):\($0.connectionType)" } == ["pg:database"])
        _ = state.observe(span(11, kind: .producer), resource: resource("a"), now: 0)
        let messaging = state.observe(span(12, parent: 11, kind: .consumer), resource: resource("worker"), now: 0)
        #expect(messaging.filter { $0.connectionType == "messaging_system" }.map(\.server) == ["worker"])
    }

    @Test("agent edges: a change of service, agent.source/target, models with tokens, tools")
    func agentEdges() {
        var state = ServiceGraphState(configuration: configuration)
        _ = state.observe(span(1, kind: .internal), resource: resource("coordinator"), now: 0)
        let child = state.observe(span(2, parent: 1, kind: .internal), resource: resource("planner"), now: 0)
        #expect(child.map { "\($0.client)->\($0.server):\($0.connectionType)" } == ["coordinator->planner:agent"])
        // The child arriving first waits for its parent.
        let early = state.observe(span(4, parent: 3, kind: .internal, trace: 9), resource: resource("coder"), now: 0)
        #expect(early.isEmpty)
        let late = state.observe(span(3, kind: .internal, trace: 9), resource: resource("coordinator"), now: 0)
        #expect(late.map { "\($0.client)->\($0.server)" } == ["coordinator->coder"])
        let model = state.observe(span(5, parent: 2, kind: .client, attributes: [
            Attribute("gen_ai.operation.name", "chat"), Attribute("gen_ai.request.model", "gpt-4o"),
            Attribute("gen_ai.usage.input_tokens", .int(100)), Attribute("gen_ai.usage.output_tokens", .int(7)),
        ]), resource: resource("planner"), now: 0)
        #expect(model.contains { $0.server == "gpt-4o" && $0.connectionType == "model" })
        #expect(model.first { $0.connectionType == "model" }?.tokens == TokenUsage(agent: "planner", input: 100, output: 7))
        let tool = state.observe(span(6, parent: 2, kind: .internal, attributes: [
            Attribute("gen_ai.operation.name", "execute_tool"), Attribute("gen_ai.tool.name", "web_search"),
        ]), resource: resource("planner"), now: 0)
        #expect(tool.map { "\($0.server):\($0.connectionType)" } == ["web_search:tool"])
        let explicit = state.observe(span(7, kind: .internal, attributes: [Attribute("agent.source", "a1"), Attribute("agent.target", "a2")]),
                                     resource: resource("x"), now: 0)
        #expect(explicit.map { "\($0.client)->\($0.server)" } == ["a1->a2"])
    }

    @Test("a client and server of different services are one request edge, not also an agent edge")
    func noDoubleCounting() {
        var state = ServiceGraphState(configuration: configuration)
        var edges = state.observe(span(10, kind: .client), resource: resource("a"), now: 0)
        edges += state.observe(span(20, parent: 10, kind: .server), resource: resource("b"), now: 0)
        #expect(edges.map(\.connectionType) == [""])
    }

    @Test("the store is bounded: halves past max_items are dropped and counted")
    func bounded() {
        var configuration = configuration
        configuration.maxItems = 3
        configuration.agentEdges = false
        var state = ServiceGraphState(configuration: configuration)
        for id in 1...10 { _ = state.observe(span(UInt64(id), kind: .client), resource: resource("a"), now: 0) }
        #expect(state.storedItems == 3)
        #expect(state.droppedSpans == 7)
    }
}

@Suite("service graph aggregation and JSON")
struct ServiceGraphJSONTests {
    @Test("node graph fields: arcs sum to 1, stats numeric, edges identified")
    func nodeGraph() async throws {
        let processor = ServiceGraphProcessor(configuration: ServiceGraphConfiguration(), metrics: SelfMetrics())
        let batch = SpanBatch(resourceSpans: [
            ResourceSpans(resource: resource("a"), scopeSpans: [ScopeSpans(spans: [span(10, kind: .client), span(11, kind: .client)])]),
            ResourceSpans(resource: resource("b"), scopeSpans: [ScopeSpans(spans: [span(20, parent: 10, kind: .server, error: true),
                                                                                    span(21, parent: 11, kind: .server)])]),
        ])
        #expect(processor.process(batch, now: 0) == [batch])
        await processor.drain()
        // Read back with Foundation's parser, an oracle independent of the writer.
        let json = try #require(try JSONSerialization.jsonObject(with: Data(GraphJSON.encodeNodeGraph(processor.snapshot()))) as? [String: Any])
        let nodes = try #require(json["nodes"] as? [[String: Any]])
        let edges = try #require(json["edges"] as? [[String: Any]])
        let b = try #require(nodes.first { $0["id"] as? String == "b" })
        #expect(b["mainstat"] as? Int == 2)
        #expect(b["secondarystat"] as? Double == 50)
        #expect((b["arc__success"] as! Double) + (b["arc__failed"] as! Double) == 1)
        #expect(edges.map { $0["id"] as? String } == ["a->b"])
        let dependencies = try #require(try JSONSerialization.jsonObject(with: Data(GraphJSON.dependencies(processor.snapshot()).encoded()))
            as? [String: Any])
        let data = try #require(dependencies["data"] as? [[String: Any]])
        #expect(data.first?["callCount"] as? Int == 2)
        #expect(data.first?["parent"] as? String == "a")
        #expect(data.first?["child"] as? String == "b")
        #expect(dependencies["errors"] is NSNull)
    }

    @Test("agent.* resource attributes become node details, by service and by agent name, declared as fields")
    func agentDetails() async throws {
        let processor = ServiceGraphProcessor(configuration: ServiceGraphConfiguration(), metrics: SelfMetrics())
        let coordinator = Resource(attributes: [Attribute("service.name", "a"), Attribute("agent.name", "coordinator-main"),
                                                Attribute("agent.type", "coordinator"), Attribute("agent.critical", true),
                                                Attribute("agent.capabilities", .array(["plan", "delegate"]))])
        let batch = SpanBatch(resourceSpans: [
            ResourceSpans(resource: coordinator, scopeSpans: [ScopeSpans(spans: [span(10, kind: .client)])]),
            ResourceSpans(resource: resource("b"), scopeSpans: [ScopeSpans(spans: [span(20, parent: 10, kind: .server)])]),
        ])
        _ = processor.process(batch, now: 0)
        await processor.drain()
        let json = try #require(try JSONSerialization.jsonObject(with: Data(GraphJSON.encodeNodeGraph(processor.snapshot()))) as? [String: Any])
        let nodes = try #require(json["nodes"] as? [[String: Any]])
        let a = try #require(nodes.first { $0["id"] as? String == "a" })
        #expect(a["detail__agent_type"] as? String == "coordinator")
        #expect(a["detail__agent_critical"] as? String == "true")
        #expect(a["detail__agent_name"] as? String == "coordinator-main")
        #expect(a["detail__agent_capabilities"] as? String == "plan, delegate")
        #expect(nodes.first { $0["id"] as? String == "b" }?["detail__agent_type"] == nil)
        #expect(processor.nodeDetailKeys == ["agent.capabilities", "agent.critical", "agent.name", "agent.type"])
        let document = try JSONSerialization.jsonObject(with: Data(GraphJSON.fields(nodeDetails: processor.nodeDetailKeys).encoded()))
        let fields = try #require((document as? [String: Any])?["nodes_fields"] as? [[String: Any]])
        #expect(fields.contains { $0["field_name"] as? String == "detail__agent_critical" && $0["type"] as? String == "string" })
    }

    @Test("numbers with up to three decimals are written as Swift would print them", arguments: [
        7.672, 0.05, -1.5, 12800.001, 0.001, 999999.999, 2.0, 1.0 / 3,
    ])
    func numbers(value: Double) {
        var writer = JSONWriter()
        writer.number(value)
        let text = String(decoding: writer.bytes, as: UTF8.self)
        // The reference: Swift's own shortest round-trip description (integers without ".0").
        let want = value == value.rounded() ? String(Int64(value)) : String(value)
        #expect(text == want)
        #expect(Double(text) == value)
    }

    @Test("agent details are bounded by max_nodes")
    func agentDetailsBounded() {
        var configuration = ServiceGraphConfiguration()
        configuration.maxNodes = 2
        let graph = ServiceGraph(configuration: configuration, metrics: SelfMetrics())
        graph.noteDetails(of: ["a", "b", "c"].map { Resource(attributes: [Attribute("service.name", .string($0)), Attribute("agent.type", "t")]) })
        #expect(graph.detailedNodes == ["a", "b"])
    }
}

@Suite("service graph bounds, switches and windows")
struct ServiceGraphBoundsTests {
    static let minute: UInt64 = 60_000_000_000

    static func call(_ client: String, _ server: String, at time: UInt64) -> EdgeObservation {
        EdgeObservation(client: client, server: server, connectionType: "", dimensions: [], failed: false,
                        clientSeconds: 0.1, serverSeconds: 0.1, time: time)
    }

    @Test("max_edges bounds the graph: edges past it are dropped and counted, calls on kept edges still count")
    func maxEdges() {
        var configuration = ServiceGraphConfiguration()
        configuration.maxEdges = 2
        let metrics = SelfMetrics()
        let graph = ServiceGraph(configuration: configuration, metrics: metrics)
        graph.record((0..<5).map { Self.call("a", "s\($0)", at: 1) })
        graph.record([Self.call("a", "s0", at: 2)])
        let snapshot = graph.snapshot()
        #expect(snapshot.edges.map { "\($0.source)->\($0.target)" } == ["a->s0", "a->s1"])
        #expect(snapshot.edges.first?.requests == 2)
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains("traces_service_graph_dropped_spans_total 3"))
    }

    @Test("agent_edges: false records no agent, model or tool edges; request edges stay")
    func agentEdgesOff() {
        var configuration = ServiceGraphConfiguration()
        configuration.agentEdges = false
        var state = ServiceGraphState(configuration: configuration)
        var edges: [EdgeObservation] = []
        edges += state.observe(span(1, kind: .internal), resource: resource("coordinator"), now: 0)
        edges += state.observe(span(2, parent: 1, kind: .internal), resource: resource("planner"), now: 0)
        edges += state.observe(span(5, parent: 2, kind: .client, attributes: [
            Attribute("gen_ai.operation.name", "chat"), Attribute("gen_ai.request.model", "gpt-4o"),
        ]), resource: resource("planner"), now: 0)
        edges += state.observe(span(6, parent: 2, kind: .internal, attributes: [
            Attribute("gen_ai.operation.name", "execute_tool"), Attribute("gen_ai.tool.name", "web_search"),
        ]), resource: resource("planner"), now: 0)
        edges += state.observe(span(7, kind: .internal, attributes: [Attribute("agent.source", "a1"), Attribute("agent.target", "a2")]),
                               resource: resource("x"), now: 0)
        edges += state.observe(span(10, kind: .client), resource: resource("a"), now: 0)
        edges += state.observe(span(20, parent: 10, kind: .server), resource: resource("b"), now: 0)
        #expect(edges.map { "\($0.client)->\($0.server):\($0.connectionType)" } == ["a->b:"])
        // The same spans with the default (true) give the agent edges, so the switch is what removed them.
        var on = ServiceGraphState(configuration: ServiceGraphConfiguration())
        _ = on.observe(span(1, kind: .internal), resource: resource("coordinator"), now: 0)
        #expect(on.observe(span(2, parent: 1, kind: .internal), resource: resource("planner"), now: 0).map(\.connectionType) == ["agent"])
    }

    @Test("a window counts the calls whose minute is in it; history is per minute for an hour, older minutes only in the totals")
    func windows() {
        let graph = ServiceGraph(configuration: ServiceGraphConfiguration(), metrics: SelfMetrics())
        let start = 29_000_000 * Self.minute  // a minute boundary
        graph.record([Self.call("old", "hub", at: start)])
        graph.record([Self.call("new", "hub", at: start + 30 * Self.minute)])
        let now = start + 31 * Self.minute
        func edges(_ windowMinutes: UInt64?) -> [String] {
            graph.snapshot(since: windowMinutes.map { now - $0 * Self.minute }).edges.map { "\($0.source)->\($0.target):\($0.requests)" }
        }
        #expect(edges(5) == ["new->hub:1"], "the call 31 minutes ago aged out of a 5 minute window")
        #expect(edges(60) == ["new->hub:1", "old->hub:1"])
        #expect(edges(nil) == ["new->hub:1", "old->hub:1"])
        // An hour after its first call the old edge is called again: that minute's slot is reused, so the first
        // call leaves the per-minute history (even a window reaching back to it) but stays in the totals.
        graph.record([Self.call("old", "hub", at: start + 60 * Self.minute)])
        func requests(since: UInt64?) -> [String] {
            graph.snapshot(since: since).edges.map { "\($0.source)->\($0.target):\($0.requests)" }
        }
        #expect(requests(since: start) == ["new->hub:1", "old->hub:1"])
        #expect(requests(since: nil) == ["new->hub:1", "old->hub:2"])
    }
}
