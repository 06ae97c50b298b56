// Feeds bench-shaped batches through one processor with its defaults, alone, for instruction counts under callgrind
// (bench/callgrind-processor), where the whole collector is too large for valgrind to load.
//   processor-bench anomaly_detection|service_graph [BATCHES] [agent|small]
//   processor-bench service_graph_render [RENDERS]
// The batches are shaped like bench/make-payloads.py's. `agent` (the default): four agents, 512 spans, eight spans
// a trace, LLM / tool / delegate / database spans, 3% errors. `small`: the same four services, 16-span traces inside
// one service (a root SERVER, then chat CLIENT, tool and delegate CLIENT spans with few attributes). Every batch
// has its own traces; they arrive 7.75 ms of clock apart (bench/run's rate, about 66,000 spans/s), with a tick
// every 50 ms like the pipeline's. All are made before the first is processed, so counting only the processor's
// functions counts the processor alone. `service_graph` runs two shards (the default on two cores) and waits for
// them before it exits, so their work is all counted.
// `zipkin_json` translates and writes BATCHES agent batches as the Zipkin exporter's JSON body (`zipkinJSON`, counted
// by bench/callgrind-processor zipkin_json).
// `service_graph_render` builds a graph of 1,001 nodes and 3,000 edges (bench/live-view.py's: 2,000 client/server
// pairs among 1,000 services, and `user` calling each service) and renders `/api/service-graph` RENDERS times
// (`renderNodeGraph`, the route's own work: the snapshot and its JSON).
import Dispatch
import Logging
import Pipeline
import Processors
import ServiceGraph
import TraceModel
import TraceWire

/// SplitMix64: a fixed sequence for a fixed seed.
struct Random {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

let services = ["coordinator-main", "planner-agent", "research-agent", "coder-agent"]
let models = ["gpt-4o-2024-08-06", "claude-sonnet-4-20250514"]
let tools = ["web_search", "read_file", "run_tests", "query_database"]

/// The resource `agent_enrichment` leaves on a service's spans.
func agentResource(_ s: Int, extra: [Attribute] = []) -> Resource {
    let service = services[s]
    return Resource(attributes: [
        Attribute("service.name", .string(service)), Attribute("service.version", "1.8.2"),
        Attribute("deployment.environment", "production"), Attribute("agent.name", .string(service)),
        Attribute("agent.type", .string(String(service.prefix { $0 != "-" }))), Attribute("agent.critical", .bool(s == 0)),
    ] + extra)
}

func agentBatch(_ index: Int, random: inout Random) -> SpanBatch {
    var resources: [ResourceSpans] = []
    for (s, service) in services.enumerated() {
        var spans: [Span] = []
        for n in 0..<128 {
            let trace = TraceID(high: 0xA6E7_0000_0000_0000 | UInt64(index), low: UInt64(s) << 32 | UInt64(n / 8 + 1))
            let start = 1_767_225_600_000_000_000 + UInt64(index) * 1_000_000_000 + UInt64(n) * 1_000_000
            let end = start + 2_000_000 + random.next() % 898_000_000
            var attributes: [Attribute]
            let name: String
            var kind = SpanKind.client
            switch n % 4 {
            case 0:
                let model = models[n % 2]
                name = "chat \(model)"
                attributes = [Attribute("gen_ai.operation.name", "chat"), Attribute("gen_ai.system", "openai"),
                              Attribute("gen_ai.request.model", .string(model)), Attribute("gen_ai.response.model", .string(model)),
                              Attribute("gen_ai.usage.input_tokens", .int(Int64(200 + random.next() % 8800))),
                              Attribute("gen_ai.usage.output_tokens", .int(Int64(20 + random.next() % 1480))),
                              Attribute("gen_ai.agent.name", .string(service)), Attribute("server.address", "api.example.com")]
            case 1:
                let tool = tools[n % 4]
                name = "execute_tool \(tool)"
                kind = .internal
                attributes = [Attribute("gen_ai.operation.name", "execute_tool"), Attribute("gen_ai.tool.name", .string(tool)),
                              Attribute("gen_ai.tool.call.id", .string("call_\(random.next() % 1_000_000_000)")),
                              Attribute("agent.step", .int(Int64(n)))]
            case 2:
                name = "POST /v1/delegate"
                attributes = [Attribute("http.request.method", "POST"), Attribute("url.full", "http://planner-agent:8080/v1/delegate"),
                              Attribute("http.response.status_code", .int(200)), Attribute("peer.service", .string(services[(s + 1) % 4])),
                              Attribute("agent.task.id", .string("task-\(random.next() % 100_000_000)"))]
            default:
                name = "SELECT agent_memory"
                attributes = [Attribute("db.system", "postgresql"), Attribute("db.name", "agents"),
                              Attribute("db.statement", "SELECT content FROM memory WHERE agent_id = $1 ORDER BY created_at DESC LIMIT 20"),
                              Attribute("server.address", "postgres"), Attribute("server.port", .int(5432))]
            }
            attributes += [Attribute("agent.name", .string(service)), Attribute("session.id", .string("\(random.next())-\(random.next())")),
                           Attribute("thread.id", .int(Int64(1 + n % 4)))]
            let failed = random.next() % 100 < 3
            spans.append(Span(traceID: trace, spanID: SpanID(random.next() | 1), parentSpanID: n % 8 == 0 ? .zero : SpanID(random.next() | 1),
                              name: name, kind: kind, startTimeUnixNano: start, endTimeUnixNano: end, attributes: attributes,
                              status: SpanStatus(code: failed ? .error : .unset)))
        }
        resources.append(ResourceSpans(resource: agentResource(s), scopeSpans: [ScopeSpans(spans: spans)]))
    }
    return SpanBatch(resourceSpans: resources)
}

/// make-payloads.py's `small` shape (after agent_enrichment): 16-span traces, each inside one service.
func smallBatch(_ index: Int, random: inout Random) -> SpanBatch {
    var resources: [ResourceSpans] = []
    for (s, service) in services.enumerated() {
        var spans: [Span] = []
        var root = SpanID.zero
        for n in 0..<128 {
            let trace = TraceID(high: 0x5A11_0000_0000_0000 | UInt64(index), low: UInt64(s) << 32 | UInt64(n / 16 + 1))
            let id = SpanID((random.next() >> 1) | 1)
            if n % 16 == 0 { root = id }
            let start = 1_767_225_600_000_000_000 + UInt64(index) * 1_000_000_000 + UInt64(n) * 1_000_000
            let end = start + 1_000_000 + random.next() % 399_000_000
            let name: String
            var kind = SpanKind.internal
            var attributes: [Attribute]
            if n % 16 == 0 {
                name = "invoke_agent"
                kind = .server
                attributes = []
            } else if n % 3 == 0 {
                name = "chat"
                kind = .client
                attributes = [Attribute("gen_ai.request.model", .string(String(models[n % 2].prefix(6)))),
                              Attribute("gen_ai.usage.input_tokens", .int(Int64(200 + random.next() % 8800))),
                              Attribute("gen_ai.usage.output_tokens", .int(Int64(20 + random.next() % 1480)))]
            } else if n % 3 == 1 {
                name = "execute_tool"
                attributes = [Attribute("gen_ai.tool.name", .string(tools[n % 4]))]
            } else {
                name = "delegate"
                kind = .client
                attributes = [Attribute("peer.service", .string(services[(s + 1) % 4]))]
            }
            attributes.append(Attribute("agent.name", .string(service)))
            let failed = random.next() % 100 < 3
            spans.append(Span(traceID: trace, spanID: id, parentSpanID: n % 16 == 0 ? .zero : root, name: name, kind: kind,
                              startTimeUnixNano: start, endTimeUnixNano: end, attributes: attributes,
                              status: SpanStatus(code: failed ? .error : .unset)))
        }
        resources.append(ResourceSpans(resource: agentResource(s, extra: [Attribute("telemetry.sdk.language", "python")]),
                                       scopeSpans: [ScopeSpans(spans: spans)]))
    }
    return SpanBatch(resourceSpans: resources)
}

/// The processor under test, with its defaults.
func makeProcessor(_ type: String) -> (any SpanProcessor)? {
    switch type {
    case "anomaly_detection":
        AnomalyDetectionProcessor(configuration: AnomalyDetectionProcessor.Configuration(),
                                  context: ComponentContext(id: ComponentID("anomaly_detection"), logger: Logger(label: "processor-bench"),
                                                            metrics: SelfMetrics()))
    case "service_graph":
        ServiceGraphProcessor(configuration: twoShards(), metrics: SelfMetrics())
    default:
        nil
    }
}

func twoShards() -> ServiceGraphConfiguration {
    var configuration = ServiceGraphConfiguration()
    configuration.shards = 2
    return configuration
}

/// Runs `batches` through `processor` as a pipeline would: waiting for room, ticking every 50 ms of clock.
func run(_ processor: any SpanProcessor, _ prepared: [SpanBatch]) async -> Int {
    var now: UInt64 = 1_767_225_600_000_000_000
    var nextTick = now
    var spans = 0
    let handOff = processor as? any HandOffSpanProcessor
    for batch in prepared {
        now += 7_750_000
        spans += batch.spanCount
        await handOff?.waitForRoom()
        _ = processor.process(batch, now: now)
        if now >= nextTick {
            _ = processor.tick(now: now)
            nextTick = now + 50_000_000
        }
    }
    await handOff?.drain()
    return spans
}

/// The graph bench/live-view.py builds: `edges` client/server pairs among `nodes` services (one trace each) and a
/// root SERVER span in every service (so `user` calls each), with agent attributes on each service's resource.
func renderGraph(nodes: Int, edges: Int) async -> ServiceGraphProcessor {
    var configuration = twoShards()
    configuration.maxEdges = 2 * edges + nodes
    configuration.maxItems = 100_000
    let processor = ServiceGraphProcessor(configuration: configuration, metrics: SelfMetrics())
    var random = Random(state: 7)
    var pairs = Set<[Int]>()
    var ordered: [(Int, Int)] = []
    while ordered.count < edges {
        let (a, b) = (Int(random.next() % UInt64(nodes)), Int(random.next() % UInt64(nodes)))
        if a != b, pairs.insert([a, b]).inserted { ordered.append((a, b)) }
    }
    let now: UInt64 = 1_767_225_600_000_000_000
    var spansByService = [[Span]](repeating: [], count: nodes)
    for (n, (a, b)) in ordered.enumerated() {
        let trace = TraceID(high: 0, low: UInt64(n + 1))
        let duration = 5_000_000 + random.next() % 200_000_000
        spansByService[a].append(Span(traceID: trace, spanID: SpanID(UInt64(2 * n + 1)), name: "call", kind: .client,
                                      startTimeUnixNano: now, endTimeUnixNano: now + duration + 2_000_000))
        spansByService[b].append(Span(traceID: trace, spanID: SpanID(UInt64(2 * n + 2)), parentSpanID: SpanID(UInt64(2 * n + 1)),
                                      name: "handle", kind: .server, startTimeUnixNano: now + 1_000_000, endTimeUnixNano: now + duration))
    }
    for service in 0..<nodes {
        let trace = TraceID(high: 1, low: UInt64(service + 1))
        spansByService[service].append(Span(traceID: trace, spanID: SpanID(UInt64(service + 1)), name: "handle", kind: .server,
                                            startTimeUnixNano: now, endTimeUnixNano: now + 5_000_000 + random.next() % 50_000_000))
    }
    for start in stride(from: 0, to: nodes, by: 50) {
        let resources = (start..<min(nodes, start + 50)).map { service in
            ResourceSpans(resource: Resource(attributes: [
                Attribute("service.name", .string("svc-\(service)")), Attribute("agent.name", .string("svc-\(service)")),
                Attribute("agent.type", .string(service % 3 == 0 ? "planner" : "worker")), Attribute("agent.critical", .bool(service % 7 == 0)),
            ]), scopeSpans: [ScopeSpans(spans: spansByService[service])])
        }
        await processor.waitForRoom()
        _ = processor.process(SpanBatch(resourceSpans: resources), now: now)
    }
    await processor.drain()
    _ = processor.flush()  // the root SERVER spans become `user -> svc` edges
    return processor
}

/// What the Zipkin exporter does with a batch for a JSON request body.
@inline(never)
func zipkinJSON(_ batch: SpanBatch) -> Int {
    ZipkinEncoder.json(ZipkinTranslator.spans(from: batch)).count
}

/// What `GET /api/service-graph` does for its answer: the snapshot and its JSON.
@inline(never)
func renderNodeGraph(_ processor: ServiceGraphProcessor) -> Int {
    GraphJSON.encodeNodeGraph(processor.snapshot(rendering: true)).count
}

func main() async {
    let arguments = CommandLine.arguments.dropFirst()
    let type = arguments.first ?? "anomaly_detection"
    let count = arguments.dropFirst().first.flatMap { Int($0) } ?? (type == "service_graph_render" ? 20 : 100)
    if type.hasPrefix("tail_sampling") {
        do {
            switch type {
            case "tail_sampling": try runTailSampling(count: count)
            case "tail_sampling_early": try runTailSampling(count: count, early: true)
            default: try runTailSamplingMemory(count: count)
            }
        } catch {
            print("processor-bench: \(error)")
        }
    } else if type == "zipkin_json" {
        var random = Random(state: 20_261_129)
        let prepared = (0..<count).map { agentBatch($0, random: &random) }
        let bytes = prepared.reduce(0) { $0 + zipkinJSON($1) }
        print("processor-bench: zipkin_json: \(count * 512) spans, \(bytes) bytes")
    } else if type == "service_graph_render" {
        let processor = await renderGraph(nodes: 1000, edges: 2000)
        var bytes = 0
        for _ in 0..<count { bytes = renderNodeGraph(processor) }
        let snapshot = processor.snapshot()
        print("processor-bench: service_graph_render: \(count) renders of \(snapshot.nodes.count) nodes, \(snapshot.edges.count) edges, \(bytes) bytes")
    } else if let processor = makeProcessor(type) {
        let shape = arguments.dropFirst(2).first ?? "agent"
        var random = Random(state: 20_261_129)
        let prepared = (0..<count).map { shape == "small" ? smallBatch($0, random: &random) : agentBatch($0, random: &random) }
        let spans = await run(processor, prepared)
        print("processor-bench: \(type): \(spans) spans (\(shape)) in \(count) batches")
    } else {
        print("usage: processor-bench anomaly_detection|service_graph [BATCHES] [agent|small] | service_graph_render [RENDERS] | "
              + "tail_sampling|tail_sampling_early|tail_sampling_memory [BATCHES]")
    }
}

// Not an async main: valgrind 3.19 dies when an async main parks the main thread (dispatch_main), so the
// main thread waits for a detached task instead.
let done = DispatchSemaphore(value: 0)
Task.detached {
    await main()
    done.signal()
}
done.wait()
