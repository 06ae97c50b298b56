import Alerting
import Logging
import Pipeline
import Prometheus
import ServiceLifecycle
import Synchronization
import TraceModel

/// `threshold_triggers`: evaluates rules on every span as it arrives and fires alerts — seconds before any
/// tail-sampling decision. A span that meets a rule's condition and filters gets `alert.rule=<name>`
/// (names joined by commas when several), so tail sampling can keep its trace; batches otherwise pass
/// unchanged. Fired alerts go to `/api/alerts` (through the collector's `AlertLog`) and, asynchronously, to the
/// `notify:` sinks (through `AlertDelivery`).
public final class ThresholdTriggersProcessor: SpanProcessor, Service {
    /// The attribute set on spans that meet a rule.
    public static let ruleAttribute = "alert.rule"
    /// How often idle groups are forgotten.
    static let sweepInterval: UInt64 = 1_000_000_000
    /// How often dropped matches are summarised in the log.
    static let logInterval: UInt64 = 60_000_000_000

    private struct State {
        var evaluator: TriggerEvaluator
        var nextSweep: UInt64 = 0
        var nextLog: UInt64 = 0
        var loggedDrops = 0
    }

    private let state: Mutex<State>
    private let alerts: AlertLog
    /// Each rule's fired-alerts counter, by rule name.
    private let firedCounters: [String: Counter]
    /// The delivery service, when the processor has sinks.
    public let delivery: AlertDelivery?
    private let logger: Logger

    /// Builds the processor. Alerts are recorded in `alerts`, by default the collector's shared `AlertLog`.
    public init(configuration: Configuration, context: ComponentContext, alerts: AlertLog? = nil,
                makeTransport: (@Sendable () -> any AlertTransport)? = nil) {
        let metrics = context.metrics
        let evaluator = TriggerEvaluator(configuration: configuration) { rule in
            let labels = [("rule", rule)]
            return TriggerEvaluator.RuleMetrics(
                matched: metrics.counter("agenttrace_triggers_matched_spans_total",
                                         help: "Spans that met a trigger rule's condition and filters.", labels: labels),
                fired: metrics.counter("agenttrace_triggers_fired_total", help: "Alerts a trigger rule fired.", labels: labels),
                suppressed: metrics.counter("agenttrace_triggers_suppressed_total",
                                            help: "Alerts a trigger rule held back inside its cooldown.", labels: labels),
                droppedGroups: metrics.counter("agenttrace_triggers_dropped_matches_total",
                                               help: "Matches not tracked because max_groups groups were held.", labels: labels))
        }
        firedCounters = Dictionary(evaluator.rules.map { ($0.name, $0.metrics.fired) }, uniquingKeysWith: { first, _ in first })
        state = Mutex(State(evaluator: evaluator))
        self.alerts = alerts ?? AlertLog.shared(in: context)
        logger = context.logger
        delivery = AlertDelivery.forNotify(configuration.notify, matches: configuration.notifyMatches, disabledSinks: configuration.disabledSinks,
                                           configuration: configuration.delivery, context: context, makeTransport: makeTransport)
    }

    /// Runs the alert delivery (sends until graceful shutdown, then drains what is queued); without
    /// sinks there is nothing to run, so it only waits for the shutdown.
    public func run() async throws {
        if let delivery {
            try await delivery.run()
        } else {
            try? await gracefulShutdown()
        }
    }

    /// Nil: every span passes on in the call that brought it.
    public var oldestHeldArrival: UInt64? { nil }

    public func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        var output = batch
        var fired: [Alert] = []
        state.withLock { state in
            for r in output.resourceSpans.indices {
                let resource = output.resourceSpans[r].resource
                state.evaluator.begin(resource: resource)
                for s in output.resourceSpans[r].scopeSpans.indices {
                    // Read the spans in place; mark the matching ones afterwards, so a scope without a match is
                    // never copied.
                    var marks: [(span: Int, mask: UInt64)] = []
                    do {
                        let spans = output.resourceSpans[r].scopeSpans[s].spans
                        for k in spans.indices {
                            let mask = state.evaluator.evaluate(spans, k, resource: resource, now: now, fired: &fired)
                            if mask != 0 { marks.append((k, mask)) }
                        }
                    }
                    for (k, mask) in marks {
                        mark(&output.resourceSpans[r].scopeSpans[s].spans[k].attributes, mask, state.evaluator)
                    }
                }
            }
        }
        if !fired.isEmpty {
            // Counted after they are in the log: whoever reads the counter finds the alerts at /api/alerts.
            alerts.record(fired)
            for alert in fired { firedCounters[alert.rule]?.increment() }
            delivery?.enqueue(fired)
        }
        return [output]
    }

    /// Sets `alert.rule` to the names of the rules in `mask`, after any names already there.
    private func mark(_ attributes: inout [Attribute], _ mask: UInt64, _ evaluator: TriggerEvaluator) {
        var names = evaluator.rules.indices.filter { mask & (1 << UInt64($0)) != 0 }.map { evaluator.rules[$0].name }
        if let index = attributes.firstIndex(where: { $0.key == Self.ruleAttribute }) {
            if let existing = attributes[index].value.stringValue, !existing.isEmpty { names.insert(existing, at: 0) }
            attributes[index].value = .string(names.joined(separator: ","))
        } else {
            attributes.append(Attribute(Self.ruleAttribute, .string(names.joined(separator: ","))))
        }
    }

    /// Forgets idle groups every second and summarises dropped matches once a minute.
    public func tick(now: UInt64) -> [SpanBatch] {
        let drops: Int? = state.withLock { state in
            if now >= state.nextSweep {
                state.evaluator.sweep(now: now)
                state.nextSweep = now &+ Self.sweepInterval
            }
            guard now >= state.nextLog, state.evaluator.droppedMatches > state.loggedDrops else { return nil }
            defer {
                state.loggedDrops = state.evaluator.droppedMatches
                state.nextLog = now &+ Self.logInterval
            }
            return state.evaluator.droppedMatches - state.loggedDrops
        }
        if let drops {
            logger.warning("trigger matches dropped: max_groups groups are held", metadata: ["matches": "\(drops)"])
        }
        return []
    }

    /// Rule groups held now.
    public var groupCount: Int { state.withLock { $0.evaluator.groups.count } }
}

/// Builds `threshold_triggers` processors.
public struct ThresholdTriggersProcessorFactory: ProcessorFactory {
    public let type = "threshold_triggers"

    public init() {}

    public func makeProcessor(section: ConfigSection, context: ComponentContext) throws -> any SpanProcessor {
        ThresholdTriggersProcessor(configuration: try ThresholdTriggersProcessor.Configuration(section: section), context: context)
    }
}
