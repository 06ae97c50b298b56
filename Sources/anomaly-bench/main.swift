// Feeds bench-shaped batches through `anomaly_detection: {}`: the processor alone, for instruction counts under
// callgrind (bench/callgrind-anomaly), where the whole collector is too large for valgrind to load.
//   anomaly-bench [BATCHES]
// (`anomaly-bench tail_sampling [BATCHES]`: tail_sampling instead, TailSamplingBench.swift.)
// The batches are shaped like bench/make-payloads.py's: four agents, 512 spans, eight spans a trace, LLM / tool /
// delegate / database spans, 3% errors, every batch its own traces; they arrive 7.75 ms of clock apart (bench/run's
// rate, about 66,000 spans/s), with a tick every 50 ms like the pipeline's. All are made before the first is
// processed, so counting only `process` and `tick` counts the processor alone.
import Foundation
import Logging
import Pipeline
import Processors
import TraceModel

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

func batch(_ index: Int, random: inout Random) -> SpanBatch {
    let services = ["coordinator-main", "planner-agent", "research-agent", "coder-agent"]
    let models = ["gpt-4o-2024-08-06", "claude-sonnet-4-20250514"]
    let tools = ["web_search", "read_file", "run_tests", "query_database"]
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
        resources.append(ResourceSpans(resource: Resource(attributes: [
            Attribute("service.name", .string(service)), Attribute("service.version", "1.8.2"),
            Attribute("deployment.environment", "production"), Attribute("agent.name", .string(service)),
            Attribute("agent.type", .string(String(service.prefix { $0 != "-" }))), Attribute("agent.critical", .bool(s == 0)),
        ]), scopeSpans: [ScopeSpans(spans: spans)]))
    }
    return SpanBatch(resourceSpans: resources)
}

var arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.first.flatMap { Int($0) == nil ? $0 : nil }
if mode != nil { arguments.removeFirst() }
let count = arguments.first.flatMap { Int($0) } ?? 100
switch mode {
case "tail_sampling": try runTailSampling(count: count); exit(0)
case "tail_sampling_early": try runTailSampling(count: count, early: true); exit(0)
case "tail_sampling_memory": try runTailSamplingMemory(count: count); exit(0)
case nil: break
default: print("usage: anomaly-bench [tail_sampling | tail_sampling_early | tail_sampling_memory] [BATCHES]"); exit(2)
}
var random = Random(state: 20_261_129)
let prepared = (0..<count).map { batch($0, random: &random) }
let processor = AnomalyDetectionProcessor(configuration: AnomalyDetectionProcessor.Configuration(),
                                          context: ComponentContext(id: ComponentID("anomaly_detection"), logger: Logger(label: "anomaly-bench"),
                                                                    metrics: SelfMetrics()))
var now: UInt64 = 1_767_225_600_000_000_000
var nextTick = now
var spans = 0
for batch in prepared {
    now += 7_750_000
    spans += batch.spanCount
    _ = processor.process(batch, now: now)
    if now >= nextTick {
        _ = processor.tick(now: now)
        nextTick = now + 50_000_000
    }
}
print("anomaly-bench: \(spans) spans in \(count) batches; series \(processor.seriesCount)")
