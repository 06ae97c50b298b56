import Foundation
import Pipeline
import Testing
import TraceModel
@testable import Alerting

@Suite("notify match: routing")
struct AlertRoutingTests {
    static func anomaly(_ signal: String, agent: String, type: String?, severity: AlertSeverity, peer: String? = nil) -> Alert {
        Alert(rule: "anomaly/\(signal)", severity: severity, value: .number(1), threshold: .number(1), service: agent, agent: agent,
              agentType: type, traceID: .zero, spanID: .zero, spanName: "x", time: 1, message: "m",
              anomaly: Alert.Anomaly(signal: signal, subject: "", baseline: .number(1), score: 4,
                                     labels: peer.map { [("peer", $0)] } ?? []))
    }

    @Test("each key given must hold; entries without match get everything")
    func accepts() throws {
        let configuration = try notifications("""
            notify:
              - { pagerduty: { routing_key: k, url: "http://pd/" }, match: { severity: critical } }
              - { webhook: "http://safety/", match: { agent_type: safety } }
              - { slack: "http://slack/" }
              - { webhook: "http://llm/", match: { signal: [latency, tokens], labels: { peer: llm-gateway } } }
              - { webhook: "http://rules/", match: { rule: error_burst, agent: [coordinator-main] } }
            """)
        #expect(configuration.sinks.count == 5)
        #expect(configuration.matches[2] == nil)
        let critical = Self.anomaly("errors", agent: "a", type: "worker", severity: .critical)
        let safety = Self.anomaly("loop", agent: "guard", type: "safety", severity: .warning)
        let gateway = Self.anomaly("latency", agent: "b", type: "worker", severity: .warning, peer: "llm-gateway")
        func routed(_ alert: Alert) -> [Int] { configuration.matches.indices.filter { configuration.matches[$0]?.accepts(alert) ?? true } }
        #expect(routed(critical) == [0, 2])
        #expect(routed(safety) == [1, 2])
        #expect(routed(gateway) == [2, 3])
        // A threshold alert: rule and agent match; its group_by values are labels; no signal.
        #expect(routed(sampleAlert) == [0, 2, 4])
        var byLabel = AlertMatch()
        byLabel.labels = [("agent.name", ["coordinator-main"])]
        #expect(byLabel.accepts(sampleAlert))
    }

    @Test("match mistakes name the key", arguments: [
        ("notify: [{ webhook: \"http://a/\", match: { severity: loud } }]", "processors.threshold_triggers.notify[0].match.severity"),
        ("notify: [{ webhook: \"http://a/\", match: { team: x } }]", "processors.threshold_triggers.notify[0].match.team"),
    ])
    func mistakes(yaml: String, key: String) {
        do {
            _ = try notifications(yaml)
            Issue.record("accepted \(yaml)")
        } catch {
            #expect("\(error)".contains(key), "\(error)")
        }
    }

    @Test("delivery sends each alert to exactly the sinks whose match accepts it")
    func delivery() async throws {
        let transport = RecordingTransport()
        let configuration = try notifications("""
            notify:
              - { webhook: "http://critical/", match: { severity: critical } }
              - { webhook: "http://all/" }
            """)
        let delivery = AlertDelivery(sinks: configuration.sinks, matches: configuration.matches, configuration: configuration.delivery,
                                     context: context("anomaly_detection"), makeTransport: { transport }, sleep: { _ in })
        let running = Task { try await delivery.run() }
        delivery.enqueue([Self.anomaly("errors", agent: "a", type: nil, severity: .critical),
                          Self.anomaly("latency", agent: "b", type: nil, severity: .warning)])
        var seen: [String] = []
        for await post in transport.stream {
            seen.append("\(post.url) \(try json(post.body)["agent"] as? String ?? "")")
            if seen.count == 3 { break }
        }
        delivery.stop()
        try await running.value
        #expect(seen.sorted() == ["http://all/ a", "http://all/ b", "http://critical/ a"])
        #expect(transport.posts.withLock { $0.count } == 3)
    }

    @Test("an incident notification reaches each sink once, with the alerts its match accepts; none when it accepts none")
    func incidentNotification() async throws {
        let transport = RecordingTransport()
        let configuration = try notifications("""
            notify:
              - { webhook: "http://critical/", match: { severity: critical } }
              - { webhook: "http://all/" }
              - { webhook: "http://safety/", match: { agent_type: safety } }
            """)
        let delivery = AlertDelivery(sinks: configuration.sinks, matches: configuration.matches, configuration: configuration.delivery,
                                     context: context("anomaly_detection"), makeTransport: { transport }, sleep: { _ in })
        let running = Task { try await delivery.run() }
        let alerts = [Self.anomaly("latency", agent: "a", type: "worker", severity: .warning, peer: "gw"),
                      Self.anomaly("errors", agent: "b", type: "worker", severity: .critical, peer: "gw"),
                      Self.anomaly("latency", agent: "c", type: "worker", severity: .warning, peer: "gw")]
        let notification = try #require(Alert.incidentNotification(Alert.Incident(
            id: 7, status: "opened", agents: ["a", "b", "c"], probableCause: "gw", start: 1, lastUpdate: 1, alertCount: 3, merged: [],
            alerts: alerts)))
        // The most severe alert leads; the severity is the highest; the group is the incident's.
        #expect(notification.severity == .critical && notification.agent == "b" && notification.group == "incident=7")
        #expect(notification.dedupKey == "agenttrace/incident/7")
        delivery.enqueue([notification])
        var seen: [String: [String: Any]] = [:]
        for await post in transport.stream {
            seen[post.url] = try json(post.body)
            if seen.count == 2 { break }
        }
        delivery.stop()
        try await running.value
        #expect(transport.posts.withLock { $0.count } == 2)
        let all = try #require(seen["http://all/"]?["incident"] as? [String: Any])
        #expect((all["alerts"] as? [[String: Any]])?.compactMap { $0["agent"] as? String } == ["a", "b", "c"])
        #expect(all["id"] as? Int == 7 && all["status"] as? String == "opened" && all["probable_cause"] as? String == "gw")
        #expect((seen["http://all/"]?["message"] as? String)?.hasPrefix("Incident 7: 3 anomalies on a, b, c; probable cause gw.") == true)
        let critical = try #require(seen["http://critical/"])
        #expect(critical["severity"] as? String == "critical" && critical["count"] as? Int == 1)
        #expect(((critical["incident"] as? [String: Any])?["alerts"] as? [[String: Any]])?.compactMap { $0["agent"] as? String } == ["b"])
    }
}
