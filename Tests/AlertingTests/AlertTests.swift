import Foundation
import Logging
import Pipeline
import Synchronization
import Testing
import TraceModel
@testable import Alerting
import ConfigYAML

func json(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

/// `notify:` and `delivery:` read from YAML, as a component's section.
func notifications(_ yaml: String, environment: [String: String] = [:]) throws -> AlertNotifications {
    try AlertNotifications(section: try ConfigSection(try ConfigValue.parse(yaml: yaml, environment: environment), path: "processors.threshold_triggers"))
}

func context(_ id: String, metrics: SelfMetrics = SelfMetrics()) -> ComponentContext {
    ComponentContext(id: ComponentID(id), logger: Logger(label: "test"), metrics: metrics)
}

/// A sink double: records every POST and answers from a script (success once the script runs out).
final class RecordingTransport: AlertTransport {
    struct Post: Sendable {
        var url: String
        var headers: [String: String]
        var body: [UInt8]
    }

    let posts = Mutex<[Post]>([])
    let answers: Mutex<[String: [AlertDeliveryError]]>
    /// URLs whose requests never complete (a hung sink).
    let hung: Set<String>
    private let events: AsyncStream<Post>.Continuation
    /// Every post as it happens.
    let stream: AsyncStream<Post>

    init(answers: [String: [AlertDeliveryError]] = [:], hung: Set<String> = []) {
        self.answers = Mutex(answers)
        self.hung = hung
        (stream, events) = AsyncStream.makeStream(of: Post.self)
    }

    func post(url: String, headers: [String: String], body: [UInt8], timeout: Duration) async throws(AlertDeliveryError) {
        let post = Post(url: url, headers: headers, body: body)
        posts.withLock { $0.append(post) }
        events.yield(post)
        if hung.contains(url) {
            try? await Task.sleep(for: .seconds(3600))  // answers only when cancelled
        }
        if let answer = answers.withLock({ $0[url]?.isEmpty == false ? $0[url]!.removeFirst() : nil }) { throw answer }
    }

    func shutdown() async { events.finish() }
}


let sampleAlert = Alert(rule: "error_burst", severity: .critical, value: .text("error"), threshold: .text("error"),
                        service: "coordinator-main", agent: "coordinator-main", agentType: "coordinator",
                        traceID: TraceID(high: 0x0102030405060708, low: 0x090a0b0c0d0e0f10), spanID: SpanID(0xabcdef),
                        spanName: "plan <step> & act", time: 1_736_942_400_250_000_000,
                        message: "5 spans within 60s for agent.name=coordinator-main", group: "agent.name=coordinator-main",
                        count: 5, window: .seconds(60), suppressed: 2)

@Suite("alert payloads and delivery")
struct AlertTests {
    @Test("the webhook payload carries every field")
    func webhook() throws {
        let object = try json(sampleAlert.webhookJSON)
        #expect(Set(object.keys) == ["rule", "severity", "value", "threshold", "service", "agent", "agent_type", "trace_id", "span_id",
                                     "span_name", "time", "time_unix_nano", "message", "group", "count", "window_seconds", "suppressed"])
        #expect(object["trace_id"] as? String == "0102030405060708090a0b0c0d0e0f10")
        #expect(object["span_id"] as? String == "0000000000abcdef")
        #expect(object["time"] as? String == "2025-01-15T12:00:00.250Z")
        #expect(object["window_seconds"] as? Int == 60)
        #expect(object["suppressed"] as? Int == 2)
        #expect(object["span_name"] as? String == "plan <step> & act")
    }

    @Test("the Slack payload: text plus blocks within Slack's limits, with &, < and > escaped")
    func slack() throws {
        var long = sampleAlert
        long.rule = String(repeating: "r", count: 300)
        long.message = String(repeating: "m", count: 5000)
        for alert in [sampleAlert, long] {
            let object = try json(alert.slackJSON)
            #expect(Set(object.keys) == ["text", "blocks"])
            let blocks = try #require(object["blocks"] as? [[String: Any]])
            #expect(blocks.map { $0["type"] as? String } == ["header", "section", "section", "context"])
            let header = try #require(blocks[0]["text"] as? [String: Any])
            #expect(header["type"] as? String == "plain_text")
            #expect(try #require(header["text"] as? String).count <= 150)
            #expect(try #require((blocks[1]["text"] as? [String: Any])?["text"] as? String).count <= 3000)
            let fields = try #require(blocks[2]["fields"] as? [[String: Any]])
            #expect(fields.count <= 10)
            #expect(fields.allSatisfy { $0["type"] as? String == "mrkdwn" && (($0["text"] as? String)?.count ?? 9999) <= 2000 })
        }
        let fields = try #require((try json(sampleAlert.slackJSON)["blocks"] as? [[String: Any]])?[2]["fields"] as? [[String: Any]])
        #expect(fields.contains { $0["text"] as? String == "*Span*\nplan &lt;step&gt; &amp; act" })
    }

    @Test("the PagerDuty Events API v2 payload")
    func pagerDuty() throws {
        let object = try json(sampleAlert.pagerDutyJSON(routingKey: "R0UT1NG"))
        #expect(object["routing_key"] as? String == "R0UT1NG")
        #expect(object["event_action"] as? String == "trigger")
        #expect(object["dedup_key"] as? String == "agenttrace/error_burst/agent.name=coordinator-main")
        let payload = try #require(object["payload"] as? [String: Any])
        #expect(payload["summary"] as? String == "error_burst: 5 spans within 60s for agent.name=coordinator-main")
        #expect(payload["source"] as? String == "coordinator-main")
        #expect(payload["severity"] as? String == "critical")
        #expect(payload["timestamp"] as? String == "2025-01-15T12:00:00.250Z")
        #expect(payload["component"] as? String == "coordinator-main")
        #expect(payload["group"] as? String == "coordinator")
        #expect(payload["class"] as? String == "error_burst")
        #expect((payload["custom_details"] as? [String: Any])?["suppressed"] as? Int == 2)
    }

    func delivery(_ sinks: String, transport: RecordingTransport, metrics: SelfMetrics, queueSize: Int = 1000) throws -> AlertDelivery {
        var configuration = try notifications("notify: \(sinks)")
        configuration.delivery.queueSize = queueSize
        configuration.delivery.retry.initialInterval = .milliseconds(1)
        return AlertDelivery(sinks: configuration.sinks, configuration: configuration.delivery,
                             context: context("threshold_triggers", metrics: metrics), makeTransport: { transport }, sleep: { _ in })
    }

    func metric(_ metrics: SelfMetrics, _ line: String) -> Bool {
        String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n").contains { $0 == line }
    }

    @Test("each sink gets its payload; retryable failures are retried, permanent ones counted")
    func deliveryOutcomes() async throws {
        let transport = RecordingTransport(answers: [
            "http://hook/a": [.retryable("HTTP 503", retryAfter: nil)],
            "http://slack/b": [.permanent("HTTP 404: no_service")],
        ])
        let metrics = SelfMetrics()
        let delivery = try delivery("[{webhook: \"http://hook/a\"}, {slack: \"http://slack/b\"}, {pagerduty: {routing_key: k, url: \"http://pd/c\"}}]",
                                    transport: transport, metrics: metrics)
        #expect(delivery.sinkLabels == ["webhook", "slack", "pagerduty"])
        let running = Task { try await delivery.run() }
        delivery.enqueue([sampleAlert])
        var seen: [String] = []
        for await post in transport.stream {
            seen.append(post.url)
            if seen.count == 4 { break }
        }
        delivery.stop()
        try await running.value
        #expect(seen.sorted() == ["http://hook/a", "http://hook/a", "http://pd/c", "http://slack/b"])
        let bodies = transport.posts.withLock { $0 }
        #expect(try json(try #require(bodies.first { $0.url == "http://pd/c" }).body)["routing_key"] as? String == "k")
        #expect(try json(try #require(bodies.first { $0.url == "http://slack/b" }).body)["blocks"] != nil)
        #expect(metric(metrics, #"agenttrace_alerts_delivered_total{processor="threshold_triggers",sink="webhook"} 1"#))
        #expect(metric(metrics, #"agenttrace_alerts_delivery_retries_total{processor="threshold_triggers",sink="webhook"} 1"#))
        #expect(metric(metrics, #"agenttrace_alerts_delivery_failed_total{processor="threshold_triggers",sink="slack"} 1"#))
        #expect(metric(metrics, #"agenttrace_alerts_delivered_total{processor="threshold_triggers",sink="pagerduty"} 1"#))
    }

    @Test("a hung sink delays only itself; a full queue drops and counts, never waits")
    func hungSink() async throws {
        let transport = RecordingTransport(hung: ["http://dead/"])
        let metrics = SelfMetrics()
        let delivery = try delivery("[{webhook: \"http://dead/\"}, {webhook: \"http://alive/\"}]", transport: transport, metrics: metrics,
                                    queueSize: 2)
        let running = Task { try await delivery.run() }
        delivery.enqueue([sampleAlert])
        var first: Set<String> = []
        for await post in transport.stream {
            first.insert(post.url)
            if first.count == 2 { break }
        }
        // The dead sink holds that alert in flight; its queue takes two more and drops the third.
        delivery.enqueue([sampleAlert, sampleAlert, sampleAlert])
        #expect(metric(metrics, #"agenttrace_alerts_dropped_total{processor="threshold_triggers",sink="webhook"} 1"#))
        var alive = 0
        for await post in transport.stream where post.url == "http://alive/" {
            alive += 1
            if alive == 2 { break }
        }
        #expect(alive == 2)
        running.cancel()
    }
}
