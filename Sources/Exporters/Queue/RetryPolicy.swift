import Pipeline

/// `retry_on_failure:` settings, with the OpenTelemetry Collector's names and defaults.
public struct RetryConfiguration: Sendable, Equatable {
    /// Retry at all. Default true.
    public var enabled = true
    /// Wait before the first retry. Default 5s.
    public var initialInterval: Duration = .seconds(5)
    /// The longest wait between retries. Default 30s.
    public var maxInterval: Duration = .seconds(30)
    /// Give up on a batch after trying this long; 0 means never. Default 300s.
    public var maxElapsedTime: Duration = .seconds(300)
    /// Random spread of each wait: 0.5 means between 50% and 150% of it. Default 0.5.
    public var randomizationFactor = 0.5
    /// Growth of the wait after each failure. Default 1.5.
    public var multiplier = 1.5

    public init() {}

    public init(section: ConfigSection) throws(ConfigurationError) {
        enabled = try section.bool("enabled", default: enabled)
        initialInterval = try section.duration("initial_interval", default: initialInterval, minimum: .milliseconds(1))
        maxInterval = try section.duration("max_interval", default: maxInterval, minimum: .milliseconds(1))
        maxElapsedTime = try section.duration("max_elapsed_time", default: maxElapsedTime)
        randomizationFactor = try section.double("randomization_factor", default: randomizationFactor, in: 0...1)
        multiplier = try section.double("multiplier", default: multiplier, in: 1...100)
        try section.finish()
    }

    /// The wait before retry number `attempt` (1 for the first retry), with jitter from `random` in
    /// 0..<1; a backend's `retryAfter` wins when it asks for longer.
    public func delay(attempt: Int, random: Double, retryAfter: Duration?) -> Duration {
        var base = Double(initialInterval.nanoseconds)
        for _ in 1..<max(attempt, 1) { base *= multiplier }
        base = min(base, Double(maxInterval.nanoseconds))
        let jittered = base * (1 - randomizationFactor + 2 * randomizationFactor * random)
        let backoff = Duration.nanoseconds(Int64(jittered))
        if let retryAfter, retryAfter > backoff { return retryAfter }
        return backoff
    }
}

/// `sending_queue:` settings, with the OpenTelemetry Collector's names and defaults.
public struct QueueConfiguration: Sendable, Equatable {
    /// Queue at all; without it a send happens inline and a full backend slows the pipeline. Default true.
    public var enabled = true
    /// How `queue_size` counts, as the Collector's `sizer`: `requests` (batches, default) or `items` (spans),
    /// which bounds memory however large the batches are.
    public enum Sizer: String, Sendable { case requests, items }

    /// The queue's capacity in `sizer` units; a full queue makes the pipeline wait, which pushes back on
    /// receivers. Default 1000.
    public var queueSize = 1000
    public var sizer = Sizer.requests
    /// Batches sent at once. Default 10.
    public var numConsumers = 10
    /// A folder where queued batches are written before they count as accepted, so they survive a crash.
    public var storage: String?

    public init() {}

    public init(section: ConfigSection) throws(ConfigurationError) {
        enabled = try section.bool("enabled", default: enabled)
        queueSize = try section.int("queue_size", default: queueSize, in: 1...1_000_000_000)
        let sizerName = try section.string("sizer", default: sizer.rawValue)
        guard let sizer = Sizer(rawValue: sizerName) else {
            throw ConfigurationError(key: section.keyPath("sizer"), "expected requests or items")
        }
        self.sizer = sizer
        numConsumers = try section.int("num_consumers", default: numConsumers, in: 1...1000)
        storage = try section.optionalString("storage")
        if let storage, storage.isEmpty { throw ConfigurationError(key: section.keyPath("storage"), "must be a folder path") }
        try section.finish()
    }
}
