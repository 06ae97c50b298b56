import Alerting
import Foundation
import Logging
import Pipeline
import Synchronization
import Testing
import TraceModel
@testable import Processors

func json(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

/// Keeps every log message, to count the lines a component writes.
struct CapturingLogHandler: LogHandler {
    let lines: LogLines
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        lines.messages.withLock { $0.append(message.description) }
    }
}

/// The messages a `CapturingLogHandler` kept.
final class LogLines: Sendable {
    let messages = Mutex<[String]>([])
    var logger: Logger { Logger(label: "test") { _ in CapturingLogHandler(lines: self) } }
}

@Suite("threshold triggers processor")
struct ThresholdTriggersProcessorTests {
    @Test("sinks switched off by unset variables make one log line, naming each and how to switch them on")
    func switchedOffSinksLogOnce() throws {
        // The default configuration's three sinks, with none of their variables set.
        let configuration = try triggers("""
            rules: [{ name: errors, status: error }]
            notify:
              - { webhook: "${env:AGENTTRACE_ALERT_WEBHOOK_URL:-}" }
              - { slack: "${env:SLACK_WEBHOOK_URL:-}" }
              - { pagerduty: { routing_key: "${env:PD_ROUTING_KEY:-}" } }
            """)
        let lines = LogLines()
        _ = ThresholdTriggersProcessor(configuration: configuration,
                                       context: ComponentContext(id: ComponentID("threshold_triggers"), logger: lines.logger,
                                                                 metrics: SelfMetrics()),
                                       alerts: AlertLog())
        let logged = lines.messages.withLock { $0 }
        #expect(logged.count == 1)
        for entry in ["notify[0]", "notify[1]", "notify[2]", "environment variable"] {
            #expect(logged.first?.contains(entry) == true, "\(entry) missing from \(logged)")
        }
    }

    @Test("matching spans get alert.rule; other spans pass unchanged; alerts are listed most recent first")
    func processor() throws {
        let alerts = AlertLog(capacity: 2)
        let processor = ThresholdTriggersProcessor(configuration: try triggers("""
            cooldown: 0s
            rules:
              - { name: hot, attribute: t, above: 1 }
              - { name: any_error, status: error }
            """), context: context("threshold_triggers"), alerts: alerts)
        let quiet = oneSpanBatch(agentResource("a"), attributes: [Attribute("t", 0)])
        #expect(processor.process(quiet, now: 1) == [quiet])
        #expect(alerts.total == 0)

        var both = oneSpanBatch(agentResource("a"), attributes: [Attribute("t", 5), Attribute("alert.rule", "upstream")])
        both.resourceSpans[0].scopeSpans[0].spans[0].status = SpanStatus(code: .error)
        let output = processor.process(both, now: 2)
        #expect(output[0].resourceSpans[0].scopeSpans[0].spans[0].attributes["alert.rule"] == "upstream,hot,any_error")
        _ = processor.process(oneSpanBatch(agentResource("b"), attributes: [Attribute("t", 9)]), now: 3)
        #expect(alerts.total == 3)
        #expect(alerts.recent().map(\.rule) == ["hot", "any_error"])
        #expect(alerts.recent().first?.agent == "b")
        let listed = try json(alerts.json(limit: 1))
        #expect((listed["alerts"] as? [[String: Any]])?.count == 1)
    }
}
