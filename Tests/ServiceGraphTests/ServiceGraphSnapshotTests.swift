import Foundation
import Pipeline
import Testing
@testable import ServiceGraph

@Suite("service graph snapshots")
struct ServiceGraphSnapshotTests {
    static func calls(_ seconds: [Double]) -> [EdgeObservation] {
        seconds.map {
            EdgeObservation(client: "agent", server: "llm", connectionType: "", dimensions: [], failed: false,
                            clientSeconds: nil, serverSeconds: $0, time: 1)
        }
    }

    /// Percentiles are made when a snapshot asks and kept until more calls come: the next snapshot after
    /// more calls must see them. Calls of 100 ms, then three of 1 s: nearest-rank p50 is rank 2 of 4, 1 s.
    @Test("percentiles follow the calls recorded after an earlier snapshot")
    func percentilesAfterMoreCalls() throws {
        let graph = ServiceGraph(configuration: ServiceGraphConfiguration(), metrics: SelfMetrics())
        graph.record(Self.calls([0.1]))
        let before = graph.snapshot()
        #expect(try #require(before.edges.first).percentiles.first.map { abs($0 - 100) <= 1.001 } == true)
        #expect(graph.snapshot().edges.first?.percentiles == before.edges.first?.percentiles)
        graph.record(Self.calls([1, 1, 1]))
        let after = graph.snapshot()
        for percentiles in [try #require(after.edges.first).percentiles, try #require(after.nodes.first { $0.id == "llm" }).percentiles] {
            #expect(percentiles.count == 3)
            for got in percentiles { #expect(abs(got - 1000) <= 1000 * LatencySketch.relativeAccuracy + 0.001, "\(percentiles)") }
        }
    }

    /// Node kinds as the Node Graph's subtitle: the target of a model, tool, database or virtual_node edge takes
    /// that kind even when a request edge also reaches it; `user` is a user.
    @Test("node kinds come from the edges that reach them")
    func kinds() {
        let graph = ServiceGraph(configuration: ServiceGraphConfiguration(), metrics: SelfMetrics())
        func call(_ client: String, _ server: String, _ type: String) -> EdgeObservation {
            EdgeObservation(client: client, server: server, connectionType: type, dimensions: [], failed: false,
                            clientSeconds: 0.1, serverSeconds: nil, time: 1)
        }
        graph.record([call("user", "a", "virtual_node"), call("a", "gpt", "model"), call("b", "gpt", ""), call("a", "search", "tool"),
                      call("a", "pg", "database"), call("a", "b", "")])
        let kinds = Dictionary(uniqueKeysWithValues: graph.snapshot().nodes.map { ($0.id, $0.kind) })
        #expect(kinds == ["user": "user", "a": "external", "gpt": "model", "b": "service", "search": "tool", "pg": "database"])
    }

    /// An answer keeps each edge's and node's JSON for the next one while it has not changed: after more
    /// calls the next answer must show them, and equal the answer written afresh.
    @Test("Node Graph JSON kept between answers follows later calls")
    func keptJSONFollowsCalls() throws {
        let graph = ServiceGraph(configuration: ServiceGraphConfiguration(), metrics: SelfMetrics())
        graph.record(Self.calls([0.1]))
        let first = GraphJSON.encodeNodeGraph(graph.snapshot(rendering: true))
        #expect(first == GraphJSON.encodeNodeGraph(graph.snapshot()))
        #expect(GraphJSON.encodeNodeGraph(graph.snapshot(rendering: true)) == first)
        graph.record(Self.calls([0.2]))
        let second = GraphJSON.encodeNodeGraph(graph.snapshot(rendering: true))
        #expect(second == GraphJSON.encodeNodeGraph(graph.snapshot()))
        let document = try #require(try JSONSerialization.jsonObject(with: Data(second)) as? [String: Any])
        let edges = try #require(document["edges"] as? [[String: Any]])
        #expect(edges.first?["mainstat"] as? Int == 2)
        let llm = try #require((document["nodes"] as? [[String: Any]])?.first { $0["id"] as? String == "llm" })
        #expect(llm["detail__requests"] as? Int == 2)
    }
}
