import Logging
import Pipeline
import Prometheus
import ServiceLifecycle
import Synchronization

/// Delivers one processor's alerts to its `notify:` sinks, off the pipeline: each sink has its own bounded
/// queue and its own task, so a slow or dead sink delays only itself and never ingestion; a full queue
/// drops the alert and counts it. Failed sends retry with the `retry_on_failure` backoff.
///
/// A `Service`: on graceful shutdown (after the pipelines have drained, so their last alerts are queued)
/// retries stop and what is queued gets one attempt each until `drainDeadline`; the rest count as failed.
public final class AlertDelivery: Service, Sendable {
    /// One sink with its queue and counters.
    struct Sink: Sendable {
        /// The `sink` metric label.
        let label: String
        /// Where alerts are POSTed.
        let url: String
        /// Extra request headers.
        let headers: [String: String]
        /// The sink's payload for an alert.
        let encode: @Sendable (Alert) -> [UInt8]
        /// Alerts waiting.
        let queue: AlertQueue
        /// The alerts this sink gets; nil: all.
        let match: AlertMatch?
        /// Counters, labelled by processor and sink.
        let delivered: Counter
        let failed: Counter
        let retried: Counter
        let dropped: Counter
    }

    /// Sleeps between retries; injected so tests run without waiting.
    public typealias Sleeper = @Sendable (Duration) async -> Void

    private let sinks: [Sink]
    private let configuration: AlertDeliverySettings
    private let makeTransport: @Sendable () -> any AlertTransport
    private let sleep: Sleeper
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let drainDeadline: Duration
    private let drainEnds = Mutex<ContinuousClock.Instant?>(nil)
    private let failureLog = Mutex<[String: (last: ContinuousClock.Instant, pending: Int)]>([:])

    /// Sinks are labelled by kind (`webhook`, `slack`, `pagerduty`; `webhook/2` for a second one); `matches[i]`
    /// (when given) routes to sink `i` only the alerts it accepts.
    public init(sinks: [AlertSink], matches: [AlertMatch?] = [],
                configuration: AlertDeliverySettings, context: ComponentContext,
                drainDeadline: Duration = .seconds(5),
                makeTransport: @escaping @Sendable () -> any AlertTransport = { HTTPAlertTransport() },
                sleep: @escaping Sleeper = { duration in try? await cancelWhenGracefulShutdown { try await Task.sleep(for: duration) } }) {
        self.configuration = configuration
        self.makeTransport = makeTransport
        self.sleep = sleep
        self.drainDeadline = drainDeadline
        logger = context.logger
        var seen: [String: Int] = [:]
        self.sinks = sinks.enumerated().map { index, sink in
            let ordinal = (seen[sink.kind] ?? 0) + 1
            seen[sink.kind] = ordinal
            let label = ordinal == 1 ? sink.kind : "\(sink.kind)/\(ordinal)"
            let labels = [("processor", context.id.description), ("sink", label)]
            let metrics = context.metrics
            let queue = AlertQueue(capacity: configuration.queueSize)
            let size = metrics.gauge("agenttrace_alerts_queue_size", help: "Alerts waiting to be delivered to a sink.", labels: labels)
            metrics.onScrape { size.set(Double(queue.count)) }
            let encode: @Sendable (Alert) -> [UInt8]
            let headers: [String: String]
            switch sink {
            case .webhook(_, let extra):
                encode = { $0.webhookJSON }
                headers = extra
            case .slack:
                encode = { $0.slackJSON }
                headers = [:]
            case .pagerDuty(let routingKey, _):
                encode = { $0.pagerDutyJSON(routingKey: routingKey) }
                headers = [:]
            }
            return Sink(
                label: label, url: sink.url, headers: headers, encode: encode, queue: queue,
                match: index < matches.count ? matches[index] : nil,
                delivered: metrics.counter("agenttrace_alerts_delivered_total", help: "Alerts a sink accepted.", labels: labels),
                failed: metrics.counter("agenttrace_alerts_delivery_failed_total",
                                        help: "Alerts given up on: a permanent error, retries exhausted, or shutdown.", labels: labels),
                retried: metrics.counter("agenttrace_alerts_delivery_retries_total", help: "Alert sends retried after a retryable failure.",
                                         labels: labels),
                dropped: metrics.counter("agenttrace_alerts_dropped_total", help: "Alerts dropped because a sink's queue was full.",
                                         labels: labels))
        }
    }

    /// The sinks' labels, in `notify:` order.
    public var sinkLabels: [String] { sinks.map(\.label) }

    /// Queues alerts for every sink; never waits.
    public func enqueue(_ alerts: [Alert]) {
        for sink in sinks {
            // An incident notification reaches a sink with the alerts its `match:` accepts, if any.
            for alert in alerts {
                guard let alert = sink.match.map({ alert.routed(by: $0.accepts) }) ?? alert else { continue }
                guard !sink.queue.offer(alert) else { continue }
                sink.dropped.increment()
                noteFailure(sink, "queue full; alert \(alert.rule) dropped")
            }
        }
    }

    /// Sends until graceful shutdown, then drains what is queued within the deadline.
    public func run() async throws {
        let transport = makeTransport()
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withDiscardingTaskGroup { group in
                    for sink in sinks {
                        group.addTask { await self.consume(sink, transport) }
                    }
                }
            } onGracefulShutdown: {
                self.stop()
            }
        } onCancel: {
            self.stop()
        }
        await transport.shutdown()
    }

    /// Stops retrying and closes the queues; what is queued is tried once more, until the drain deadline.
    func stop() {
        drainEnds.withLock { $0 = $0 ?? ContinuousClock.now.advanced(by: drainDeadline) }
        stopping.store(true, ordering: .relaxed)
        for sink in sinks { sink.queue.close() }
    }

    private func consume(_ sink: Sink, _ transport: any AlertTransport) async {
        while let alert = await sink.queue.next() {
            if let end = drainEnds.withLock({ $0 }), ContinuousClock.now >= end {
                let abandoned = 1 + sink.queue.removeAll()
                sink.failed.increment(by: Int64(abandoned))
                logger.warning("alerts left undelivered at shutdown", metadata: ["sink": "\(sink.label)", "alerts": "\(abandoned)"])
                continue
            }
            await deliver(alert, sink, transport)
        }
    }

    /// Sends one alert, retrying retryable failures with backoff while time and the retry settings allow.
    func deliver(_ alert: Alert, _ sink: Sink, _ transport: any AlertTransport) async {
        let body = sink.encode(alert)
        let retry = configuration.retry
        let started = ContinuousClock.now
        var attempt = 0
        while true {
            do throws(AlertDeliveryError) {
                try await transport.post(url: sink.url, headers: sink.headers, body: body, timeout: configuration.timeout)
                sink.delivered.increment()
                return
            } catch {
                switch error {
                case .permanent(let reason):
                    sink.failed.increment()
                    noteFailure(sink, "alert \(alert.rule) refused: \(reason)")
                    return
                case .retryable(let reason, let retryAfter):
                    attempt += 1
                    let delay = retry.delay(attempt: attempt, random: Double.random(in: 0..<1), retryAfter: retryAfter)
                    let elapsed = ContinuousClock.now - started
                    guard retry.enabled, !stopping.load(ordering: .relaxed),
                          retry.maxElapsedTime == .zero || elapsed + delay <= retry.maxElapsedTime else {
                        sink.failed.increment()
                        noteFailure(sink, "alert \(alert.rule) not delivered after \(attempt) attempts: \(reason)")
                        return
                    }
                    sink.retried.increment()
                    await sleep(delay)
                }
            }
        }
    }

    /// Logs a failure, at most one line per sink per minute, with the count of the others.
    private func noteFailure(_ sink: Sink, _ what: String) {
        let now = ContinuousClock.now
        let others: Int? = failureLog.withLock { log in
            if let entry = log[sink.label], now - entry.last < .seconds(60) {
                log[sink.label]?.pending += 1
                return nil
            }
            let pending = log[sink.label]?.pending ?? 0
            log[sink.label] = (now, 0)
            return pending
        }
        guard let others else { return }
        logger.warning("alert delivery failed", metadata: [
            "sink": "\(sink.label)", "error": "\(what)", "other_failures_since_last_log": "\(others)",
        ])
    }
}

extension AlertDelivery {
    /// The delivery a processor's `notify:` entries get, nil without any. The sinks switched off for want of
    /// their environment variables are reported once for the whole collector (the default configuration
    /// ships three in two processors; a line each at every start is noise). `makeTransport` nil: HTTP.
    public static func forNotify(_ sinks: [AlertSink], matches: [AlertMatch?], disabledSinks: [String],
                                 configuration: AlertDeliverySettings, context: ComponentContext,
                                 makeTransport: (@Sendable () -> any AlertTransport)?) -> AlertDelivery? {
        SwitchedOffSinksNotice.shared(in: context).report(disabledSinks, logger: context.logger)
        guard !sinks.isEmpty else { return nil }
        guard let makeTransport else {
            return AlertDelivery(sinks: sinks, matches: matches, configuration: configuration, context: context)
        }
        return AlertDelivery(sinks: sinks, matches: matches, configuration: configuration, context: context, makeTransport: makeTransport)
    }
}
