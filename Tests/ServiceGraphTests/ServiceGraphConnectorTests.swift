import Foundation
import Pipeline
import Testing
import TestSupport
import TraceModel
@testable import ServiceGraph

/// The OpenTelemetry Collector's servicegraph connector (contrib `connector/servicegraphconnector`) is the
/// oracle here: each expectation cites the part of its `connector.go`, `internal/store` or `testdata/`
/// that says so.
@Suite("service graph: the servicegraph connector's behaviour")
struct ServiceGraphConnectorTests {
    static let second: UInt64 = 1_000_000_000

    var configuration: ServiceGraphConfiguration {
        var configuration = ServiceGraphConfiguration()
        configuration.ttl = .seconds(2)
        return configuration
    }

    static func names(_ edges: [EdgeObservation]) -> [String] {
        edges.map { "\($0.client)->\($0.server):\($0.connectionType)" }.sorted()
    }

    /// connector.go: `case ptrace.SpanKindProducer: connectionType = store.MessagingSystem; fallthrough` into the
    /// CLIENT case, which records the peer attributes; `onExpire` sets `ConnectionType = store.VirtualNode` and
    /// `ServerService = p.getPeerHost(...)` for any edge without a server.
    @Test("an unpaired PRODUCER with a peer attribute becomes a virtual node at expiry, as a CLIENT does")
    func producerVirtualNode() {
        var state = ServiceGraphState(configuration: configuration)
        _ = state.observe(span(10, kind: .producer, attributes: [Attribute("peer.service", "orders-queue")]), resource: resource("shop"), now: 0)
        #expect(state.expire(now: Self.second).isEmpty)
        let expired = state.expire(now: 2 * Self.second + 1)
        #expect(Self.names(expired) == ["shop->orders-queue:virtual_node"])
        #expect(expired.first?.virtualNode == "server")
        #expect(state.unpairedSpans == 0)
    }

    /// store.go: every edge is created by `newEdge(key, s.ttl)` with `expiration: time.Now().Add(ttl)` when its
    /// first half arrives; a half never inherits anything else's deadline.
    @Test("a CLIENT arriving after a same-service child waits its own ttl and still pairs with a late SERVER")
    func ownDeadline() {
        var state = ServiceGraphState(configuration: configuration)
        // The client's same-service child (an SDK's inner span) ends first and is recorded under the client's id.
        _ = state.observe(span(11, parent: 10, kind: .internal), resource: resource("agent"), now: 0)
        _ = state.observe(span(10, kind: .client, start: 0, end: 30 * Self.second), resource: resource("agent"), now: 3 * Self.second / 2)
        // Past the child's deadline (2 s), within the client's (3.5 s).
        #expect(Self.names(state.expire(now: 5 * Self.second / 2)).isEmpty)
        let paired = state.observe(span(20, parent: 10, kind: .server), resource: resource("llm-gateway"), now: 3 * Self.second)
        #expect(Self.names(paired) == ["agent->llm-gateway:"])
        #expect(state.unpairedSpans == 0)
    }

    /// connector.go: a SERVER is keyed by `store.NewKey(traceID, span.ParentSpanID())`, so a root server waits
    /// under an empty span id, apart from any child SERVER keyed at the root's own id; `onExpire`:
    /// `if e.ClientService == "" && e.Key.SpanIDIsEmpty() { e.ClientService = "user" }`.
    @Test("a root SERVER gives user -> service even when a child SERVER is keyed at the root's span id")
    func rootKeepsItsEdge() {
        var state = ServiceGraphState(configuration: configuration)
        _ = state.observe(span(1, kind: .server), resource: resource("frontend"), now: 0)
        _ = state.observe(span(2, parent: 1, kind: .server), resource: resource("backend"), now: 0)
        let expired = state.expire(now: 2 * Self.second + 1)
        #expect(Self.names(expired) == ["user->frontend:virtual_node"])
        #expect(expired.first?.virtualNode == "client")
        // The child SERVER never had a client: unpaired, as before.
        #expect(state.unpairedSpans == 1)
    }

    /// connector.go `aggregateMetrics`: "If service.name doesn't exist, skip processing this trace".
    @Test("spans of a resource without service.name are skipped and counted, unless include_unnamed_services")
    func unnamedServices() async throws {
        var state = ServiceGraphState(configuration: configuration)
        var edges = state.observe(span(10, kind: .client), resource: resource("a"), now: 0)
        edges += state.observe(span(20, parent: 10, kind: .server), resource: Resource(attributes: []), now: 0)
        #expect(edges.filter { $0.server == "unknown_service" }.isEmpty)
        #expect(state.skippedSpans == 1)

        var opted = configuration
        opted.includeUnnamedServices = true
        var included = ServiceGraphState(configuration: opted)
        edges = included.observe(span(10, kind: .client), resource: resource("a"), now: 0)
        edges += included.observe(span(20, parent: 10, kind: .server), resource: Resource(attributes: []), now: 0)
        #expect(Self.names(edges) == ["a->unknown_service:"])

        // Through the processor: the skip is counted in a metric.
        let metrics = SelfMetrics()
        let processor = ServiceGraphProcessor(configuration: configuration, metrics: metrics)
        _ = processor.process(SpanBatch(resourceSpans: [
            ResourceSpans(resource: Resource(attributes: []), scopeSpans: [ScopeSpans(spans: [span(30, kind: .server), span(31, kind: .client)])]),
        ]), now: 0)
        await processor.drain()
        #expect(String(decoding: metrics.render(), as: UTF8.self).contains("traces_service_graph_skipped_spans_total 2"))
        #expect(processor.snapshot().nodes.isEmpty)
    }

    /// connector.go `upsertDimensions`: `m[kind+"_"+dim] = v` with kind `client` for CLIENT/PRODUCER and `server`
    /// for SERVER/CONSUMER, the value from `GetAttributeValue(dim, resourceAttr, spanAttr)` (resource first);
    /// `buildDimensions` puts `client`, `server`, `connection_type` and `failed` first.
    @Test("dimensions are labelled client_<key> and server_<key>, resource before span, beside failed")
    func dimensionLabels() throws {
        var configuration = configuration
        configuration.dimensions = ["tenant", "server"]
        var state = ServiceGraphState(configuration: configuration)
        let client = Resource(attributes: [Attribute("service.name", "a"), Attribute("tenant", "acme")])
        var edges = state.observe(span(10, kind: .client, attributes: [Attribute("tenant", "ignored"), Attribute("server", "s1")]),
                                  resource: client, now: 0)
        edges += state.observe(span(20, parent: 10, kind: .server, error: true, attributes: [Attribute("tenant", "globex")]),
                               resource: resource("b"), now: 0)
        #expect(edges.first { $0.connectionType == "" }?.dimensions == ["acme", "s1", "globex", ""])

        let metrics = SelfMetrics()
        let graph = ServiceGraph(configuration: configuration, metrics: metrics)
        graph.record(edges)
        let text = String(decoding: metrics.render(), as: UTF8.self)
        let total = try #require(text.split(separator: "\n").first { $0.hasPrefix("traces_service_graph_request_total{") })
        for label in ["client=\"a\"", "server=\"b\"", "connection_type=\"\"", "failed=\"true\"", "client_tenant=\"acme\"",
                      "server_tenant=\"globex\"", "client_server=\"s1\"", "server_server=\"\""] {
            #expect(total.contains(label), "\(total) lacks \(label)")
        }
        // One `server` label only: the dimension named `server` cannot collide with it.
        #expect(total.components(separatedBy: ",server=").count + total.components(separatedBy: "{server=").count == 3)
    }

    /// connector.go: `buildMetricKey(..., strconv.FormatBool(e.Failed), ...)` and `dims.PutBool("failed", e.Failed)`
    /// on every series; `reqFailedTotal[key]++` only `if e.Failed`.
    @Test("failed is a label of every series; request_failed_total has only failed=true series")
    func failedLabel() {
        let metrics = SelfMetrics()
        let graph = ServiceGraph(configuration: configuration, metrics: metrics)
        graph.record([true, false, false].map {
            EdgeObservation(client: "a", server: "b", connectionType: "", dimensions: [], failed: $0, clientSeconds: 0.2, serverSeconds: 0.1, time: 1)
        })
        let lines = String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(lines.contains { $0.hasPrefix("traces_service_graph_request_total{") && $0.contains("failed=\"false\"") && $0.hasSuffix(" 2") })
        #expect(lines.contains { $0.hasPrefix("traces_service_graph_request_total{") && $0.contains("failed=\"true\"") && $0.hasSuffix(" 1") })
        #expect(lines.contains { $0.hasPrefix("traces_service_graph_request_failed_total{") && $0.contains("failed=\"true\"") && $0.hasSuffix(" 1") })
        #expect(!lines.contains { $0.hasPrefix("traces_service_graph_request_failed_total{") && $0.contains("failed=\"false\"") })
        #expect(lines.contains { $0.hasPrefix("traces_service_graph_request_server_seconds_count{") && $0.contains("failed=\"true\"") })
        #expect(lines.contains { $0.hasPrefix("traces_service_graph_request_client_seconds_count{") && $0.contains("failed=\"false\"") })
    }

    /// connector.go `onExpire` with `VirtualNodeExtraLabel`: `store.ClientVirtualNode` ("client") for the user
    /// side, `store.ServerVirtualNode` ("server") for the peer side.
    @Test("virtual_node_extra_label adds virtual_node=client|server")
    func virtualNodeLabel() {
        var configuration = configuration
        configuration.virtualNodeExtraLabel = true
        var state = ServiceGraphState(configuration: configuration)
        _ = state.observe(span(1, kind: .server), resource: resource("front"), now: 0)
        _ = state.observe(span(2, parent: 1, kind: .client, attributes: [Attribute("peer.service", "stripe")]), resource: resource("front"), now: 0)
        let metrics = SelfMetrics()
        let graph = ServiceGraph(configuration: configuration, metrics: metrics)
        graph.record(state.expire(now: 3 * Self.second))
        let lines = String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("traces_service_graph_request_total{") }
        #expect(lines.contains { $0.contains("client=\"user\"") && $0.contains("virtual_node=\"client\"") })
        #expect(lines.contains { $0.contains("server=\"stripe\"") && $0.contains("virtual_node=\"server\"") })
    }

    /// connector.go: `getFirstMatchingValue(p.config.DatabaseNameAttributes, rAttributes, span.Attributes())` makes
    /// the edge `store.Database` with `ServerService = dbName`.
    @Test("database_name_attributes: the first present names the database node")
    func databaseNameAttributes() {
        var configuration = configuration
        configuration.databaseNameAttributes = ["db.namespace", "db.name"]
        var state = ServiceGraphState(configuration: configuration)
        let edges = state.observe(span(10, kind: .client, attributes: [Attribute("db.name", "orders"), Attribute("peer.service", "pg-primary")]),
                                  resource: resource("shop"), now: 0)
        #expect(Self.names(edges).contains("shop->orders:database"))
        // db.system alone is not a database call under the connector's rule (it waits for a server instead).
        let waiting = state.observe(span(11, kind: .client, attributes: [Attribute("db.system", "postgresql")]), resource: resource("shop"), now: 0)
        #expect(waiting.filter { $0.connectionType == "database" }.isEmpty)
    }

    /// The default peer attributes are the connector's `defaultPeerAttributes`:
    /// `peer.service`, `db.name` (semconv 1.25), `db.system` (semconv 1.28).
    @Test("the default virtual_node_peer_attributes are the connector's")
    func defaultPeerAttributes() {
        #expect(ServiceGraphConfiguration().virtualNodePeerAttributes == ["peer.service", "db.name", "db.system"])
    }
}
