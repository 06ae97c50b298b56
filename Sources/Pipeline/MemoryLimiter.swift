import Foundation
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization
import TraceModel

/// `service: memory_limiter:`, shaped like the OpenTelemetry Collector's memory_limiter processor: the
/// process's resident memory is sampled every `check_interval`; above the soft limit
/// (`limit_mib - spike_limit_mib`) receivers refuse new data with 503 / UNAVAILABLE and a retry hint
/// until it falls below again.
public struct MemoryLimiterConfiguration: Sendable, Equatable {
    /// `limit_mib`: the hard limit on resident memory, MiB. Required.
    public var limitMiB: Int
    /// `spike_limit_mib`: head room kept below the hard limit for what arrives between two samples.
    /// Default 20% of `limit_mib`.
    public var spikeLimitMiB: Int
    /// `check_interval`: how often resident memory is sampled. Default 100ms.
    public var checkInterval: Duration = .milliseconds(100)

    public init(limitMiB: Int, spikeLimitMiB: Int? = nil) {
        self.limitMiB = limitMiB
        self.spikeLimitMiB = spikeLimitMiB ?? limitMiB / 5
    }

    /// Reads `memory_limiter:`.
    public init(section: ConfigSection) throws(ConfigurationError) {
        guard section.keys.contains("limit_mib") else {
            throw ConfigurationError(key: section.keyPath("limit_mib"), "required: the resident memory limit in MiB")
        }
        limitMiB = try section.int("limit_mib", default: 0, in: 16...1_048_576)
        spikeLimitMiB = try section.int("spike_limit_mib", default: limitMiB / 5, in: 0...1_048_576)
        checkInterval = try section.duration("check_interval", default: checkInterval, minimum: .milliseconds(10))
        try section.finish()
        guard spikeLimitMiB < limitMiB else {
            throw ConfigurationError(key: section.keyPath("spike_limit_mib"), "must be below limit_mib (\(limitMiB))")
        }
    }

    /// The soft limit in bytes: refusing starts here.
    public var softLimitBytes: Int { (limitMiB - spikeLimitMiB) << 20 }
}

/// Samples resident memory and decides whether receivers refuse. A `Service`: samples until shutdown.
public final class MemoryLimiter: Service, Sendable {
    public let configuration: MemoryLimiterConfiguration
    private let refusingNow = Atomic<Bool>(false)
    private let residentBytes = Atomic<Int>(0)
    private let readResident: @Sendable () -> Int?
    private let releaseFreedMemory: @Sendable () -> Void
    private let refusedRequests: Counter
    private let transitions = Atomic<Int>(0)

    /// `readResident` returns resident bytes (injected by tests); the default reads /proc/self/statm.
    /// `releaseFreedMemory` runs when over the soft limit: it hands the allocator's free pages back to
    /// the system (the collector passes glibc's malloc_trim) before the next sample judges again.
    public init(configuration: MemoryLimiterConfiguration, metrics: SelfMetrics,
                readResident: @escaping @Sendable () -> Int? = MemoryLimiter.processResidentBytes,
                releaseFreedMemory: @escaping @Sendable () -> Void = {}) {
        self.configuration = configuration
        self.readResident = readResident
        self.releaseFreedMemory = releaseFreedMemory
        refusedRequests = metrics.counter("agenttrace_memory_limiter_refused_requests_total",
                                          help: "Requests refused because resident memory was over the memory_limiter soft limit.")
        let resident = metrics.gauge("agenttrace_process_resident_memory_bytes", help: "Resident memory of the process, as last sampled.")
        let refusing = metrics.gauge("agenttrace_memory_limiter_refusing", help: "1 while receivers refuse data for memory_limiter.")
        let softLimit = metrics.gauge("agenttrace_memory_limiter_soft_limit_bytes", help: "Resident memory above which receivers refuse data.")
        softLimit.set(Double(configuration.softLimitBytes))
        metrics.onScrape { [weak self] in
            guard let self else { return }
            resident.set(Double(self.residentBytes.load(ordering: .relaxed)))
            refusing.set(self.isRefusing ? 1.0 : 0.0)
        }
        sample()
    }

    /// True while receivers should refuse new data.
    public var isRefusing: Bool { refusingNow.load(ordering: .relaxed) }

    /// Counts one request refused for memory.
    func countRefusal() {
        refusedRequests.increment()
    }

    /// Takes one sample and updates the decision; returns the resident bytes seen.
    @discardableResult
    public func sample() -> Int {
        guard let resident = readResident() else { return 0 }
        residentBytes.store(resident, ordering: .relaxed)
        let over = resident >= configuration.softLimitBytes
        if over {
            // Freed memory the allocator still holds counts as resident: hand it back before judging again.
            releaseFreedMemory()
        }
        if refusingNow.exchange(over, ordering: .relaxed) != over { transitions.add(1, ordering: .relaxed) }
        return resident
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: self.configuration.checkInterval)
                self.sample()
            }
        }
    }

    /// Resident bytes from /proc/self/statm (its second field, in pages); nil where there is no /proc.
    public static let processResidentBytes: @Sendable () -> Int? = {
        guard let data = FileManager.default.contents(atPath: "/proc/self/statm"),
              let text = String(data: data, encoding: .ascii) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

}

/// A sink that refuses while the memory limiter does, in front of the pipeline's own queue.
public struct MemoryLimitedSink: BatchSink {
    let inner: any BatchSink
    let limiter: MemoryLimiter

    public init(inner: any BatchSink, limiter: MemoryLimiter) {
        self.inner = inner
        self.limiter = limiter
    }

    public func offer(_ batch: SpanBatch, on eventLoop: any EventLoop) -> OfferOutcome {
        if limiter.isRefusing {
            limiter.countRefusal()
            return .refused
        }
        return inner.offer(batch, on: eventLoop)
    }

    /// Receivers ask before decoding: the refusal is counted here, once per request.
    public var isFull: Bool {
        if limiter.isRefusing {
            limiter.countRefusal()
            return true
        }
        return inner.isFull
    }

    /// Over the memory limit, none: waiting would hold more request bodies in memory, so receivers refuse at once
    /// (on the HTTP head, before reading the body).
    public var waitWhenFull: Duration { limiter.isRefusing ? .zero : inner.waitWhenFull }

    /// Over the memory limit there is nothing to wait for that a retry would not see as well: refused at once.
    public func waitForRoom(bytes: Int, until deadline: NIODeadline, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        guard !limiter.isRefusing else { return eventLoop.makeSucceededFuture(false) }
        return inner.waitForRoom(bytes: bytes, until: deadline, on: eventLoop)
    }
}
