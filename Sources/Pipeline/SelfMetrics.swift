import Prometheus
import Synchronization

/// The collector's own metrics, served at the admin API's `/metrics` in Prometheus text format.
/// Every name starts with `agenttrace_`.
public final class SelfMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let refreshers = Mutex<[@Sendable () -> Void]>([])

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
    public func onScrape(_ refresh: @escaping @Sendable () -> Void) {
        refreshers.withLock { $0.append(refresh) }
    }

    /// The exposition text.
    public func render() -> [UInt8] {
        for refresh in refreshers.withLock({ $0 }) { refresh() }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8192)
        registry.emit(into: &buffer)
        return buffer
    }
}
