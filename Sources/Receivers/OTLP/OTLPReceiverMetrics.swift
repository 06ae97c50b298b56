import Pipeline
import Prometheus
import ServerSupport

/// The counters one OTLP transport keeps, named after the OpenTelemetry Collector's receiver metrics.
/// `requests_total{code}` is the HTTP status for `transport="http"` and the gRPC status name
/// (`OK`, `INVALID_ARGUMENT`…) for `transport="grpc"`.
struct OTLPReceiverMetrics: Sendable {
    /// The codes each transport answers with, created up front so answering needs no registry lookup.
    static func knownCodes(transport: String) -> [String] {
        transport == "grpc"
            ? ["OK", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED", "UNAVAILABLE", "UNAUTHENTICATED"]
            : ["200", "400", "401", "404", "405", "413", "415", "431", "503"]
    }

    let acceptedSpans: Counter
    /// Counts the connections the server closed, by reason (`agenttrace_receiver_connections_closed_total`).
    let connectionEvents: ConnectionEvents
    let refusedSpans: Counter
    /// Requests held while the pipeline was full, whether room came in time or not.
    let heldRequests: Counter
    private let requests: [String: Counter]
    private let decodeErrors: [String: Counter]
    private let otherRequests: @Sendable (String) -> Counter

    init(receiver: String, transport: String, metrics: SelfMetrics) {
        let labels = [("receiver", receiver), ("transport", transport)]
        acceptedSpans = metrics.counter("agenttrace_receiver_accepted_spans_total",
                                        help: "Spans accepted into the pipeline.", labels: labels)
        refusedSpans = metrics.counter("agenttrace_receiver_refused_spans_total",
                                       help: "Spans refused: invalid ids, or the pipeline was full.", labels: labels)
        heldRequests = metrics.counter("agenttrace_receiver_held_requests_total",
                                       help: "Requests held while the pipeline queue was full (service.queue.wait_when_full), then taken or refused.",
                                       labels: labels)
        let makeRequests: @Sendable (String) -> Counter = { code in
            metrics.counter("agenttrace_receiver_requests_total", help: "Requests answered, by HTTP status or gRPC status name.",
                            labels: labels + [("code", code)])
        }
        var requests: [String: Counter] = [:]
        for code in Self.knownCodes(transport: transport) { requests[code] = makeRequests(code) }
        self.requests = requests
        otherRequests = makeRequests
        var decodeErrors: [String: Counter] = [:]
        for encoding in transport == "grpc" ? ["protobuf", "gzip"] : ["protobuf", "json", "gzip"] {
            decodeErrors[encoding] = metrics.counter(
                "agenttrace_receiver_decode_errors_total", help: "Requests whose body could not be decoded.",
                labels: labels + [("encoding", encoding)])
        }
        self.decodeErrors = decodeErrors
        connectionEvents = ConnectionEvents.counting(metrics: metrics, labels: labels)
    }

    func answered(_ code: String) {
        (requests[code] ?? otherRequests(code)).increment()
    }

    func decodeFailed(_ encoding: String) {
        decodeErrors[encoding]?.increment()
    }
}

extension ConnectionEvents {
    /// Counts closed connections in `agenttrace_receiver_connections_closed_total{reason}` with `labels`.
    public static func counting(metrics: SelfMetrics, labels: [(String, String)]) -> ConnectionEvents {
        var counters: [ConnectionCloseReason: Counter] = [:]
        for reason in ConnectionCloseReason.allCases {
            counters[reason] = metrics.counter("agenttrace_receiver_connections_closed_total",
                                               help: "Connections the server closed or refused: limits, timeouts, protocol errors.",
                                               labels: labels + [("reason", reason.rawValue)])
        }
        let all = counters
        return ConnectionEvents { reason in all[reason]?.increment() }
    }
}
