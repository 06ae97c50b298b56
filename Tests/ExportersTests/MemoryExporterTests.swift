import ConfigYAML
import Foundation
import Pipeline
import Testing
import TraceModel
import TraceWire
@testable import Exporters

@Suite("memory exporter: the recent-trace store and its Jaeger query API")
struct MemoryExporterTests {
    static func span(trace: UInt64, span: UInt64, parent: UInt64 = 0, name: String = "op", startMicros: UInt64 = 1_000,
                     durationMicros: UInt64 = 10, attributes: [Attribute] = [], status: SpanStatus = SpanStatus()) -> Span {
        Span(traceID: TraceID(high: 1, low: trace), spanID: SpanID(span), parentSpanID: SpanID(parent), name: name,
             startTimeUnixNano: startMicros * 1000, endTimeUnixNano: (startMicros + durationMicros) * 1000,
             attributes: attributes, status: status)
    }

    static func batch(service: String, _ spans: [Span], resource: [Attribute] = []) -> SpanBatch {
        SpanBatch(resourceSpans: [ResourceSpans(resource: Resource(attributes: [Attribute("service.name", .string(service))] + resource),
                                                scopeSpans: [ScopeSpans(spans: spans)])])
    }

    @Test("spans of one trace that arrive in several batches, from several services, are one trace")
    func multiBatch() {
        var store = TraceStore(maxTraces: 10, maxBytes: 1 << 20)
        store.insert(Self.batch(service: "planner", [Self.span(trace: 1, span: 1)]))
        store.insert(Self.batch(service: "search", [Self.span(trace: 1, span: 2, parent: 1)]))
        store.insert(Self.batch(service: "planner", [Self.span(trace: 1, span: 3, parent: 1)]))
        #expect(store.count == 1)
        let trace = store.trace(TraceID(high: 1, low: 1))
        #expect(trace?.spans.map(\.span.spanID.value) == [1, 2, 3])
        #expect(trace?.processes.map(\.serviceName) == ["planner", "search"])
        #expect(trace?.spans.map(\.process) == [0, 1, 0])
    }

    @Test("max_traces: the trace whose first span came earliest is evicted, and evictions are counted")
    func countBound() {
        var store = TraceStore(maxTraces: 2, maxBytes: 1 << 30)
        store.insert(Self.batch(service: "a", [Self.span(trace: 1, span: 1)]))
        store.insert(Self.batch(service: "a", [Self.span(trace: 2, span: 2)]))
        // A late span of trace 1 does not make it younger than trace 2.
        store.insert(Self.batch(service: "a", [Self.span(trace: 1, span: 3)]))
        #expect(store.insert(Self.batch(service: "a", [Self.span(trace: 3, span: 4)])) == 1)
        #expect(store.trace(TraceID(high: 1, low: 1)) == nil)
        #expect(store.trace(TraceID(high: 1, low: 2)) != nil)
        #expect(store.trace(TraceID(high: 1, low: 3)) != nil)
        #expect(store.count == 2)
        #expect(store.evictedTraces == 1)
        // Services and span names leave with the last span that had them.
        var named = TraceStore(maxTraces: 1, maxBytes: 1 << 30)
        named.insert(Self.batch(service: "old", [Self.span(trace: 1, span: 1, name: "gone")]))
        named.insert(Self.batch(service: "new", [Self.span(trace: 2, span: 2, name: "kept")]))
        #expect(named.services() == ["new"])
        #expect(named.operations(service: "old") == [])
        #expect(named.operations(service: "new") == ["kept"])
    }

    @Test("max_bytes: traces are evicted until the estimate is within the bound; the estimate follows the spans")
    func byteBound() {
        let big = [Attribute("payload", .string(String(repeating: "x", count: 10_000)))]
        var store = TraceStore(maxTraces: 1000, maxBytes: 25_000)
        store.insert(Self.batch(service: "a", [Self.span(trace: 1, span: 1, attributes: big)]))
        store.insert(Self.batch(service: "a", [Self.span(trace: 2, span: 2, attributes: big)]))
        #expect(store.count == 2)
        #expect(store.estimatedBytes > 20_000)
        store.insert(Self.batch(service: "a", [Self.span(trace: 3, span: 3, attributes: big)]))
        #expect(store.count == 2)
        #expect(store.evictedTraces == 1)
        #expect(store.trace(TraceID(high: 1, low: 1)) == nil)
        #expect(store.estimatedBytes <= 25_000)
        // Small spans: the bound by count is reached first.
        var small = TraceStore(maxTraces: 1000, maxBytes: 25_000)
        for index in 1...50 { small.insert(Self.batch(service: "a", [Self.span(trace: UInt64(index), span: UInt64(index))])) }
        #expect(small.count == 50)
        #expect(small.evictedTraces == 0)
    }

    @Test("the exporter counts evictions in agenttrace_memory_evicted_traces_total")
    func evictionMetric() async throws {
        let metrics = SelfMetrics()
        var configuration = MemoryExporter.Configuration()
        configuration.maxTraces = 1
        let exporter = MemoryExporter(configuration: configuration, id: "memory", metrics: metrics)
        for index in 1...3 { exporter.export(Self.batch(service: "a", [Self.span(trace: UInt64(index), span: 1)])) }
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains(#"agenttrace_memory_evicted_traces_total{exporter="memory"} 2"#))
        #expect(text.contains(#"agenttrace_memory_traces{exporter="memory"} 1"#))  // 1 or 1.0
    }

    @Test("search: service, operation, tags on span, process or log, time range, durations, limit, newest first")
    func search() {
        var store = TraceStore(maxTraces: 100, maxBytes: 1 << 30)
        store.insert(Self.batch(service: "planner", [
            Self.span(trace: 1, span: 1, name: "plan", startMicros: 1_000, durationMicros: 500,
                      attributes: [Attribute("gen_ai.usage.input_tokens", .int(42))]),
        ], resource: [Attribute("agent.name", .string("planner-agent"))]))
        store.insert(Self.batch(service: "planner", [
            Self.span(trace: 2, span: 2, name: "plan", startMicros: 5_000, durationMicros: 50, status: SpanStatus(code: .error)),
        ]))
        store.insert(Self.batch(service: "search", [Self.span(trace: 3, span: 3, name: "lookup", startMicros: 9_000)]))

        func ids(_ configure: (inout TraceQuery) -> Void) -> [UInt64] {
            var query = TraceQuery()
            configure(&query)
            return store.search(query).map(\.traceID.low)
        }
        #expect(ids { $0.service = "planner" } == [2, 1])
        #expect(ids { $0.service = "search"; $0.operation = "plan" } == [])
        #expect(ids { $0.service = "planner"; $0.tags = ["agent.name": "planner-agent"] } == [1])
        #expect(ids { $0.tags = ["error": "true"] } == [2])
        #expect(ids { $0.tags = ["gen_ai.usage.input_tokens": "42"] } == [1])
        #expect(ids { $0.startMinMicros = 2_000; $0.startMaxMicros = 9_000 } == [3, 2])
        #expect(ids { $0.durationMinNanos = 100_000 } == [1])
        #expect(ids { $0.durationMaxNanos = 100_000 } == [3, 2])
        #expect(ids { $0.limit = 1 } == [3])
        #expect(store.services() == ["planner", "search"])
        #expect(store.operations(service: "planner") == ["plan"])
    }

    @Test("query parameters: Jaeger's names, service required, bad values refused with the parameter named")
    func parameters() throws {
        let query = try MemoryExporter.traceQuery([
            "service": "planner", "operation": "plan", "start": "1000", "end": "2000", "minDuration": "1.5ms",
            "maxDuration": "1s", "limit": "20", "tags": #"{"agent.name":"planner-agent"}"#, "tag": "error:true",
        ]).get()
        #expect(query.service == "planner")
        #expect(query.operation == "plan")
        #expect(query.startMinMicros == 1000 && query.startMaxMicros == 2000)
        #expect(query.durationMinNanos == 1_500_000 && query.durationMaxNanos == 1_000_000_000)
        #expect(query.limit == 20)
        #expect(query.tags == ["agent.name": "planner-agent", "error": "true"])
        for (name, bad) in [("start", "yesterday"), ("limit", "-1"), ("minDuration", "soon"), ("tags", "[1]"), ("tag", "novalue")] {
            guard case .failure(let problem) = MemoryExporter.traceQuery(["service": "a", name: bad]) else {
                Issue.record("\(name)=\(bad) was accepted")
                continue
            }
            #expect(problem.message.contains("'\(name)'"))
        }
        #expect(throws: MemoryExporter.QueryProblem.self) { try MemoryExporter.traceQuery([:]).get() }
        #expect(throws: MemoryExporter.QueryProblem.self) {
            try MemoryExporter.traceQuery(["service": "a", "minDuration": "2s", "maxDuration": "1s"]).get()
        }
    }

    @Test("query parameters: tag= and tags= repeat and all must match; traceID= repeats and needs no service (Jaeger's parseTraceQueryParams)")
    func repeatedParameters() throws {
        let request = AdminRequest(target: "/api/traces?service=a&tag=agent.name:planner&tag=url:http://x&tags=%7B%22anomaly.signal%22%3A%22latency%22%7D&tags=%7B%22k%22%3A%22v%22%7D")
        #expect(request.values("tag") == ["agent.name:planner", "url:http://x"])
        let query = try MemoryExporter.traceQuery(request).get()
        #expect(query.tags == ["agent.name": "planner", "url": "http://x", "anomaly.signal": "latency", "k": "v"])
        let byID = try MemoryExporter.traceQuery(AdminRequest(target: "/api/traces?traceID=ab&traceID=00000000000000010000000000000002")).get()
        #expect(byID.service == nil)
        #expect(byID.traceIDs == [TraceID(high: 0, low: 0xab), TraceID(high: 1, low: 2)])
        guard case .failure(let problem) = MemoryExporter.traceQuery(AdminRequest(target: "/api/traces?traceID=xyz")) else {
            Issue.record("traceID=xyz was accepted")
            return
        }
        #expect(problem.message == "cannot parse traceID param: xyz")
        guard case .failure(let second) = MemoryExporter.traceQuery(AdminRequest(target: "/api/traces?service=a&tag=ok:1&tag=novalue")) else {
            Issue.record("a second malformed tag was accepted")
            return
        }
        #expect(second.message.contains("'tag'"))

        var store = TraceStore(maxTraces: 10, maxBytes: 1 << 20)
        store.insert(Self.batch(service: "a", [Self.span(trace: 1, span: 1, attributes: [Attribute("anomaly.signal", .string("latency"))])],
                                resource: [Attribute("agent.name", .string("planner"))]))
        store.insert(Self.batch(service: "a", [Self.span(trace: 2, span: 2, attributes: [Attribute("anomaly.signal", .string("errors"))])],
                                resource: [Attribute("agent.name", .string("planner"))]))
        store.insert(Self.batch(service: "b", [Self.span(trace: 3, span: 3)]))
        var both = TraceQuery()
        both.service = "a"
        both.tags = ["agent.name": "planner", "anomaly.signal": "latency"]
        #expect(store.search(both).map(\.traceID.low) == [1])
        var ids = TraceQuery()
        ids.service = "a"  // ignored with traceIDs, as Jaeger's tracesByIDs reads only the ids
        ids.traceIDs = [TraceID(high: 1, low: 3), TraceID(high: 1, low: 9), TraceID(high: 1, low: 1), TraceID(high: 1, low: 3)]
        #expect(store.search(ids).map(\.traceID.low) == [3, 1])
    }

    @Test("configuration: documented defaults, and validate() names the key")
    func configuration() throws {
        let defaults = MemoryExporter.Configuration()
        #expect(defaults.maxTraces == 10_000 && defaults.maxBytes == 256 << 20)
        let value = try ConfigValue.parse(yaml: "max_traces: 5\nmax_bytes: 1000\n", environment: [:])
        let read = try MemoryExporter.Configuration(section: try ConfigSection(value, path: "exporters.memory"))
        #expect(read.maxTraces == 5 && read.maxBytes == 1000)
        for (yaml, key) in [("max_traces: 0\n", "exporters.memory.max_traces"), ("max_bytes: -1\n", "exporters.memory.max_bytes"),
                            ("max_trace: 3\n", "exporters.memory.max_trace")] {
            do {
                _ = try MemoryExporter.Configuration(section: try ConfigSection(try ConfigValue.parse(yaml: yaml, environment: [:]),
                                                                                 path: "exporters.memory"))
                Issue.record("\(yaml) was accepted")
            } catch {
                #expect(error.key == key)
            }
        }
    }

    @Test("routes answer Jaeger's envelope; an unknown trace is 404 and a malformed id 400, in Jaeger's error shape")
    func routes() throws {
        let exporter = MemoryExporter(configuration: .init())
        exporter.export(Self.batch(service: "planner", [Self.span(trace: 0xab, span: 1, name: "plan")]))
        let routes = Dictionary(uniqueKeysWithValues: exporter.adminRoutes.map { ($0.path, $0) })
        func json(_ response: AdminResponse) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        }
        let services = try json(try #require(routes["/api/services"]).respond(AdminRequest(path: "/api/services")))
        #expect(services["data"] as? [String] == ["planner"])
        let operations = try #require(routes["/api/services/"]).respond(AdminRequest(path: "/api/services/planner/operations"))
        #expect(try json(operations)["data"] as? [String] == ["plan"])
        let traceRoute = try #require(routes["/api/traces/"])
        let found = traceRoute.respond(AdminRequest(path: "/api/traces/000000000000000100000000000000ab"))
        #expect(found.status == 200)
        let data = try #require(try json(found)["data"] as? [[String: Any]])
        #expect(data.first?["traceID"] as? String == "000000000000000100000000000000ab")
        let missing = traceRoute.respond(AdminRequest(path: "/api/traces/ff"))
        #expect(missing.status == 404)
        let errors = try #require(try json(missing)["errors"] as? [[String: Any]])
        #expect(errors.first?["code"] as? Int == 404)
        #expect(traceRoute.respond(AdminRequest(path: "/api/traces/xyz")).status == 400)
        let bad = try #require(routes["/api/traces"]).respond(AdminRequest(path: "/api/traces", query: ["service": "planner", "limit": "x"]))
        #expect(bad.status == 400)
    }
}
