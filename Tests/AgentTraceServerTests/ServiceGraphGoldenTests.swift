import Foundation
import Logging
import Pipeline
import Receivers
import Testing
import TestSupport
import TraceModel
@testable import AgentTraceServer
@testable import ServiceGraph

/// The graph each testdata scenario must give (testdata/expected/*.graph.json), whether the spans come
/// as recorded or shuffled one span per request through several shards.
@Suite("service graph golden fixtures")
struct ServiceGraphGoldenTests {
    static let root = ReplayTests.root
    static let scenarios: [(input: String, expected: String)] = [
        ("multi-agent.jsonl", "multi-agent.graph.json"),
        ("multi-agent.jsonl.gz", "multi-agent.graph.json"),
        ("multi-agent.json", "multi-agent-single-request.graph.json"),
        ("multi-agent.pb", "multi-agent-single-request.graph.json"),
        ("invalid-ids.json", "invalid-ids.graph.json"),
        ("connector-cases.jsonl", "connector-cases.graph.json"),
    ]

    static func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    static func expected(_ name: String) throws -> NSDictionary {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("testdata/expected/\(name)")))) as! NSDictionary
    }

    static func decoded(_ bytes: [UInt8]) throws -> NSDictionary {
        try JSONSerialization.jsonObject(with: Data(bytes)) as! NSDictionary
    }

    /// What differs between two graphs, by edge and node id, for a readable failure.
    static func differences(_ got: NSDictionary, _ want: NSDictionary) -> [String] {
        var problems: [String] = []
        for part in ["edges", "nodes"] {
            let byID = { (graph: NSDictionary) in
                Dictionary(((graph[part] as? [NSDictionary]) ?? []).map { ($0["id"] as? String ?? "?", $0) }, uniquingKeysWith: { a, _ in a })
            }
            let (have, need) = (byID(got), byID(want))
            for id in Set(have.keys).union(need.keys).sorted() where have[id] != need[id] {
                problems.append("\(part) \(id): got \(have[id].map { "\($0)" } ?? "nothing"), want \(need[id].map { "\($0)" } ?? "nothing")")
            }
        }
        return problems
    }

    @Test("replaying each scenario gives its expected graph", arguments: scenarios)
    func replay(input: String, expected: String) async throws {
        let yaml = """
        receivers: {otlp: {protocols: {http: {endpoint: "127.0.0.1:0"}}}}
        processors: {service_graph: {}}
        exporters: {nop: {}}
        service:
          pipelines: {traces: {receivers: [otlp], processors: [service_graph], exporters: [nop]}}
        """
        let collector = try Collector(configuration: try CollectorConfiguration(yaml: yaml, environment: [:]),
                                      logger: Logger(label: "test"), announcer: StartupAnnouncer { _ in })
        _ = try await InProcessReplay(collector: collector, progress: ReplayProgress(isTerminal: false)).run(files: [Self.path("testdata/\(input)")])
        let graph = try #require(collector.components(ServiceGraphProcessor.self).first)
        let got = try Self.decoded(GraphJSON.encodeNodeGraph(graph.snapshot()))
        let problems = Self.differences(got, try Self.expected(expected))
        #expect(problems.isEmpty, "\(input):\n\(problems.joined(separator: "\n"))")
    }

    @Test("the same spans shuffled, one per request, through three shards give the same graph", arguments: [1, 2, 3])
    func shuffled(seed: UInt64) async throws {
        var spans: [(Span, Resource)] = []
        for entry in try TraceFileReader().read(Self.path("testdata/multi-agent.jsonl")) {
            var batch = try entry.get().batch
            _ = SpanValidation.dropInvalidSpans(&batch)
            batch.forEachSpan { span, resource, _ in spans.append((span, resource)) }
        }
        var generator = SplitMix64(seed: seed)
        spans.shuffle(using: &generator)
        var configuration = ServiceGraphConfiguration()
        configuration.shards = 3
        let processor = ServiceGraphProcessor(configuration: configuration, metrics: SelfMetrics())
        // Every span arrives within the ttl of the others, so order is all that changes.
        let now = spans.map(\.0.endTimeUnixNano).max() ?? 0
        for (span, resource) in spans {
            let batch = SpanBatch(resourceSpans: [ResourceSpans(resource: resource, scopeSpans: [ScopeSpans(spans: [span])])])
            await processor.waitForRoom()
            _ = processor.process(batch, now: now)
        }
        await processor.drain()
        _ = processor.flush()
        let got = try Self.decoded(GraphJSON.encodeNodeGraph(processor.snapshot()))
        let problems = Self.differences(got, try Self.expected("multi-agent.graph.json"))
        #expect(problems.isEmpty, "seed \(seed):\n\(problems.joined(separator: "\n"))")
    }
}
