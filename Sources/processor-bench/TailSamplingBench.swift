// `processor-bench tail_sampling [BATCHES]` and `processor-bench tail_sampling_memory [BATCHES]`: the same
// bench-shaped batches through `tail_sampling`, holding spans encoded with the collector's own codec
// (`BatchCodec.otlp()`), with bench/tail-sampling.py's policies.
//
// Each batch is decoded from its binary OTLP request first, as the receiver hands it on (with the request's
// bytes, which held spans are copied from).
// tail_sampling: decision_wait 10s as bench/run; `process`, `tick` and the closing `flush` are what
// bench/callgrind-tail-sampling counts, so every span is split, held, decided and (when its trace is
// sampled) given back, as in a long run.
// tail_sampling_early: the same with `decide_early: true` (the embedded default's).
// tail_sampling_memory: decision_wait 1h, nothing decided; batches are made one at a time and dropped, and
// the growth of resident memory (after 20 batches of warm-up) is divided by the spans held, next to the
// batches' size as binary OTLP requests: bench/tail-sampling.py's figure without the collector around it.
import ConfigYAML
import Exporters
import Foundation
import Logging
import Pipeline
import Processors
import TraceModel

let tailSamplingPolicies = """
    policies:
      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
      - {name: slow, type: latency, latency: {threshold_ms: 5000}}
      - {name: alerts, type: string_attribute, string_attribute: {key: alert.rule, values: [".+"], enabled_regex_matching: true}}
      - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 10}}
    """

func tailSamplingProcessor(_ settings: String) throws -> TailSamplingProcessor {
    let section = try ConfigSection(try ConfigValue.parse(yaml: settings + "\n" + tailSamplingPolicies, environment: [:]), path: "tail_sampling")
    return TailSamplingProcessor(configuration: try TailSamplingConfiguration(section: section), metrics: SelfMetrics(),
                                 codec: .otlp())
}

/// Resident bytes of this process (/proc/self/statm).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    return fields.count > 1 ? (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE))) : 0
}

func runTailSampling(count: Int, early: Bool = false) throws {
    var random = Random(state: 20_261_129)
    let codec = BatchCodec.otlp()
    let prepared = try (0..<count).map { try codec.decode(codec.encode(agentBatch($0, random: &random))) }
    let processor = try tailSamplingProcessor("decision_wait: 10s\nnum_traces: 1000000\ndecide_early: \(early)")
    var now: UInt64 = 1_767_225_600_000_000_000
    var nextTick = now
    var spans = 0
    var out = 0
    for batch in prepared {
        now += 7_750_000
        spans += batch.spanCount
        out += processor.process(batch, now: now).reduce(0) { $0 + $1.spanCount }
        if now >= nextTick {
            out += processor.tick(now: now).reduce(0) { $0 + $1.spanCount }
            nextTick = now + 50_000_000
        }
    }
    out += processor.flush().reduce(0) { $0 + $1.spanCount }
    print("processor-bench tail_sampling\(early ? "_early" : ""): \(spans) spans in \(count) batches; \(out) sampled")
}

func runTailSamplingMemory(count: Int) throws {
    let processor = try tailSamplingProcessor("decision_wait: 1h\nnum_traces: 10000000\nexpected_new_traces_per_sec: \(count * 512 / 8 / 3600 + 1)")
    let codec = BatchCodec.otlp()
    var random = Random(state: 20_261_129)
    let warmup = 20
    var before = 0
    var wire = 0
    var spans = 0
    var now: UInt64 = 1_767_225_600_000_000_000
    for index in 0..<count {
        if index == warmup { before = residentBytes() }
        let request = codec.encode(agentBatch(index, random: &random))
        let made = try codec.decode(request)
        if index >= warmup {
            wire += request.count
            spans += made.spanCount
        }
        now += 7_750_000
        _ = processor.process(made, now: now)
    }
    let growth = Double(residentBytes() - before) / Double(spans)
    let wirePerSpan = Double(wire) / Double(spans)
    print(String(format: "processor-bench tail_sampling_memory: %d spans held; %.0f resident bytes per held span, %.0f wire bytes per span: %.2fx",
                 processor.heldSpans, growth, wirePerSpan, growth / wirePerSpan))
}
