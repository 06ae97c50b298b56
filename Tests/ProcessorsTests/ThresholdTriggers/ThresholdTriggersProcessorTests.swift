import Alerting
import Foundation
import Pipeline
import Testing
import TraceModel
@testable import Processors

func json(_ bytes: [UInt8]) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
}

@Suite("threshold triggers processor")
struct ThresholdTriggersProcessorTests {
    @Test("matching spans get alert.rule; other spans pass unchanged; alerts are listed most recent first")
    func processor() throws {
        let alerts = TriggeredAlerts(capacity: 2)
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
