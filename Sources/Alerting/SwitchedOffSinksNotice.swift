import Logging
import Pipeline
import Synchronization

/// Logs the `notify:` entries switched off by unset environment variables once per collector: the default
/// configuration gives `threshold_triggers` and `anomaly_detection` the same three sinks, and a line per
/// processor at every start is noise. Later processors' entries are logged at debug level.
public final class SwitchedOffSinksNotice: Sendable {
    private let logged = Atomic<Bool>(false)

    /// A notice of its own (tests); components use `shared(in:)`.
    public init() {}

    /// The collector's notice, made on first use.
    public static func shared(in context: ComponentContext) -> SwitchedOffSinksNotice {
        context.shared.resource(SwitchedOffSinksNotice.self) { SwitchedOffSinksNotice() }
    }

    /// Reports one component's switched-off entries (by key); nothing when there are none.
    public func report(_ entries: [String], logger: Logger) {
        guard !entries.isEmpty else { return }
        let message: Logger.Message = """
            alert sinks switched off (their URL or routing key is empty, an unset environment variable?): \
            \(entries.joined(separator: ", ")); to switch one on, set the environment variable its URL or \
            routing_key names under notify:
            """
        if logged.exchange(true, ordering: .relaxed) {
            logger.debug(message)
        } else {
            logger.info(message)
        }
    }
}
