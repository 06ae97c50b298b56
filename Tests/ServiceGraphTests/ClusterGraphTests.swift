import ConfigYAML
import Foundation
import Pipeline
import Testing
import TestSupport
import TraceModel
@testable import ServiceGraph

/// Samples of a Prometheus text exposition (`name{a="b"} 1`), enough for the service graph's own series.
private func exposition(_ text: String) -> [(name: String, labels: [String: String], value: Double)] {
    var samples: [(name: String, labels: [String: String], value: Double)] = []
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        let series = line[..<space]
        guard let brace = series.firstIndex(of: "{") else {
            samples.append((String(series), [:], value))
            continue
        }
        var labels: [String: String] = [:]
        var rest = series[series.index(after: brace)...].dropLast()  // without the closing brace
        while let equals = rest.firstIndex(of: "=") {
            let name = String(rest[..<equals]).trimmingCharacters(in: CharacterSet(charactersIn: ", "))
            var index = rest.index(equals, offsetBy: 2)  // past ="
            var text = ""
            while rest[index] != "\"" {
                if rest[index] == "\\" { index = rest.index(after: index) }
                text.append(rest[index])
                index = rest.index(after: index)
            }
            labels[name] = text
            rest = rest[rest.index(after: index)...]
        }
        samples.append((String(series[..<brace]), labels, value))
    }
    return samples
}

/// A Prometheus stand-in over the scrapes of several replicas: evaluates the few query shapes the cluster
/// graph asks (`sum by (…) (metric)`, `max by (…) (metric) == 1`, `group by (…) (metric == 1)`) by adding
/// up the replicas' samples, as Prometheus would.
private struct ScrapedReplicas: PrometheusQuerying {
    let samples: [(name: String, labels: [String: String], value: Double)]

    init(_ scrapes: [String]) {
        samples = scrapes.flatMap(exposition)
    }

    func query(_ promQL: String, at time: Double?) async throws(ClusterGraphError) -> [PrometheusSample] {
        guard let byStart = promQL.range(of: "by ("), let byEnd = promQL[byStart.upperBound...].firstIndex(of: ")") else {
            throw ClusterGraphError("unexpected query \(promQL)")
        }
        let by = promQL[byStart.upperBound..<byEnd].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let metric = promQL.split(whereSeparator: { !($0.isLetter || $0.isNumber || $0 == "_") })
            .first { $0.hasPrefix("traces_") || $0.hasPrefix("agenttrace_") }.map(String.init) ?? ""
        let onlyOnes = promQL.contains("== 1")
        var sums: [[String]: (labels: [String: String], value: Double)] = [:]
        for sample in samples where sample.name == metric && (!onlyOnes || sample.value == 1) {
            let key = by.map { sample.labels[$0] ?? "" }
            let labels = Dictionary(uniqueKeysWithValues: by.map { ($0, sample.labels[$0] ?? "") })
            let value = promQL.hasPrefix("sum") ? sums[key, default: (labels, 0)].value + sample.value : 1
            sums[key] = (labels, value)
        }
        return sums.values.map { PrometheusSample($0.labels, $0.value) }
    }
}

/// One agent trace: coordinator calls research (CLIENT -> SERVER), research calls a model with tokens.
private func agentTrace(_ trace: UInt64, failed: Bool) -> SpanBatch {
    let base = trace * 100
    let coordinator = ResourceSpans(resource: Resource(attributes: [Attribute("service.name", "coordinator"), Attribute("agent.type", "planner")]),
                                    scopeSpans: [ScopeSpans(spans: [span(base + 1, kind: .client, trace: trace, error: failed,
                                                                         start: 1_000_000_000, end: 1_000_000_000 + trace * 7_000_000)])])
    let research = ResourceSpans(resource: Resource(attributes: [Attribute("service.name", "research"), Attribute("agent.type", "researcher")]),
                                 scopeSpans: [ScopeSpans(spans: [
                                     span(base + 2, parent: base + 1, kind: .server, trace: trace, error: failed,
                                          start: 1_001_000_000, end: 1_000_000_000 + trace * 6_000_000),
                                     span(base + 3, parent: base + 2, kind: .client, trace: trace, start: 1_002_000_000,
                                          end: 1_000_000_000 + trace * 5_000_000,
                                          attributes: [Attribute("gen_ai.operation.name", "chat"), Attribute("gen_ai.request.model", "gpt-4o"),
                                                       Attribute("gen_ai.system", "openai"),
                                                       Attribute("gen_ai.usage.input_tokens", .int(Int64(trace * 3))),
                                                       Attribute("gen_ai.usage.output_tokens", .int(Int64(trace)))]),
                                 ])])
    return SpanBatch(resourceSpans: [coordinator, research])
}

@Suite("service graph: the cluster graph from Prometheus")
struct ClusterGraphTests {
    /// A processor fed `traces`, drained and flushed, and its scrape.
    private func replica(_ traces: [UInt64]) async -> (ServiceGraphProcessor, String) {
        var configuration = ServiceGraphConfiguration()
        configuration.shards = 2
        let metrics = SelfMetrics()
        let processor = ServiceGraphProcessor(configuration: configuration, metrics: metrics)
        for trace in traces { _ = processor.process(agentTrace(trace, failed: trace % 4 == 0), now: 2_000_000_000) }
        await processor.drain()
        _ = processor.flush()
        return (processor, String(decoding: metrics.render(), as: UTF8.self))
    }

    @Test("the series of three replicas, summed, give the graph one collector builds from all their traces")
    func replicasSumToOneGraph() async throws {
        let traces = Array(UInt64(1)...60)
        let (single, _) = await replica(traces)
        var scrapes: [String] = []
        for share in 0..<3 { scrapes.append(await replica(traces.filter { $0 % 3 == UInt64(share) }).1) }
        let cluster = try await ClusterGraph(source: ScrapedReplicas(scrapes)).snapshot(window: nil)
        let local = single.snapshot()
        #expect(!local.edges.isEmpty)
        #expect(cluster.edges.map(\.id) == local.edges.map(\.id))
        #expect(cluster.edges.map(\.requests) == local.edges.map(\.requests))
        #expect(cluster.edges.map(\.failed) == local.edges.map(\.failed))
        #expect(local.edges.contains { $0.failed > 0 })
        for (mine, theirs) in zip(cluster.edges, local.edges) {
            #expect(abs((mine.meanServerMilliseconds ?? -1) - (theirs.meanServerMilliseconds ?? -1)) < 0.001, "\(mine.id)")
        }
        #expect(cluster.nodes.map(\.id) == local.nodes.map(\.id))
        #expect(cluster.nodes.map(\.requests) == local.nodes.map(\.requests))
        #expect(cluster.nodes.map(\.failed) == local.nodes.map(\.failed))
        #expect(cluster.nodes.map(\.inputTokens) == local.nodes.map(\.inputTokens))
        #expect(cluster.nodes.map(\.outputTokens) == local.nodes.map(\.outputTokens))
        #expect(local.nodes.contains { $0.inputTokens > 0 })
        #expect(cluster.nodes.map { $0.details.map(\.key) } == local.nodes.map { $0.details.map(\.key) })
        #expect(cluster.nodes.first { $0.id == "coordinator" }?.details == [Attribute("agent.type", "planner")])
        // The same JSON shape: the panel reads both alike.
        #expect(GraphJSON.encodeNodeGraph(cluster).count > 100)
    }

    @Test("a node's agent details are series: 1 for the value it has, 0 for one it had")
    func detailSeries() async throws {
        let metrics = SelfMetrics()
        let processor = ServiceGraphProcessor(configuration: ServiceGraphConfiguration(), metrics: metrics)
        for type in ["planner", "router"] {
            let resource = Resource(attributes: [Attribute("service.name", "coordinator"), Attribute("agent.type", .string(type))])
            _ = processor.process(SpanBatch(resourceSpans: [ResourceSpans(resource: resource, scopeSpans: [ScopeSpans(spans: [span(1, kind: .internal)])])]),
                                  now: 0)
            await processor.drain()
        }
        let details = exposition(String(decoding: metrics.render(), as: UTF8.self)).filter { $0.name == "traces_service_graph_node_detail" }
        #expect(details.first { $0.labels["value"] == "planner" }?.value == 0)
        #expect(details.first { $0.labels["value"] == "router" }?.value == 1)
        #expect(details.allSatisfy { $0.labels["node"] == "coordinator" && $0.labels["key"] == "agent.type" })
    }

    @Test("a service filter keeps the edges touching it; node counts stay whole")
    func serviceFilter() async throws {
        let (_, scrape) = await replica(Array(UInt64(1)...12))
        let all = try await ClusterGraph(source: ScrapedReplicas([scrape])).snapshot(window: nil)
        let coordinator = try await ClusterGraph(source: ScrapedReplicas([scrape])).snapshot(window: nil, service: "coordinator")
        #expect(coordinator.edges.map(\.id) == all.edges.filter { $0.source == "coordinator" || $0.target == "coordinator" }.map(\.id))
        #expect(coordinator.nodes.map(\.id) == ["coordinator", "research"])
        #expect(coordinator.nodes.last?.requests == all.nodes.first { $0.id == "research" }?.requests)
    }

    @Test("a window asks the totals now and as they were a window ago, summed by edge")
    func windowQueries() {
        #expect(ClusterGraph.promQL(.requests) == "sum by (client, server, connection_type) (traces_service_graph_request_total)")
        #expect(ClusterGraph.promQL(.failed, offset: .seconds(900))
            == "sum by (client, server, connection_type) (traces_service_graph_request_failed_total offset 900s)")
        #expect(ClusterGraph.promQL(.serverBuckets, offset: .seconds(60))
            == "sum by (client, server, connection_type, le) (traces_service_graph_request_server_seconds_bucket offset 60s)")
    }

    @Test("a window counts the calls since its start: a new edge from zero, a restarted replica from its restart")
    func windowedDifference() async throws {
        let ab = ["client": "a", "server": "b", "connection_type": ""]
        let ac = ["client": "a", "server": "c", "connection_type": ""]
        let ad = ["client": "a", "server": "d", "connection_type": ""]
        let now = [PrometheusSample(ab, 50), PrometheusSample(ac, 7), PrometheusSample(ad, 4)]
        let then = [PrometheusSample(ab, 20), PrometheusSample(ad, 9)]
        #expect(ClusterGraph.difference(now, then) == [PrometheusSample(ab, 30), PrometheusSample(ac, 7), PrometheusSample(ad, 4)])
        // An edge with no call in the window is left out of a windowed graph.
        let snapshot = ClusterGraph.build([.requests: [PrometheusSample(ab, 3), PrometheusSample(ac, 0)], .failed: [PrometheusSample(ab, 1)]],
                                          windowed: true, service: nil)
        #expect(snapshot.edges.map(\.id) == ["a->b"])
        #expect(snapshot.edges.map(\.failed) == [1])
    }

    /// Prometheus's documentation of `histogram_quantile`: linear interpolation within the bucket, and "if a
    /// quantile is located in the highest bucket, the upper bound of the second highest bucket is returned".
    @Test("percentiles interpolate within a bucket as histogram_quantile does")
    func percentiles() {
        // 10 calls: 2 up to 0.1 s, 4 more up to 0.2 s, 4 above.
        let buckets: [(bound: Double, count: Double)] = [(0.1, 2), (0.2, 6), (.infinity, 10)]
        // p50: rank 5 lies in (0.1, 0.2], 3 of its 4 calls in: 0.1 + 0.1 * 3/4 = 0.175 s.
        #expect(ClusterGraph.percentiles(buckets) == [175, 200, 200])
        #expect(ClusterGraph.percentiles([]) == [])
    }

    @Test("Prometheus's answers are read; an error answer or a stranger's body is an error with the reason")
    func decoding() throws {
        let ok = #"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"client":"a"},"value":[1700000000.5,"42"]}]}}"#
        #expect(try PrometheusHTTPQuerier.decode(Array(ok.utf8), status: 200, baseURL: "http://p") == [PrometheusSample(["client": "a"], 42)])
        let bad = #"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#
        #expect(throws: ClusterGraphError.self) { try PrometheusHTTPQuerier.decode(Array(bad.utf8), status: 400, baseURL: "http://p") }
        do {
            _ = try PrometheusHTTPQuerier.decode(Array(bad.utf8), status: 400, baseURL: "http://p")
        } catch {
            #expect(error.reason.contains("bad_data: parse error at char 5"))
        }
        #expect(throws: ClusterGraphError.self) { try PrometheusHTTPQuerier.decode(Array("<html>".utf8), status: 502, baseURL: "http://p") }
    }

    @Test("with cluster set and Prometheus unreachable, the graph routes answer 503 with the reason")
    func unreachable() async throws {
        // A port nothing listens on: bound, then closed.
        var configuration = ServiceGraphConfiguration()
        configuration.cluster = .init(prometheus: "http://127.0.0.1:9", timeout: .seconds(2))
        let processor = ServiceGraphProcessor(configuration: configuration, metrics: SelfMetrics())
        let routes = Dictionary(uniqueKeysWithValues: processor.adminRoutes.map { ($0.path, $0) })
        for path in ["/api/service-graph", "/api/graph/data", "/api/dependencies", "/api/graph/fields"] {
            let respond = try #require(routes[path]?.respondAsync, "\(path) answers asynchronously")
            let answer = await respond(AdminRequest(path: path))
            #expect(answer.status == 503, "\(path)")
            #expect(String(decoding: answer.body, as: UTF8.self).contains("cannot reach Prometheus at http://127.0.0.1:9"), "\(path)")
        }
        let bad = await routes["/api/service-graph"]!.respondAsync!(AdminRequest(path: "/api/service-graph", query: ["window": "soon"]))
        #expect(bad.status == 400)
    }

    @Test("cluster: prometheus is required and must be a URL; timeout defaults to 5s")
    func configuration() throws {
        let parse = { (yaml: String) throws in
            try ServiceGraphConfiguration(section: ConfigSection(try ConfigValue.parse(yaml: yaml, environment: [:]), path: "processors.service_graph"))
        }
        let configured = try parse("cluster: {prometheus: \"http://prometheus:9090/\"}\n")
        #expect(configured.cluster == .init(prometheus: "http://prometheus:9090", timeout: .seconds(5)))
        #expect(try parse("shards: 1\n").cluster == nil)
        for (yaml, key) in [("cluster: {}\n", "processors.service_graph.cluster.prometheus"),
                            ("cluster: {prometheus: prometheus:9090}\n", "processors.service_graph.cluster.prometheus"),
                            ("cluster: {prometheus: \"http://p\", timeout: 0s}\n", "processors.service_graph.cluster.timeout"),
                            ("cluster: {prometheus: \"http://p\", tenant: x}\n", "processors.service_graph.cluster.tenant")] {
            do {
                _ = try parse(yaml)
                Issue.record("accepted \(yaml)")
            } catch let error as ConfigurationError {
                #expect(error.key == key, "\(yaml)")
            }
        }
    }
}
