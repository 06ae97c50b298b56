import Alerting
import Pipeline

extension AnomalyDetectionProcessor {
    /// `processors: anomaly_detection:` settings. Every key has a default, so `anomaly_detection: {}` works.
    public struct Configuration: Sendable, Equatable {
        /// How far from the baseline counts as anomalous.
        public enum Sensitivity: String, Sendable, Equatable, CaseIterable {
            case low, medium, high

            /// The robust z-score (latency, tokens, loop) at which a series is anomalous.
            public var zThreshold: Double {
                switch self {
                case .low: 5
                case .medium: 3.5
                case .high: 2.5
                }
            }

            /// `-log10` of the chance of the window's errors at the baseline share (errors) at which a series is anomalous.
            public var errorThreshold: Double {
                switch self {
                case .low: 9
                case .medium: 6
                case .high: 4
                }
            }

            /// How many times its 95th-percentile gap an agent must be silent (silence).
            public var silenceFactor: Double {
                switch self {
                case .low: 6
                case .medium: 4
                case .high: 2.5
                }
            }
        }

        /// One signal's switch and overrides.
        public struct Signal: Sendable, Equatable {
            /// Default true.
            public var enabled = true
            /// Overrides the processor's `sensitivity`. Default none.
            public var sensitivity: Sensitivity?
            /// Overrides the severity (default: `critical` for agents with `agent.critical`, `warning` otherwise).
            public var severity: AlertSeverity?

            public init() {}
        }

        /// USD per million tokens for one model.
        public struct Price: Sendable, Equatable {
            /// USD per 1M input tokens.
            public var input: Double
            /// USD per 1M output tokens.
            public var output: Double

            public init(input: Double, output: Double) {
                self.input = input
                self.output = output
            }
        }

        /// Default `medium`.
        public var sensitivity = Sensitivity.medium
        /// Observations a series needs before it can alert. Default 30.
        public var minSamples = 30
        /// How long a series (and, for silence and new_interaction, an agent) must have been seen before it can
        /// alert. Default 60s.
        public var warmup: Duration = .seconds(60)
        /// How far one observation moves a baseline (its weight; older ones decay by `1 − rate` each). Default 0.02.
        public var learningRate = 0.02
        /// No repeated alert per signal, agent and subject inside this; suppressed ones are counted in the next. Default 300s.
        public var cooldown: Duration = .seconds(300)
        /// Series held at most (every signal's, every agent's); the least recently seen is evicted and counted. Default 50000.
        public var maxSeries = 50_000
        /// Running traces followed for `loop` at most; the least recently seen is dropped and counted. Default 20000.
        public var maxTraces = 20_000

        /// `latency:` per agent and operation. Default on.
        public var latency = Signal()
        /// `errors:` per agent and per edge. Default on.
        public var errors = Signal()
        /// `errors.window`: the short window whose error count is compared with the baseline share. Default 10s.
        public var errorWindow: Duration = .seconds(10)
        /// `errors.min_errors`: errors in the window needed at least. Default 3.
        public var minErrors = 3
        /// `tokens:` per call (agent and model) and token rate per agent. Default on.
        public var tokens = Signal()
        /// `tokens.rate_window`: the token rate is the sum over windows this long. Default 10s.
        public var rateWindow: Duration = .seconds(10)
        /// `silence:`. Default on.
        public var silence = Signal()
        /// `silence.min_silence`: never silent before this. Default 10s.
        public var minSilence: Duration = .seconds(10)
        /// `loop:`. Default on.
        public var loop = Signal()
        /// `loop.min_count`: a trace needs at least this many spans (or LLM calls, or calls of one tool) of one agent. Default 10.
        public var loopMinCount = 10
        /// `loop.trace_idle`: a trace without a new span for this long is over (its counts join the baseline). Default 30s.
        public var traceIdle: Duration = .seconds(30)
        /// `new_interaction:`. Default on.
        public var newInteraction = Signal()
        /// `incidents.window`: anomalies this close on connected agents are one incident. Default 30s.
        public var incidentWindow: Duration = .seconds(30)
        /// `incidents.group_wait`: an incident's one notification waits this long after its first alert, so the
        /// alerts that come with it are in it. Default 5s.
        public var incidentGroupWait: Duration = .seconds(5)
        /// `incidents.group_interval`: alerts that join an incident after its notification go out together, at
        /// most this often. Default 60s.
        public var incidentGroupInterval: Duration = .seconds(60)
        /// `pricing:` model name → USD per 1M input/output tokens; adds cost to token alerts. Default none.
        public var pricing: [String: Price] = [:]

        /// `notify:` sinks, as for `threshold_triggers`. Default none.
        public var notify: [AlertSink] = []
        /// Each `notify:` sink's `match:` (nil: every alert), in the order of `notify`.
        public var notifyMatches: [AlertMatch?] = []
        /// The `notify:` entries switched off (their URL expanded to nothing), by key.
        public var disabledSinks: [String] = []
        /// `delivery:`.
        public var delivery = AlertDeliverySettings()

        /// The defaults.
        public init() {}

        /// Reads the section, failing on unknown keys or bad values, naming the key.
        public init(section: ConfigSection) throws(ConfigurationError) {
            sensitivity = try Self.sensitivity(section, "sensitivity") ?? sensitivity
            minSamples = try section.int("min_samples", default: minSamples, in: 3...1_000_000)
            warmup = try section.duration("warmup", default: warmup)
            learningRate = try section.double("learning_rate", default: learningRate, in: 0.0001...0.5)
            cooldown = try section.duration("cooldown", default: cooldown)
            maxSeries = try section.int("max_series", default: maxSeries, in: 10...10_000_000)
            maxTraces = try section.int("max_traces", default: maxTraces, in: 10...10_000_000)
            latency = try Self.signal(section, "latency") { _ in }
            errors = try Self.signal(section, "errors") { signal throws(ConfigurationError) in
                errorWindow = try signal.duration("window", default: errorWindow, minimum: .seconds(1))
                minErrors = try signal.int("min_errors", default: minErrors, in: 1...1_000_000)
            }
            tokens = try Self.signal(section, "tokens") { signal throws(ConfigurationError) in
                rateWindow = try signal.duration("rate_window", default: rateWindow, minimum: .seconds(1))
            }
            silence = try Self.signal(section, "silence") { signal throws(ConfigurationError) in
                minSilence = try signal.duration("min_silence", default: minSilence, minimum: .seconds(1))
            }
            loop = try Self.signal(section, "loop") { signal throws(ConfigurationError) in
                loopMinCount = try signal.int("min_count", default: loopMinCount, in: 2...1_000_000)
                traceIdle = try signal.duration("trace_idle", default: traceIdle, minimum: .seconds(1))
            }
            newInteraction = try Self.signal(section, "new_interaction") { _ in }
            if let incidents = try section.section("incidents") {
                incidentWindow = try incidents.duration("window", default: incidentWindow, minimum: .seconds(1))
                incidentGroupWait = try incidents.duration("group_wait", default: incidentGroupWait)
                incidentGroupInterval = try incidents.duration("group_interval", default: incidentGroupInterval, minimum: .seconds(1))
                try incidents.finish()
            }
            if let prices = try section.section("pricing") {
                for model in prices.keys {
                    guard let price = try prices.section(model) else { continue }
                    let input = try price.double("input", default: 0, in: 0...1_000_000)
                    let output = try price.double("output", default: 0, in: 0...1_000_000)
                    try price.finish()
                    pricing[model] = Price(input: input, output: output)
                }
                try prices.finish()
            }
            let notifications = try AlertNotifications(section: section)
            notify = notifications.sinks
            notifyMatches = notifications.matches
            disabledSinks = notifications.disabledSinks
            delivery = notifications.delivery
            try section.finish()
        }

        /// The sensitivity a signal uses.
        func sensitivity(of signal: Signal) -> Sensitivity { signal.sensitivity ?? sensitivity }

        private static func sensitivity(_ section: ConfigSection, _ key: String) throws(ConfigurationError) -> Sensitivity? {
            guard let text = try section.optionalString(key) else { return nil }
            guard let value = Sensitivity(rawValue: text) else {
                throw ConfigurationError(key: section.keyPath(key), "expected low, medium or high, not \"\(text)\"")
            }
            return value
        }

        /// `KEY: false` switches the signal off; `KEY: {enabled, sensitivity, severity, …}` tunes it; `extra` reads
        /// the signal's own keys.
        private static func signal(_ section: ConfigSection, _ key: String,
                                   extra: (ConfigSection) throws(ConfigurationError) -> Void) throws(ConfigurationError) -> Signal {
            var signal = Signal()
            if case .scalar = section.value(key) {
                signal.enabled = try section.bool(key, default: true)
                return signal
            }
            guard let settings = try section.section(key) else { return signal }
            signal.enabled = try settings.bool("enabled", default: true)
            signal.sensitivity = try sensitivity(settings, "sensitivity")
            if let name = try settings.optionalString("severity") {
                guard let severity = AlertSeverity(rawValue: name) else {
                    throw ConfigurationError(key: settings.keyPath("severity"), "expected critical, error, warning or info, not \"\(name)\"")
                }
                signal.severity = severity
            }
            try extra(settings)
            try settings.finish()
            return signal
        }
    }
}
