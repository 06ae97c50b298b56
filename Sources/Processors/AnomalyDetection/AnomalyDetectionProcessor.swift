import Alerting
import Logging
import Pipeline
import Prometheus
import ServiceLifecycle
import Synchronization
import TraceModel

/// `anomaly_detection`: learns per-agent baselines from the spans flowing through (latency, errors,
/// tokens, silence, loops, new interactions) and fires alerts when an agent departs from its own normal —
/// no thresholds to set. Batches pass on unchanged except that the spans of an anomaly get
/// `anomaly.signal=<signal>` (several joined by commas), so tail sampling can keep their traces. Alerts go
/// to `/api/alerts` (the collector's `AlertLog`) and, grouped along the service graph's edges, into incidents
/// (`/api/incidents`); the `notify:` sinks (`AlertDelivery`) get one notification per incident, sent from `tick`.
///
/// A `Service` for its alert delivery. Time-driven signals (silence) are judged in `tick(now:)`, which the
/// pipeline calls every 50 ms with the wall clock and `replay` with the recording's clock, so an agent that
/// stops sending is reported without waiting for another span, and replay gives the same alerts every run.
public final class AnomalyDetectionProcessor: SpanProcessor, Service {
    /// The attribute set on the spans of an anomaly.
    public static let signalAttribute = "anomaly.signal"
    /// How often evictions are summarised in the log.
    static let logInterval: UInt64 = 60_000_000_000

    private struct State {
        var detector: AnomalyDetector
        var nextLog: UInt64 = 0
        var loggedEvictions = 0
        /// What the counters already show.
        var countedEvictions = 0
        var countedDroppedTraces = 0
        /// The latest clock the pipeline gave (for the notifications sent at shutdown).
        var now: UInt64 = 0
    }

    private struct Metrics {
        let fired: [AnomalyDetector.Signal: Counter]
        let suppressed: [AnomalyDetector.Signal: Counter]
        let evictions: Counter
        let droppedTraces: Counter
    }

    private let state: Mutex<State>
    private let metrics: Metrics
    private let alerts: AlertLog
    /// Groups alerts into incidents and serves `/api/incidents`.
    public let incidents: IncidentLog
    /// The delivery service, when the processor has sinks.
    public let delivery: AlertDelivery?
    /// The service graph's edges, when the collector has a `service_graph`.
    private let graphEdges: ServiceGraphEdges
    /// This processor's id: it notifies the incidents its alerts open.
    private let owner: String
    private let logger: Logger

    /// Builds the processor. Alerts are recorded in `alerts`, by default the collector's shared `AlertLog`.
    public init(configuration: Configuration, context: ComponentContext, alerts: AlertLog? = nil,
                makeTransport: (@Sendable () -> any AlertTransport)? = nil) {
        let selfMetrics = context.metrics
        let processorLabel = ("processor", context.id.description)
        var fired: [AnomalyDetector.Signal: Counter] = [:]
        var suppressed: [AnomalyDetector.Signal: Counter] = [:]
        for signal in AnomalyDetector.Signal.allCases {
            let labels = [processorLabel, ("signal", signal.rawValue)]
            fired[signal] = selfMetrics.counter("agenttrace_anomaly_alerts_total", help: "Anomaly alerts fired, per signal.", labels: labels)
            suppressed[signal] = selfMetrics.counter("agenttrace_anomaly_suppressed_total",
                                                     help: "Anomaly alerts held back inside their cooldown, per signal.", labels: labels)
        }
        metrics = Metrics(
            fired: fired, suppressed: suppressed,
            evictions: selfMetrics.counter("agenttrace_anomaly_evictions_total",
                                           help: "Series and agents forgotten because max_series were held (least recently seen first).",
                                           labels: [processorLabel]),
            droppedTraces: selfMetrics.counter("agenttrace_anomaly_dropped_traces_total",
                                               help: "Running traces no longer followed for loops because max_traces were held.",
                                               labels: [processorLabel]))
        state = Mutex(State(detector: AnomalyDetector(configuration: configuration)))
        self.alerts = alerts ?? AlertLog.shared(in: context)
        incidents = IncidentLog.shared(in: context, window: configuration.incidentWindow, groupWait: configuration.incidentGroupWait,
                                       groupInterval: configuration.incidentGroupInterval)
        graphEdges = ServiceGraphEdges.shared(in: context)
        owner = context.id.description
        logger = context.logger
        delivery = AlertDelivery.forNotify(configuration.notify, matches: configuration.notifyMatches, disabledSinks: configuration.disabledSinks,
                                           configuration: configuration.delivery, context: context, makeTransport: makeTransport)
        registerGauges(selfMetrics, processor: context.id.description)
    }

    /// Samples the series held and the learned baselines into gauges before every scrape.
    private func registerGauges(_ selfMetrics: SelfMetrics, processor: String) {
        let seriesGauge = selfMetrics.gauge("agenttrace_anomaly_series", help: "Series and agents the anomaly detector holds.",
                                            labels: [("processor", processor)])
        let tracesGauge = selfMetrics.gauge("agenttrace_anomaly_traces", help: "Running traces followed for loops.",
                                            labels: [("processor", processor)])
        selfMetrics.onScrape { [weak self] in
            guard let self else { return }
            let (held, traces, baselines) = state.withLock { state in
                (state.detector.seriesCount, state.detector.traces.count, state.detector.baselines(limit: 1000))
            }
            seriesGauge.set(Double(held))
            tracesGauge.set(Double(traces))
            for (agent, signal, value) in baselines {
                selfMetrics.gauge("agenttrace_anomaly_baseline",
                                  help: "The learned typical value per agent and signal: latency and silence in seconds (silence: the "
                                      + "95th-percentile gap), errors as a share, tokens per rate window, loop as spans per trace.",
                                  labels: [("processor", processor), ("agent", agent), ("signal", signal)]).set(value)
            }
        }
    }

    /// Runs the alert delivery; without sinks it only waits for the shutdown.
    public func run() async throws {
        if let delivery {
            try await delivery.run()
        } else {
            try? await gracefulShutdown()
        }
    }

    public func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        var output = batch
        var fired: [AnomalyDetector.Fired] = []
        state.withLock { state in
            state.now = max(state.now, now)
            for r in output.resourceSpans.indices {
                let resource = output.resourceSpans[r].resource
                for s in output.resourceSpans[r].scopeSpans.indices {
                    // Read in place; mark afterwards, so a scope without anomalies is never copied.
                    let marks = state.detector.observe(output.resourceSpans[r].scopeSpans[s].spans, resource: resource, now: now, fired: &fired)
                    for (k, signals) in marks {
                        Self.mark(&output.resourceSpans[r].scopeSpans[s].spans[k].attributes, signals)
                    }
                }
            }
        }
        publish(fired)
        return [output]
    }

    /// Judges silence, finishes idle traces, closes rate windows, and sends the incident notifications due.
    public func tick(now: UInt64) -> [SpanBatch] {
        var fired: [AnomalyDetector.Fired] = []
        let evicted: Int? = state.withLock { state in
            state.now = max(state.now, now)
            state.detector.tick(now: now, fired: &fired)
            guard now >= state.nextLog, state.detector.evictions > state.loggedEvictions else { return nil }
            defer {
                state.loggedEvictions = state.detector.evictions
                state.nextLog = now &+ Self.logInterval
            }
            return state.detector.evictions - state.loggedEvictions
        }
        publish(fired)
        let due = incidents.notifications(now: now, owner: owner)
        if !due.isEmpty { delivery?.enqueue(due) }
        if let evicted {
            logger.warning("anomaly series evicted: max_series series are held", metadata: ["series": "\(evicted)"])
        }
        return []
    }

    private func publish(_ fired: [AnomalyDetector.Fired]) {
        let (suppressed, evictions, dropped, edges) = state.withLock { state in
            defer {
                state.detector.suppressedSinceRead = [:]
                state.countedEvictions = state.detector.evictions
                state.countedDroppedTraces = state.detector.droppedTraces
            }
            return (state.detector.suppressedSinceRead, state.detector.evictions - state.countedEvictions,
                    state.detector.droppedTraces - state.countedDroppedTraces, fired.isEmpty ? [] : state.detector.edges)
        }
        for (signal, count) in suppressed { metrics.suppressed[signal]?.increment(by: Int64(count)) }
        if evictions > 0 { metrics.evictions.increment(by: Int64(evictions)) }
        if dropped > 0 { metrics.droppedTraces.increment(by: Int64(dropped)) }
        guard !fired.isEmpty else { return }
        let list = fired.map(\.alert)
        alerts.record(list)
        // Counted after they are in the log: whoever reads the counter finds the alerts at /api/alerts.
        for entry in fired { metrics.fired[entry.signal]?.increment() }
        fileIncidents(list, ownEdges: edges)
    }

    /// Files alerts into incidents along the service graph's edges (client/server pairs, calls of agents,
    /// models and tools) and the detector's own view of client spans' peers, which also covers calls to
    /// uninstrumented peers and collectors without a `service_graph`.
    func fileIncidents(_ list: [Alert], ownEdges: [(String, String)]? = nil) {
        let own = ownEdges ?? state.withLock { $0.detector.edges }
        incidents.record(list, edges: own + (graphEdges.edges() ?? []), owner: owner)
    }

    /// Sends every incident notification still waiting (shutdown, the end of a replay); holds no spans.
    public func flush() -> [SpanBatch] {
        let now = state.withLock { $0.now }
        let due = incidents.notifications(now: now, owner: owner, all: true)
        if !due.isEmpty { delivery?.enqueue(due) }
        return []
    }

    /// Adds the signals to `anomaly.signal`, after any already there.
    static func mark(_ attributes: inout [Attribute], _ signals: [AnomalyDetector.Signal]) {
        var names = signals.map(\.rawValue)
        if let index = attributes.firstIndex(where: { $0.key == signalAttribute }) {
            if let existing = attributes[index].value.stringValue, !existing.isEmpty {
                let known = existing.split(separator: ",").map(String.init)
                names = known + names.filter { !known.contains($0) }
            }
            attributes[index].value = .string(names.joined(separator: ","))
        } else {
            attributes.append(Attribute(signalAttribute, .string(names.joined(separator: ","))))
        }
    }

    /// Always nil: every batch passes on at once (only marked), so the processor never holds spans and never
    /// keeps write-ahead-log records alive (main's `SpanProcessor.oldestHeldArrival`).
    public var oldestHeldArrival: UInt64? { nil }

    /// Series and agents held now.
    public var seriesCount: Int { state.withLock { $0.detector.seriesCount } }
}

extension AnomalyDetector {
    /// The learned baseline per agent and signal, for the gauges: at most `limit` agents, by name.
    func baselines(limit: Int) -> [(String, String, Double)] {
        var result: [(String, String, Double)] = []
        for state in agents.sorted(by: { $0.name < $1.name }).prefix(limit) {
            let agent = state.name
            if state.latencyObservations >= configuration.minSamples { result.append((agent, "latency", state.latencyTypical)) }
            result.append((agent, "errors", state.errorShare))
            if state.rate.isReady { result.append((agent, "tokens", state.rate.typical)) }
            if state.gaps.count >= configuration.minSamples { result.append((agent, "silence", state.gaps.value)) }
            if state.spansPerTrace.isReady { result.append((agent, "loop", state.spansPerTrace.typical)) }
        }
        return result
    }
}

/// Builds `anomaly_detection` processors.
public struct AnomalyDetectionProcessorFactory: ProcessorFactory {
    public let type = "anomaly_detection"

    public init() {}

    public func makeProcessor(section: ConfigSection, context: ComponentContext) throws -> any SpanProcessor {
        AnomalyDetectionProcessor(configuration: try AnomalyDetectionProcessor.Configuration(section: section), context: context)
    }
}
