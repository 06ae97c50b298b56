import Prometheus
import Synchronization

/// The collector's own metrics, served at the admin API's `/metrics` in Prometheus text format.
/// Every name starts with `agenttrace_`, but for the series components publish under the names other
/// tools know (the service graph's Tempo-named `traces_service_graph_*`, one set per edge): those live in
/// a registry of their own, so the `agenttrace_*` families alone (`renderOwn`, the live view's Collector
/// tab) stay small however large the graph grows.
public final class SelfMetrics: Sendable {
    /// The `agenttrace_*` families.
    private let own = PrometheusCollectorRegistry()
    /// Every other family.
    private let published = PrometheusCollectorRegistry()
    private let refreshers = Mutex<(next: Int, hooks: [(id: Int, refresh: @Sendable () -> Void)])>((0, []))

    /// A refresher registered with `onScrape`, to remove with `removeOnScrape`.
    public struct ScrapeHook: Sendable, Hashable {
        let id: Int
    }

    public init() {}

    /// A counter; the same name and labels return the same counter.
    public func counter(_ name: String, help: String, labels: [(String, String)] = []) -> Counter {
        registry(name).makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    /// A gauge; the same name and labels return the same gauge.
    public func gauge(_ name: String, help: String, labels: [(String, String)] = []) -> Gauge {
        registry(name).makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    /// A histogram of seconds (or any value) with fixed bucket bounds.
    public func histogram(_ name: String, help: String, labels: [(String, String)] = [], buckets: [Double]) -> ValueHistogram {
        registry(name).makeValueHistogram(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
                                    labels: labels, buckets: buckets)
    }

    /// Runs `refresh` before every scrape, for gauges that sample state (queue lengths).
    @discardableResult
    public func onScrape(_ refresh: @escaping @Sendable () -> Void) -> ScrapeHook {
        refreshers.withLock { refreshers in
            defer { refreshers.next += 1 }
            refreshers.hooks.append((refreshers.next, refresh))
            return ScrapeHook(id: refreshers.next)
        }
    }

    /// Stops running a refresher: for a component that goes away while the collector runs.
    public func removeOnScrape(_ hook: ScrapeHook) {
        refreshers.withLock { $0.hooks.removeAll { $0.id == hook.id } }
    }

    /// Removes a counter's series from the exposition (series stay bounded by what exists now).
    public func remove(_ counter: Counter) {
        // A registry that does not hold it ignores the call.
        own.unregisterCounter(counter)
        published.unregisterCounter(counter)
    }

    /// Removes a gauge's series from the exposition.
    public func remove(_ gauge: Gauge) {
        own.unregisterGauge(gauge)
        published.unregisterGauge(gauge)
    }

    private func registry(_ name: String) -> PrometheusCollectorRegistry {
        name.hasPrefix("agenttrace_") ? own : published
    }

    /// The exposition text: every family.
    public func render() -> [UInt8] {
        for hook in refreshers.withLock({ $0.hooks }) { hook.refresh() }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8192)
        own.emit(into: &buffer)
        published.emit(into: &buffer)
        return buffer
    }

    /// The exposition text of the `agenttrace_*` families only.
    public func renderOwn() -> [UInt8] {
        for hook in refreshers.withLock({ $0.hooks }) { hook.refresh() }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8192)
        own.emit(into: &buffer)
        return buffer
    }
}
