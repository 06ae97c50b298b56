import Prometheus
import Synchronization

/// The collector's own metrics, served at the admin API's `/metrics` in Prometheus text format.
/// Every name starts with `agenttrace_`.
public final class SelfMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let refreshers = Mutex<(next: Int, hooks: [(id: Int, refresh: @Sendable () -> Void)])>((0, []))

    /// A refresher registered with `onScrape`, to remove with `removeOnScrape`.
    public struct ScrapeHook: Sendable, Hashable {
        let id: Int
    }

    public init() {}

    /// A counter; the same name and labels return the same counter.
    public func counter(_ name: String, help: String, labels: [(String, String)] = []) -> Counter {
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    /// A gauge; the same name and labels return the same gauge.
    public func gauge(_ name: String, help: String, labels: [(String, String)] = []) -> Gauge {
        registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    /// A histogram of seconds (or any value) with fixed bucket bounds.
    public func histogram(_ name: String, help: String, labels: [(String, String)] = [], buckets: [Double]) -> ValueHistogram {
        registry.makeValueHistogram(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help),
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
        registry.unregisterCounter(counter)
    }

    /// Removes a gauge's series from the exposition.
    public func remove(_ gauge: Gauge) {
        registry.unregisterGauge(gauge)
    }

    /// The exposition text.
    public func render() -> [UInt8] {
        for hook in refreshers.withLock({ $0.hooks }) { hook.refresh() }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8192)
        registry.emit(into: &buffer)
        return buffer
    }
}
