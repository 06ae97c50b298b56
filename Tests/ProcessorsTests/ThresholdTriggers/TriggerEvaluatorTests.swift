import Alerting
import Foundation
import Pipeline
import Testing
import TraceModel
@testable import Processors

let second: UInt64 = 1_000_000_000

func triggers(_ yaml: String, environment: [String: String] = [:]) throws -> ThresholdTriggersProcessor.Configuration {
    try ThresholdTriggersProcessor.Configuration(section: section(yaml, path: "processors.threshold_triggers", environment: environment))
}

func evaluator(_ yaml: String, metrics: SelfMetrics = SelfMetrics()) throws -> TriggerEvaluator {
    TriggerEvaluator(configuration: try triggers(yaml)) { rule in
        TriggerEvaluator.RuleMetrics(
            matched: metrics.counter("matched", help: "", labels: [("rule", rule)]),
            fired: metrics.counter("agenttrace_triggers_fired_total", help: "", labels: [("rule", rule)]),
            suppressed: metrics.counter("agenttrace_triggers_suppressed_total", help: "", labels: [("rule", rule)]),
            droppedGroups: metrics.counter("dropped", help: "", labels: [("rule", rule)]))
    }
}

func agentResource(_ name: String, type: String? = nil) -> Resource {
    var attributes = [Attribute("service.name", .string(name)), Attribute("agent.name", .string(name))]
    if let type { attributes.append(Attribute("agent.type", .string(type))) }
    return Resource(attributes: attributes)
}

func span(_ id: UInt64, name: String = "step", kind: SpanKind = .internal, seconds: Double = 0.1, error: Bool = false,
          attributes: [Attribute] = []) -> Span {
    Span(traceID: TraceID(high: 7, low: id), spanID: SpanID(id), name: name, kind: kind, startTimeUnixNano: 1_000 * second,
         endTimeUnixNano: 1_000 * second + UInt64(seconds * 1e9), attributes: attributes,
         status: SpanStatus(code: error ? .error : .unset))
}

extension TriggerEvaluator {
    /// Evaluates one span of `resource`; returns the rules met and the alerts fired.
    mutating func run(_ span: Span, _ resource: Resource, at now: UInt64) -> (mask: UInt64, alerts: [Alert]) {
        begin(resource: resource)
        var fired: [Alert] = []
        let mask = evaluate(span, resource: resource, now: now, fired: &fired)
        return (mask, fired)
    }
}

@Suite("threshold trigger rules")
struct TriggerEvaluatorTests {
    static let issueRules = """
        cooldown: 300s
        rules:
          - { name: high_integration_score, severity: warning, attribute: intelligence.integration_score, above: 0.8 }
          - { name: slow_llm_call, severity: warning, duration_above: 30s, where: { gen_ai.operation.name: chat } }
          - { name: error_burst, severity: critical, status: error, count: 5, window: 60s, group_by: [agent.name] }
        """

    @Test("attribute above: span attribute, else the resource's; value, threshold and message in the alert")
    func above() throws {
        var rules = try evaluator(Self.issueRules)
        let agent = agentResource("research-agent", type: "research")
        let (mask, alerts) = rules.run(span(1, name: "score", attributes: [Attribute("intelligence.integration_score", 0.93)]), agent, at: 5 * second)
        #expect(mask == 0b001)
        let alert = try #require(alerts.first)
        #expect(alert.rule == "high_integration_score")
        #expect(alert.severity == .warning)
        #expect(alert.value == .number(0.93))
        #expect(alert.threshold == .number(0.8))
        #expect(alert.service == "research-agent")
        #expect(alert.agent == "research-agent")
        #expect(alert.agentType == "research")
        #expect(alert.spanID == SpanID(1))
        #expect(alert.time == 5 * second)
        #expect(alert.message == "span \"score\" of research-agent intelligence.integration_score is 0.93, above 0.8")
        #expect(rules.run(span(2, attributes: [Attribute("intelligence.integration_score", 0.8)]), agent, at: 6 * second).mask == 0)
        #expect(rules.run(span(3, attributes: [Attribute("intelligence.integration_score", "high")]), agent, at: 6 * second).mask == 0)
        let withResource = Resource(attributes: agent.attributes + [Attribute("intelligence.integration_score", 1)])
        #expect(rules.run(span(4), withResource, at: 7 * second).mask == 0b001)
    }

    @Test("duration_above with a where: filter on the span's attribute")
    func slowCall() throws {
        var rules = try evaluator(Self.issueRules)
        let agent = agentResource("writer")
        let chat = [Attribute("gen_ai.operation.name", "chat")]
        let (mask, alerts) = rules.run(span(1, name: "chat gpt-4o", seconds: 31, attributes: chat), agent, at: second)
        #expect(mask == 0b010)
        #expect(alerts.first?.value == .number(31))
        #expect(alerts.first?.threshold == .number(30))
        #expect(rules.run(span(2, seconds: 31, attributes: [Attribute("gen_ai.operation.name", "embeddings")]), agent, at: second).mask == 0)
        #expect(rules.run(span(3, seconds: 29, attributes: chat), agent, at: second).mask == 0)
    }

    @Test("count within window per group: the fifth error of one agent in a minute fires; another agent counts apart")
    func errorBurst() throws {
        var rules = try evaluator(Self.issueRules)
        let a = agentResource("coordinator-main")
        let b = agentResource("research-agent")
        for index in 0..<4 {
            #expect(rules.run(span(UInt64(index), error: true), a, at: UInt64(index) * 10 * second).alerts.isEmpty)
            #expect(rules.run(span(UInt64(100 + index), error: true), b, at: UInt64(index) * 10 * second).alerts.isEmpty)
        }
        let alert = try #require(rules.run(span(9, error: true), a, at: 45 * second).alerts.first)
        #expect(alert.rule == "error_burst")
        #expect(alert.severity == .critical)
        #expect(alert.group == "agent.name=coordinator-main")
        #expect(alert.count == 5)
        #expect(alert.window == .seconds(60))
        #expect(alert.value == .text("error"))
        // b's fifth error comes 70 s after its first: only four in any minute.
        #expect(rules.run(span(200, error: true), b, at: 70 * second).alerts.isEmpty)
    }

    @Test("cooldown per rule and group; the next alert reports how many were suppressed")
    func cooldown() throws {
        var rules = try evaluator("""
            cooldown: 10s
            rules: [{ name: hot, attribute: t, above: 1, group_by: [agent.name] }]
            """)
        let hot = [Attribute("t", 2)]
        let a = agentResource("a")
        #expect(rules.run(span(1, attributes: hot), a, at: 0).alerts.count == 1)
        #expect(rules.run(span(2, attributes: hot), a, at: 3 * second).alerts.isEmpty)
        #expect(rules.run(span(3, attributes: hot), a, at: 9 * second).alerts.isEmpty)
        #expect(rules.run(span(4, attributes: hot), agentResource("b"), at: 9 * second).alerts.count == 1)
        let next = try #require(rules.run(span(5, attributes: hot), a, at: 10 * second).alerts.first)
        #expect(next.suppressed == 2)
        #expect(rules.run(span(6, attributes: hot), a, at: 21 * second).alerts.first?.suppressed == 0)
    }

    @Test("equals compares text, numbers and booleans; where: matches span.kind and resource attributes")
    func equalsAndWhere() throws {
        var rules = try evaluator("""
            rules:
              - { name: refused, attribute: outcome, equals: refused, where: { span.kind: [client, producer], agent.type: safety } }
              - { name: three, attribute: retries, equals: 3, cooldown: 0s }
              - { name: flagged, attribute: flagged, equals: "true", cooldown: 0s }
            """)
        let safety = agentResource("safety-1", type: "safety")
        #expect(rules.run(span(1, kind: .client, attributes: [Attribute("outcome", "refused")]), safety, at: 0).mask == 0b001)
        #expect(rules.run(span(2, kind: .server, attributes: [Attribute("outcome", "refused")]), safety, at: 0).mask == 0)
        #expect(rules.run(span(3, kind: .client, attributes: [Attribute("outcome", "refused")]), agentResource("x", type: "writer"), at: 0).mask == 0)
        #expect(rules.run(span(4, attributes: [Attribute("retries", 3)]), safety, at: 0).alerts.first?.threshold == .number(3))
        #expect(rules.run(span(5, attributes: [Attribute("retries", 3.0)]), safety, at: 0).mask == 0b010)
        #expect(rules.run(span(6, attributes: [Attribute("retries", "3")]), safety, at: 0).mask == 0b010)
        #expect(rules.run(span(6, attributes: [Attribute("retries", 4)]), safety, at: 0).mask == 0)
        #expect(rules.run(span(7, attributes: [Attribute("flagged", true)]), safety, at: 0).alerts.first?.value == .flag(true))
    }

    @Test("max_groups bounds the groups; matches of new groups are dropped and counted; idle groups are swept")
    func maxGroups() throws {
        var rules = try evaluator("""
            max_groups: 2
            cooldown: 5s
            rules: [{ name: any_error, status: error, group_by: [agent.name] }]
            """)
        #expect(rules.run(span(1, error: true), agentResource("a"), at: 0).alerts.count == 1)
        #expect(rules.run(span(2, error: true), agentResource("b"), at: 0).alerts.count == 1)
        #expect(rules.run(span(3, error: true), agentResource("c"), at: 0).alerts.isEmpty)
        #expect(rules.droppedMatches == 1)
        rules.sweep(now: 4 * second)
        #expect(rules.groups.count == 2)
        rules.sweep(now: 60 * second)
        #expect(rules.groups.isEmpty)
        #expect(rules.run(span(4, error: true), agentResource("c"), at: 61 * second).alerts.count == 1)
    }

    @Test("rules from the issue's configuration shape, sinks with ${env:…}, delivery settings")
    func configuration() throws {
        let configuration = try triggers(Self.issueRules + """

            notify:
              - { webhook: "http://alerts.internal:9999/hook" }
              - { slack: "${env:SLACK_WEBHOOK_URL}" }
              - { pagerduty: { routing_key: "${env:PD_KEY}" } }
              - { webhook: { url: "http://other/hook", headers: { x-token: s3cret } } }
            delivery: { queue_size: 10, timeout: 2s, retry_on_failure: { max_elapsed_time: 30s } }
            """, environment: ["SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X", "PD_KEY": "R0UT1NG"])
        #expect(configuration.rules.map(\.name) == ["high_integration_score", "slow_llm_call", "error_burst"])
        #expect(configuration.rules[2].count == 5)
        #expect(configuration.rules[2].groupBy == ["agent.name"])
        #expect(configuration.notify == [
            .webhook(url: "http://alerts.internal:9999/hook", headers: [:]),
            .slack(url: "https://hooks.slack.com/services/T/B/X"),
            .pagerDuty(routingKey: "R0UT1NG", url: "https://events.pagerduty.com/v2/enqueue"),
            .webhook(url: "http://other/hook", headers: ["x-token": "s3cret"]),
        ])
        #expect(configuration.delivery.queueSize == 10)
        #expect(configuration.delivery.retry.initialInterval == .seconds(1))
        #expect(configuration.delivery.retry.maxElapsedTime == .seconds(30))
        let unset = try triggers("notify: [{ slack: \"${env:NOT_SET}\" }]")
        #expect(unset.notify.isEmpty)
        #expect(unset.disabledSinks == ["processors.threshold_triggers.notify[0]"])
    }

    @Test("configuration mistakes name the key", arguments: [
        ("rules: [{ attribute: x, above: 1 }]", "processors.threshold_triggers.rules[0].name"),
        ("rules: [{ name: a, severity: urgent, status: error }]", "processors.threshold_triggers.rules[0].severity"),
        ("rules: [{ name: a, attribute: x }]", "processors.threshold_triggers.rules[0].attribute"),
        ("rules: [{ name: a, above: 1 }]", "processors.threshold_triggers.rules[0].above"),
        ("rules: [{ name: a }]", "processors.threshold_triggers.rules[0]"),
        ("rules: [{ name: a, status: error, duration_above: 1s }]", "processors.threshold_triggers.rules[0]"),
        ("rules: [{ name: a, status: broken }]", "processors.threshold_triggers.rules[0].status"),
        ("rules: [{ name: a, status: error, where: { span.kind: sideways } }]", "processors.threshold_triggers.rules[0].where.span.kind"),
        ("rules: [{ name: a, status: error, count: 0 }]", "processors.threshold_triggers.rules[0].count"),
        ("rules: [{ name: a, status: error, colour: red }]", "processors.threshold_triggers.rules[0].colour"),
        ("rules: [{ name: a, status: error }, { name: a, status: ok }]", "processors.threshold_triggers.rules[1].name"),
        ("notify: [{ email: x@y }]", "processors.threshold_triggers.notify[0].email"),
        ("notify: [{ webhook: ftp://x }]", "processors.threshold_triggers.notify[0].webhook"),
        ("delivery: { queue_size: 0 }", "processors.threshold_triggers.delivery.queue_size"),
    ])
    func mistakes(yaml: String, key: String) {
        #expect(throws: ConfigurationError.self) {
            do {
                _ = try triggers(yaml)
            } catch let error as ConfigurationError {
                #expect(error.key == key, "\(error)")
                throw error
            }
        }
    }
}

extension TriggerEvaluatorTests {
    @Test("status: ok, unset and error each match spans of that status only")
    func statusMatches() throws {
        var rules = try evaluator("""
            rules:
              - { name: ok_spans, status: ok }
              - { name: unset_spans, status: unset }
              - { name: error_spans, status: error }
            """)
        let agent = agentResource("writer")
        for (index, (code, mask)) in [(SpanStatus.Code.ok, UInt64(0b001)), (.unset, 0b010), (.error, 0b100)].enumerated() {
            var matched = span(UInt64(index + 1))
            matched.status = SpanStatus(code: code)
            #expect(rules.run(matched, agent, at: UInt64(index + 1) * second).mask == mask, "status \(code)")
        }
    }

    @Test("64 rules are accepted; a 65th is refused naming rules")
    func ruleLimit() throws {
        func rules(_ count: Int) -> String {
            "rules:\n" + (0..<count).map { "  - { name: r\($0), status: error }" }.joined(separator: "\n")
        }
        #expect(try triggers(rules(64)).rules.count == 64)
        #expect(throws: ConfigurationError.self) {
            do {
                _ = try triggers(rules(65))
            } catch let error as ConfigurationError {
                #expect(error.key == "processors.threshold_triggers.rules", "\(error)")
                #expect("\(error)".contains("64"), "\(error)")
                throw error
            }
        }
    }
}
