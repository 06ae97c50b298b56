import Alerting
import Foundation
import Pipeline
import Testing
import TestSupport
import TraceModel
@testable import Processors

func anomalyConfiguration(_ yaml: String = "{}") throws -> AnomalyDetectionProcessor.Configuration {
    try AnomalyDetectionProcessor.Configuration(section: section(yaml, path: "processors.anomaly_detection"))
}

/// Runs the swarm through a processor, ticking every step; collects every alert with its arrival.
final class SwarmRun {
    var swarm: AnomalySwarm
    let processor: AnomalyDetectionProcessor
    let alerts: AlertLog
    let metrics: SelfMetrics
    /// Spans that came out marked, by signal.
    var marked: [String: Int] = [:]

    init(_ swarm: AnomalySwarm = AnomalySwarm(), yaml: String = "{}") throws {
        self.swarm = swarm
        let metrics = SelfMetrics()
        let alerts = AlertLog(capacity: 10_000)
        self.metrics = metrics
        self.alerts = alerts
        processor = AnomalyDetectionProcessor(configuration: try anomalyConfiguration(yaml),
                                              context: context("anomaly_detection", metrics: metrics), alerts: alerts)
    }

    /// Runs `seconds` of virtual time.
    func run(seconds: Double) {
        let steps = Int(seconds * 1e9 / Double(swarm.step))
        for _ in 0..<steps {
            if let batch = swarm.stepBatch() {
                for output in processor.process(batch, now: swarm.now) {
                    output.forEachSpan { span, _, _ in
                        if let value = span.attributes["anomaly.signal"]?.stringValue {
                            for signal in value.split(separator: ",") { marked[String(signal), default: 0] += 1 }
                        }
                    }
                }
            }
            _ = processor.tick(now: swarm.now)
        }
    }

    /// Alerts fired after `time`, oldest first.
    func alerts(after time: UInt64 = 0) -> [Alert] { alerts.recent().reversed().filter { $0.time > time } }
}

@Suite("anomaly detection")
struct AnomalyDetectionTests {
    static let second: UInt64 = 1_000_000_000

    // MARK: configuration

    @Test("`anomaly_detection: {}` gives every documented default")
    func defaults() throws {
        let configuration = try anomalyConfiguration()
        #expect(configuration.sensitivity == .medium)
        #expect(configuration.minSamples == 30)
        #expect(configuration.warmup == .seconds(60))
        #expect(configuration.learningRate == 0.02)
        #expect(configuration.cooldown == .seconds(300))
        #expect(configuration.maxSeries == 50_000)
        #expect(configuration.maxTraces == 20_000)
        #expect(configuration.errorWindow == .seconds(10))
        #expect(configuration.minErrors == 3)
        #expect(configuration.rateWindow == .seconds(10))
        #expect(configuration.minSilence == .seconds(10))
        #expect(configuration.loopMinCount == 10)
        #expect(configuration.traceIdle == .seconds(30))
        #expect(configuration.incidentWindow == .seconds(30))
        #expect(configuration.incidentGroupWait == .seconds(5))
        #expect(configuration.incidentGroupInterval == .seconds(60))
        #expect(configuration.pricing.isEmpty)
        #expect(configuration.notify.isEmpty)
        for signal in [configuration.latency, configuration.errors, configuration.tokens, configuration.silence, configuration.loop,
                       configuration.newInteraction] {
            #expect(signal.enabled && signal.sensitivity == nil && signal.severity == nil)
        }
        #expect(try anomalyConfiguration("") == configuration)
    }

    @Test("mistakes name the dotted key", arguments: [
        ("sensitivity: extreme", "processors.anomaly_detection.sensitivity"),
        ("latency: { sensitivity: loud }", "processors.anomaly_detection.latency.sensitivity"),
        ("errors: { severity: page }", "processors.anomaly_detection.errors.severity"),
        ("min_samples: 1", "processors.anomaly_detection.min_samples"),
        ("silence: { min_silence: 0s }", "processors.anomaly_detection.silence.min_silence"),
        ("loop: { min_count: lots }", "processors.anomaly_detection.loop.min_count"),
        ("pricing: { gpt-4o: { input: -1 } }", "processors.anomaly_detection.pricing.gpt-4o.input"),
        ("tokens: { window: 5s }", "processors.anomaly_detection.tokens.window"),
        ("max_series: 0", "processors.anomaly_detection.max_series"),
        ("incidents: { group_interval: 0s }", "processors.anomaly_detection.incidents.group_interval"),
        ("incidents: { group_wait: soon }", "processors.anomaly_detection.incidents.group_wait"),
        ("bogus: 1", "processors.anomaly_detection.bogus"),
    ])
    func namedKeys(yaml: String, key: String) {
        do {
            _ = try anomalyConfiguration(yaml)
            Issue.record("\(yaml) was accepted")
        } catch {
            #expect("\(error)".contains(key), "\(error)")
        }
    }

    @Test("signals switch off with `false` or `enabled: false`; sensitivity and severity are overridden per signal")
    func perSignal() throws {
        let configuration = try anomalyConfiguration("""
            sensitivity: high
            latency: false
            errors: { enabled: false }
            tokens: { sensitivity: low, severity: critical, rate_window: 30s }
            pricing: { gpt-4o: { input: 2.5, output: 10 } }
            """)
        #expect(!configuration.latency.enabled && !configuration.errors.enabled && configuration.tokens.enabled)
        #expect(configuration.sensitivity(of: configuration.tokens) == .low)
        #expect(configuration.sensitivity(of: configuration.loop) == .high)
        #expect(configuration.tokens.severity == .critical)
        #expect(configuration.rateWindow == .seconds(30))
        #expect(configuration.pricing["gpt-4o"] == AnomalyDetectionProcessor.Configuration.Price(input: 2.5, output: 10))
    }

    // MARK: statistics

    @Test("the baseline is the first samples' exact median and MAD, then follows a new steady level")
    func baseline() {
        var baseline = RobustBaseline()
        for value in [9.0, 10, 11, 10, 12, 8, 10, 10, 9, 11] { baseline.observe(value, minSamples: 10) }
        #expect(baseline.isReady)
        #expect(abs(baseline.typical - 10) < 1e-9)
        // MAD of log1p values: the median distance from log(11).
        #expect(baseline.mad > 0.07 && baseline.mad < 0.1)
        // One wild value does not make the series anomalous…
        baseline.observe(10_000, minSamples: 10)
        #expect(baseline.score < 3.5)
        // …a sustained one does, and then becomes normal (decaying weights).
        var scores: [Double] = []
        for _ in 0..<400 {
            baseline.observe(50, minSamples: 10)
            scores.append(baseline.score)
        }
        #expect(scores.prefix(10).contains { $0 >= 3.5 })
        #expect(scores.last! < 1)
    }

    @Test("the Poisson surprise is -log10 of the upper tail")
    func poisson() {
        // P(K ≥ 1 | λ = 1) = 1 − e^−1.
        #expect(abs(poissonSurprise(1, expected: 0.5) + log10(1 - exp(-0.5))) < 1e-9)
        // P(K ≥ 3 | λ = 0.2) = 1 − e^−0.2 (1 + 0.2 + 0.02).
        #expect(abs(poissonSurprise(3, expected: 0.2) + log10(1 - exp(-0.2) * 1.22)) < 1e-6)
        #expect(poissonSurprise(0, expected: 1) == 0)
    }

    // MARK: the swarm

    @Test("a steady swarm with realistic spread fires nothing for ten minutes")
    func steady() throws {
        let run = try SwarmRun()
        run.run(seconds: 600)
        #expect(run.alerts().isEmpty, "\(run.alerts().map { "\($0.rule) \($0.agent) \($0.message)" })")
        #expect(run.marked.isEmpty)
        #expect(run.processor.seriesCount > 8)
    }

    @Test("latency ×5 on one agent's LLM calls fires latency for that agent within 5 s, and nothing else")
    func latency() throws {
        let run = try SwarmRun()
        run.run(seconds: 180)
        let start = run.swarm.now
        run.swarm.agents[1].latencyFactor = 5
        run.run(seconds: 10)
        let fired = run.alerts(after: start)
        #expect(Set(fired.map(\.rule)) == ["anomaly/latency"], "\(fired.map(\.message))")
        #expect(Set(fired.map(\.agent)) == ["agent-1"])
        let first = try #require(fired.first)
        #expect(first.time - start <= 5 * Self.second)
        #expect(first.anomaly?.signal == "latency")
        #expect(first.anomaly?.subject == "chat gpt-4o")
        #expect(first.severity == .warning)
        #expect(first.anomaly?.labels.contains { $0 == ("peer", "llm-gateway") } == true)
        #expect(run.marked["latency", default: 0] > 0)
        let fields = String(decoding: first.webhookJSON, as: UTF8.self)
        for key in ["\"kind\":\"anomaly\"", "\"signal\":\"latency\"", "\"baseline\":", "\"score\":", "\"rule\":\"anomaly/latency\""] {
            #expect(fields.contains(key), "\(key) missing from \(fields)")
        }
    }

    @Test("an error burst on one edge fires errors for that agent within 5 s; critical agents' alerts are critical")
    func errors() throws {
        var swarm = AnomalySwarm()
        swarm.agents[2].critical = true
        let run = try SwarmRun(swarm)
        run.run(seconds: 180)
        let start = run.swarm.now
        run.swarm.agents[2].toolErrorShare = 1
        run.run(seconds: 10)
        let fired = run.alerts(after: start)
        #expect(Set(fired.map(\.rule)) == ["anomaly/errors"], "\(fired.map(\.message))")
        #expect(Set(fired.map(\.agent)) == ["agent-2"])
        let first = try #require(fired.first)
        #expect(first.time - start <= 5 * Self.second)
        #expect(first.severity == .critical)
        #expect(fired.contains { $0.anomaly?.subject == "search-api" })
    }

    @Test("tokens ×10 on one agent fires tokens within 5 s, with the cost when pricing is set")
    func tokens() throws {
        let run = try SwarmRun(yaml: "pricing: { gpt-4o: { input: 2.5, output: 10 } }")
        run.run(seconds: 180)
        let start = run.swarm.now
        run.swarm.agents[4].tokenFactor = 10
        run.run(seconds: 10)
        let fired = run.alerts(after: start)
        #expect(Set(fired.map(\.rule)) == ["anomaly/tokens"], "\(fired.map(\.message))")
        #expect(Set(fired.map(\.agent)) == ["agent-4"])
        let first = try #require(fired.first)
        #expect(first.time - start <= 5 * Self.second)
        #expect(first.anomaly?.labels.contains { $0.0 == "cost_usd" } == true)
        #expect(run.marked["tokens", default: 0] > 0)
    }

    @Test("five times the calls at the usual tokens per call fires the token rate (subject rate), not the per-call series")
    func tokenRate() throws {
        let run = try SwarmRun()
        run.run(seconds: 400)
        let start = run.swarm.now
        run.swarm.agents[7].rate = 5
        run.run(seconds: 60)
        let fired = run.alerts(after: start)
        #expect(!fired.isEmpty)
        #expect(fired.allSatisfy { $0.rule == "anomaly/tokens" && $0.agent == "agent-7" && $0.anomaly?.subject == "rate" },
                "\(fired.map(\.message))")
    }

    @Test("an agent going silent is reported once, by the clock, within 2 s of its documented limit")
    func silence() throws {
        let run = try SwarmRun()
        run.run(seconds: 180)
        run.swarm.agents[3].silent = true
        let stopped = run.swarm.now
        run.run(seconds: 60)
        let fired = run.alerts(after: stopped)
        #expect(fired.map(\.rule) == ["anomaly/silence"], "\(fired.map(\.message))")
        let alert = try #require(fired.first)
        #expect(alert.agent == "agent-3")
        guard case .number(let silent) = alert.value, case .number(let limit) = alert.threshold,
              case .number(let typical)? = alert.anomaly?.baseline else {
            Issue.record("values are not numbers")
            return
        }
        #expect(abs(limit - max(10, typical * 4)) < 0.01)
        #expect(silent >= limit && silent < limit + 2)
    }

    @Test("in replay, where the clock moves with the recorded arrivals, silence is reported at the first arrival past its limit")
    func silenceInReplay() throws {
        let run = try SwarmRun()
        run.run(seconds: 180)
        let stopped = run.swarm.now
        // The recording has no request for 30 s; then agent-0's next one. Replay ticks only before each request.
        for index in run.swarm.agents.indices { run.swarm.agents[index].silent = true }
        run.swarm.now += 30 * Self.second
        run.swarm.agents[0].silent = false
        var batch: SpanBatch?
        while batch == nil { batch = run.swarm.stepBatch() }
        _ = run.processor.tick(now: run.swarm.now)
        _ = run.processor.process(try #require(batch), now: run.swarm.now)
        let silence = run.alerts(after: stopped).filter { $0.rule == "anomaly/silence" }
        #expect(silence.count == 8)
        for alert in silence {
            #expect(alert.time == run.swarm.now)
            guard case .number(let silent) = alert.value, case .number(let limit) = alert.threshold else {
                Issue.record("values are not numbers")
                continue
            }
            #expect(silent >= 30 && silent > limit + 2)
        }
    }

    @Test("an agent looping on a tool fires loop before its trace ends")
    func loop() throws {
        let run = try SwarmRun()
        run.run(seconds: 180)
        let start = run.swarm.now
        let trace = TraceID(high: 99, low: 99)
        var loopAlert: Alert?
        for call in 0..<40 {
            run.run(seconds: 0.5)
            let span = Span(traceID: trace, spanID: SpanID(UInt64(10_000 + call)), parentSpanID: SpanID(9_999), name: "execute_tool search",
                            kind: .client, startTimeUnixNano: run.swarm.now - 100_000_000, endTimeUnixNano: run.swarm.now,
                            attributes: [Attribute("gen_ai.operation.name", "execute_tool"), Attribute("gen_ai.tool.name", "search"),
                                         Attribute("peer.service", "search-api")])
            let output = run.processor.process(SpanBatch(resourceSpans: [ResourceSpans(resource: run.swarm.resource(6),
                                                                                  scopeSpans: [ScopeSpans(spans: [span])])]),
                                               now: run.swarm.now)
            if let alert = run.alerts(after: start).first(where: { $0.rule == "anomaly/loop" }) {
                loopAlert = alert
                #expect(output[0].resourceSpans[0].scopeSpans[0].spans[0].attributes["anomaly.signal"]?.stringValue == "loop")
                break
            }
        }
        let alert = try #require(loopAlert)
        #expect(alert.agent == "agent-6")
        #expect(alert.traceID == trace)
        #expect(alert.anomaly?.subject == "tool search")
        #expect(run.alerts(after: start).allSatisfy { $0.rule == "anomaly/loop" && $0.agent == "agent-6" })
    }

    @Test("after the warm-up, a never-seen callee fires new_interaction once; before it, nothing")
    func newInteraction() throws {
        var swarm = AnomalySwarm()
        swarm.agents[5].extraTool = "early-tool"
        let run = try SwarmRun(swarm)
        run.run(seconds: 180)
        #expect(run.alerts().isEmpty)
        let start = run.swarm.now
        run.swarm.agents[5].extraTool = "shell"
        run.run(seconds: 10)
        let fired = run.alerts(after: start)
        #expect(fired.map(\.rule) == ["anomaly/new_interaction"], "\(fired.map(\.message))")
        #expect(fired.first?.agent == "agent-5")
        #expect(fired.first?.anomaly?.subject == "shell")
    }

    @Test("no alert before min_samples and warmup, however far off")
    func warmup() throws {
        let run = try SwarmRun()
        run.swarm.agents[1].latencyFactor = 1
        run.run(seconds: 30)
        run.swarm.agents[1].latencyFactor = 20
        run.run(seconds: 20)
        #expect(run.alerts().isEmpty)
    }

    @Test("max_series bounds what is held; the least recently seen go first and are counted")
    func eviction() throws {
        let alerts = AlertLog()
        let metrics = SelfMetrics()
        let processor = AnomalyDetectionProcessor(configuration: try anomalyConfiguration("max_series: 100"),
                                                  context: context("anomaly_detection", metrics: metrics), alerts: alerts)
        for index in 0..<500 {
            let batch = SpanBatch(resourceSpans: [ResourceSpans(resource: agentResource("agent"), scopeSpans: [ScopeSpans(spans: [
                Span(traceID: TraceID(high: 1, low: UInt64(index)), spanID: SpanID(1), name: "operation-\(index)",
                     startTimeUnixNano: 0, endTimeUnixNano: 1_000_000),
            ])])])
            _ = processor.process(batch, now: UInt64(index + 1) * Self.second)
        }
        #expect(processor.seriesCount <= 100)
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains("agenttrace_anomaly_evictions_total{processor=\"anomaly_detection\"}"))
        #expect(!text.contains("agenttrace_anomaly_evictions_total{processor=\"anomaly_detection\"} 0\n"))
        #expect(text.contains("agenttrace_anomaly_series{processor=\"anomaly_detection\"}"))
    }

    @Test("inside the cooldown an anomaly is suppressed and counted; max_traces drops running traces and counts them")
    func cooldownAndTraces() throws {
        let run = try SwarmRun(yaml: "max_traces: 10")
        run.run(seconds: 180)
        run.swarm.agents[1].latencyFactor = 5
        run.run(seconds: 20)
        #expect(run.alerts().filter { $0.rule == "anomaly/latency" }.count == 1)
        let text = String(decoding: run.metrics.render(), as: UTF8.self)
        let suppressed = text.split(separator: "\n").first {
            $0.hasPrefix("agenttrace_anomaly_suppressed_total{processor=\"anomaly_detection\",signal=\"latency\"}")
        }
        #expect(suppressed.map { !$0.hasSuffix(" 0") } == true, "\(String(describing: suppressed))")
        let dropped = text.split(separator: "\n").first { $0.hasPrefix("agenttrace_anomaly_dropped_traces_total{") }
        #expect(dropped.map { !$0.hasSuffix(" 0") } == true, "\(String(describing: dropped))")
    }

    @Test("the eviction cut-off is the count-th smallest time, as sorting finds it, ties and edges included")
    func cutoffSelectsAsSortingWould() {
        var generator = SystemRandomNumberGenerator()
        for size in [1, 2, 3, 7, 64, 1000, 4099] {
            for spread in [UInt64(3), 1_000, .max] {
                let times = (0..<size).map { _ in UInt64.random(in: 0...spread, using: &generator) }
                let sorted = times.sorted()
                for count in [0, 1, 2, size / 4, size / 2, size - 1, size, size + 5] {
                    let expected = sorted[min(max(count, 1), size) - 1]
                    #expect(AnomalyDetector.cutoff(times, keeping: count) == expected, "size \(size), spread \(spread), count \(count)")
                }
            }
        }
        #expect(AnomalyDetector.cutoff([5, 5, 5, 5], keeping: 3) == 5)
        #expect(AnomalyDetector.cutoff(Array((0..<100).reversed()), keeping: 10) == 9)
    }

    @Test("metrics: alerts per signal and the learned baselines per agent")
    func metrics() throws {
        let run = try SwarmRun()
        run.run(seconds: 180)
        run.swarm.agents[1].latencyFactor = 5
        run.run(seconds: 10)
        let text = String(decoding: run.metrics.render(), as: UTF8.self)
        #expect(text.contains("agenttrace_anomaly_alerts_total{processor=\"anomaly_detection\",signal=\"latency\"}"))
        #expect(text.contains("agenttrace_anomaly_baseline{processor=\"anomaly_detection\",agent=\"agent-0\",signal=\"silence\"}"))
        #expect(text.contains("agenttrace_anomaly_baseline{processor=\"anomaly_detection\",agent=\"agent-0\",signal=\"latency\"}"))
    }

    @Test("the same spans on the same clock give the same alerts every run (replay)")
    func deterministic() throws {
        func alerts() throws -> [Alert] {
            let run = try SwarmRun()
            run.run(seconds: 120)
            run.swarm.agents[1].latencyFactor = 5
            run.swarm.agents[3].silent = true
            run.swarm.agents[4].tokenFactor = 10
            run.run(seconds: 40)
            return run.alerts()
        }
        let first = try alerts()
        #expect(!first.isEmpty)
        #expect(try alerts() == first)
    }

    // MARK: incidents

    @Test("a slow shared gateway gives one incident whose probable cause is the gateway")
    func gatewayIncident() throws {
        let run = try SwarmRun()
        run.run(seconds: 180)
        for index in run.swarm.agents.indices { run.swarm.agents[index].latencyFactor = 5 }
        run.run(seconds: 10)
        let incidents = run.processor.incidents.recent()
        #expect(incidents.count == 1)
        let incident = try #require(incidents.first)
        #expect(incident.probableCause == "llm-gateway")
        #expect(incident.agents.count >= 4)
        let body = try json(run.processor.incidents.json())
        let list = try #require(body["incidents"] as? [[String: Any]])
        #expect(list.first?["probable_cause"] as? String == "llm-gateway")
    }

    @Test("unconnected agents' anomalies are separate incidents, newest first; one agent alone is its own cause")
    func separateIncidents() {
        let log = IncidentLog(window: .seconds(30))
        func alert(_ agent: String, _ time: UInt64, peer: String? = nil) -> Alert {
            Alert(rule: "anomaly/latency", severity: .warning, value: .number(1), threshold: .number(1), service: agent, agent: agent,
                  traceID: .zero, spanID: .zero, spanName: "x", time: time, message: "",
                  anomaly: Alert.Anomaly(signal: "latency", subject: "x", baseline: .number(1), score: 5,
                                         labels: peer.map { [("peer", $0)] } ?? []))
        }
        let edges = [("a", "gw"), ("b", "gw"), ("c", "d")]
        log.record([alert("a", 1 * Self.second, peer: "gw")], edges: edges)
        log.record([alert("c", 2 * Self.second)], edges: edges)
        // b is connected to a through the gateway: joins a's incident, no notification of its own.
        log.record([alert("b", 3 * Self.second, peer: "gw")], edges: edges)
        #expect(log.notifications(now: 10 * Self.second).compactMap { $0.incident?.id } == [1, 2])
        // Past the window: a new incident.
        log.record([alert("a", 100 * Self.second, peer: "gw")], edges: edges)
        #expect(log.notifications(now: 110 * Self.second).compactMap { $0.incident?.id } == [3])
        let incidents = log.recent()
        #expect(incidents.map(\.id) == [3, 1, 2])
        let joined = incidents.first { $0.agents.contains("b") }
        #expect(joined?.agents == ["a", "b"])
        #expect(joined?.probableCause == "gw")
        #expect(incidents.first { $0.agents == ["c"] }?.probableCause == "c")
    }

    // MARK: bounded memory of callees

    @Test("a callee whose series max_series evicted is not new when it comes back; a never-seen one still is")
    func evictedCalleeIsNotNew() throws {
        let alerts = AlertLog()
        let metrics = SelfMetrics()
        let processor = AnomalyDetectionProcessor(configuration: try anomalyConfiguration("{max_series: 10, min_samples: 3, warmup: 1s, cooldown: 0s}"),
                                                  context: context("anomaly_detection", metrics: metrics), alerts: alerts)
        var clock: UInt64 = 0
        func send(_ name: String, tool: String? = nil) {
            clock += Self.second
            let attributes = tool.map { [Attribute("gen_ai.operation.name", "execute_tool"), Attribute("gen_ai.tool.name", .string($0))] } ?? []
            _ = processor.process(SpanBatch(resourceSpans: [ResourceSpans(resource: agentResource("agent"), scopeSpans: [ScopeSpans(spans: [
                Span(traceID: TraceID(high: 1, low: clock), spanID: SpanID(1), name: name, startTimeUnixNano: 0, endTimeUnixNano: 1_000_000,
                     attributes: attributes),
            ])])]), now: clock)
        }
        func newInteractions() -> [String] {
            alerts.recent().filter { $0.rule == "anomaly/new_interaction" }.map { $0.anomaly?.subject ?? "" }
        }
        for _ in 0..<5 { send("work") }
        send("execute_tool shell", tool: "shell")
        #expect(newInteractions() == ["shell"])
        // Twenty other operations: every older series goes, shell's among them.
        for index in 0..<20 { send("operation-\(index)") }
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(!text.contains("agenttrace_anomaly_evictions_total{processor=\"anomaly_detection\"} 0\n"))
        send("execute_tool shell", tool: "shell")
        #expect(newInteractions() == ["shell"])
        send("execute_tool curl", tool: "curl")
        #expect(newInteractions() == ["curl", "shell"])
    }

    @Test("callees are remembered by a hash that is the same on every run, at most four times max_series of them")
    func calleeMemory() throws {
        #expect(AnomalyDetector.calleeHash("a", "tool", "b") == AnomalyDetector.calleeHash("a", "tool", "b"))
        #expect(AnomalyDetector.calleeHash("a", "tool", "b") != AnomalyDetector.calleeHash("a", "toolb", ""))
        // FNV-1a 64 of "a\0tool\0b\0" (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
        var expected: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in Array("a\u{0}tool\u{0}b\u{0}".utf8) { expected = (expected ^ UInt64(byte)) &* 0x100_0000_01b3 }
        #expect(AnomalyDetector.calleeHash("a", "tool", "b") == expected)
        #expect(AnomalyDetector(configuration: try anomalyConfiguration("max_series: 10")).seenCapacity == 40)
    }

    // MARK: incident notifications

    static func incidentAlert(_ agent: String, _ time: UInt64, peer: String? = nil, severity: AlertSeverity = .warning) -> Alert {
        Alert(rule: "anomaly/latency", severity: severity, value: .number(1), threshold: .number(1), service: agent, agent: agent,
              traceID: .zero, spanID: .zero, spanName: "x", time: time, message: "\(agent) is slow",
              anomaly: Alert.Anomaly(signal: "latency", subject: "x", baseline: .number(1), score: 5, labels: peer.map { [("peer", $0)] } ?? []))
    }

    @Test("one notification per incident, group_wait after its first alert, with every alert so far; later ones as one update per group_interval")
    func incidentNotifications() throws {
        let log = IncidentLog(window: .seconds(30), groupWait: .seconds(5), groupInterval: .seconds(60))
        let edges = [("a", "gw"), ("b", "gw"), ("c", "gw")]
        log.record([Self.incidentAlert("a", 1 * Self.second, peer: "gw")], edges: edges)
        log.record([Self.incidentAlert("b", 2 * Self.second, peer: "gw")], edges: edges)
        #expect(log.notifications(now: 5 * Self.second).isEmpty)
        log.record([Self.incidentAlert("c", 5 * Self.second, peer: "gw", severity: .critical)], edges: edges)
        let opened = log.notifications(now: 6 * Self.second)
        #expect(opened.count == 1)
        let first = try #require(opened.first?.incident)
        #expect(first.id == 1 && first.status == "opened" && first.alerts.map(\.agent) == ["a", "b", "c"] && first.probableCause == "gw")
        #expect(opened.first?.severity == .critical && opened.first?.count == 3)
        // Nothing new: nothing to send; a late alert waits for group_interval.
        #expect(log.notifications(now: 7 * Self.second).isEmpty)
        log.record([Self.incidentAlert("a", 20 * Self.second, peer: "gw")], edges: edges)
        #expect(log.notifications(now: 65 * Self.second).isEmpty)
        let update = log.notifications(now: 66 * Self.second)
        #expect(update.map { $0.incident?.status } == ["updated"])
        #expect(update.first?.incident?.alerts.map(\.agent) == ["a"] && update.first?.incident?.alertCount == 4)
        #expect(update.first?.group == "incident=1")
    }

    @Test("incidents that merge are notified as one: before either was notified, one notification; after, the notified number carries on and names the merged one")
    func mergedIncidents() throws {
        let log = IncidentLog(window: .seconds(30), groupWait: .seconds(5), groupInterval: .seconds(10))
        // a and c are apart until b, which calls both, fires.
        let edges = [("b", "a"), ("b", "c")]
        log.record([Self.incidentAlert("a", 1 * Self.second)], edges: edges)
        log.record([Self.incidentAlert("c", 2 * Self.second)], edges: edges)
        log.record([Self.incidentAlert("b", 3 * Self.second)], edges: edges)
        #expect(log.recent().count == 1)
        let one = log.notifications(now: 7 * Self.second)
        #expect(one.count == 1)
        #expect(one.first?.incident?.id == 1 && one.first?.incident?.alerts.map(\.agent) == ["a", "c", "b"])

        // Later: x is notified on its own, y opens, then w links them: x's number carries on.
        let later = IncidentLog(window: .seconds(30), groupWait: .seconds(5), groupInterval: .seconds(10))
        let links = [("w", "x"), ("w", "y")]
        later.record([Self.incidentAlert("y", 1 * Self.second)], edges: links)
        later.record([Self.incidentAlert("x", 2 * Self.second)], edges: links)
        // y's incident (1) is due first and notified; x's (2) not yet.
        #expect(later.notifications(now: 6 * Self.second).compactMap { $0.incident?.id } == [1])
        later.record([Self.incidentAlert("w", 6 * Self.second)], edges: links)
        #expect(later.recent().map(\.id) == [1])
        let update = later.notifications(now: 16 * Self.second)
        #expect(update.count == 1)
        let incident = try #require(update.first?.incident)
        #expect(incident.id == 1 && incident.status == "updated" && incident.alerts.map(\.agent) == ["x", "w"] && incident.merged.isEmpty)
        #expect(later.notifications(now: 100 * Self.second).isEmpty)
    }

    @Test("a notified incident merged into another is named in the survivor's next notification")
    func mergedNotifiedIncidents() throws {
        let log = IncidentLog(window: .seconds(30), groupWait: .seconds(1), groupInterval: .seconds(10))
        let links = [("w", "x"), ("w", "y")]
        log.record([Self.incidentAlert("x", 1 * Self.second)], edges: links)
        log.record([Self.incidentAlert("y", 2 * Self.second)], edges: links)
        #expect(log.notifications(now: 3 * Self.second).compactMap { $0.incident?.id } == [1, 2])
        log.record([Self.incidentAlert("w", 4 * Self.second)], edges: links)
        let update = log.notifications(now: 13 * Self.second)
        #expect(update.compactMap { $0.incident?.id } == [1])
        #expect(update.first?.incident?.merged == [2])
        #expect(update.first?.message.contains("incidents 2 merged into it") == true)
    }

    @Test("incidents join along the service graph's edges when the collector has one")
    func serviceGraphEdges() throws {
        let ctx = context("anomaly_detection")
        // x and y never call each other in their own client spans; the graph saw x call y.
        ServiceGraphEdges.shared(in: ctx).provide { [("x", "y")] }
        let processor = AnomalyDetectionProcessor(configuration: try anomalyConfiguration(), context: ctx, alerts: AlertLog())
        processor.incidents.record([Self.incidentAlert("x", 1 * Self.second)], edges: [], owner: "other")
        #expect(processor.incidents.recent().count == 1)
        // What the processor files goes along the graph's edges: y joins x's incident.
        processor.fileIncidents([Self.incidentAlert("y", 2 * Self.second)])
        #expect(processor.incidents.recent().count == 1)
        #expect(processor.incidents.recent().first?.agents == ["x", "y"])
    }
}
