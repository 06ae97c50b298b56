/// `retry_on_failure:` settings, with the OpenTelemetry Collector's names and defaults. Shared by the exporters
/// and by alert delivery, so every retrying component is configured the same way.
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

    /// Reads `retry_on_failure:` with this type's defaults.
    public init(section: ConfigSection) throws(ConfigurationError) {
        try self.init(section: section, defaults: RetryConfiguration())
    }

    /// Reads `retry_on_failure:`, taking absent keys from `defaults` (alert delivery retries sooner than exporters).
    public init(section: ConfigSection, defaults: RetryConfiguration) throws(ConfigurationError) {
        self = defaults
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
