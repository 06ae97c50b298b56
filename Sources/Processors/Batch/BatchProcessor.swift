import Pipeline
import Prometheus
import Synchronization
import TraceModel

/// Groups spans into larger batches before export, as the OpenTelemetry Collector's `batch` processor:
/// a batch leaves when it reaches `send_batch_size` spans or `timeout` after its first span arrived;
/// none leaves larger than `send_batch_max_size` (0: no limit).
public final class BatchProcessor: SpanProcessor {
    /// `processors: batch:` settings.
    public struct Configuration: Sendable, Equatable {
        /// Spans that make a batch leave at once. Default 8192.
        public var sendBatchSize = 8192
        /// The largest batch sent; bigger ones are split. 0 (default) means no limit.
        public var sendBatchMaxSize = 0
        /// How long a batch may wait for more spans. Default 200ms.
        public var timeout: Duration = .milliseconds(200)

        public init() {}

        /// Reads the section, failing on unknown keys or bad values.
        public init(section: ConfigSection) throws(ConfigurationError) {
            sendBatchSize = try section.int("send_batch_size", default: sendBatchSize, in: 1...10_000_000)
            sendBatchMaxSize = try section.int("send_batch_max_size", default: sendBatchMaxSize, in: 0...10_000_000)
            timeout = try section.duration("timeout", default: timeout)
            try section.finish()
            if sendBatchMaxSize != 0, sendBatchMaxSize < sendBatchSize {
                throw ConfigurationError(key: section.keyPath("send_batch_max_size"),
                                         "must be 0 or at least send_batch_size (\(sendBatchSize))")
            }
        }
    }

    /// Why a batch left.
    public enum Trigger: String, Sendable, CaseIterable {
        case size, timeout, shutdown
    }

    /// The batching rules as a plain value: fed batches and times, returns what leaves.
    public struct StateMachine: Sendable {
        let configuration: Configuration
        private(set) var pending = SpanBatch()
        private(set) var pendingSpans = 0
        /// When the first span pending arrived; nil when none is.
        public private(set) var firstArrival: UInt64?

        public init(configuration: Configuration) {
            self.configuration = configuration
        }

        /// Adds a batch; returns the batches that leave because the size was reached.
        public mutating func add(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
            let spans = batch.spanCount
            guard spans > 0 else { return [] }
            if pendingSpans == 0 { firstArrival = now }
            pending.append(contentsOf: batch)
            pendingSpans += spans
            guard pendingSpans >= configuration.sendBatchSize else { return [] }
            return takeAll()
        }

        /// Returns the pending batch when its timeout has passed at `now`.
        public mutating func tick(now: UInt64) -> [SpanBatch] {
            guard let firstArrival, pendingSpans > 0,
                  now >= firstArrival &+ UInt64(clamping: configuration.timeout.nanoseconds) else { return [] }
            return takeAll()
        }

        /// Returns whatever is pending.
        public mutating func flush() -> [SpanBatch] {
            pendingSpans > 0 ? takeAll() : []
        }

        private mutating func takeAll() -> [SpanBatch] {
            let batch = pending
            pending = SpanBatch()
            pendingSpans = 0
            firstArrival = nil
            guard configuration.sendBatchMaxSize > 0 else { return [batch] }
            return batch.split(maxSpans: configuration.sendBatchMaxSize)
        }
    }

    private let state: Mutex<StateMachine>
    private let sent: [Trigger: Counter]

    public init(configuration: Configuration, context: ComponentContext) {
        state = Mutex(StateMachine(configuration: configuration))
        var sent: [Trigger: Counter] = [:]
        for trigger in Trigger.allCases {
            sent[trigger] = context.metrics.counter(
                "agenttrace_processor_batch_batches_sent_total", help: "Batches sent by the batch processor, by what triggered them.",
                labels: [("processor", context.id.description), ("trigger", trigger.rawValue)])
        }
        self.sent = sent
    }

    public func process(_ batch: SpanBatch, now: UInt64) -> [SpanBatch] {
        count(state.withLock { $0.add(batch, now: now) }, .size)
    }

    public func tick(now: UInt64) -> [SpanBatch] {
        count(state.withLock { $0.tick(now: now) }, .timeout)
    }

    public func flush() -> [SpanBatch] {
        count(state.withLock { $0.flush() }, .shutdown)
    }

    /// When the first span of the pending batch arrived.
    public var oldestHeldArrival: UInt64? { state.withLock { $0.firstArrival } }

    private func count(_ batches: [SpanBatch], _ trigger: Trigger) -> [SpanBatch] {
        if !batches.isEmpty { sent[trigger]?.increment(by: Int64(batches.count)) }
        return batches
    }
}

/// Builds `batch` processors.
public struct BatchProcessorFactory: ProcessorFactory {
    public let type = "batch"

    public init() {}

    public func makeProcessor(section: ConfigSection, context: ComponentContext) throws -> any SpanProcessor {
        BatchProcessor(configuration: try BatchProcessor.Configuration(section: section), context: context)
    }
}
