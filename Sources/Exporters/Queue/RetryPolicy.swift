import Pipeline

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
