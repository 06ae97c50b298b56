import Pipeline
import Prometheus

/// The counters one OTLP transport keeps, named after the OpenTelemetry Collector's receiver metrics.
struct OTLPReceiverMetrics: Sendable {
    /// Status codes answered, so `requests_total{code}` needs no lookup per request.
    static let knownCodes = [200, 400, 404, 405, 413, 415, 429, 503]

    let acceptedSpans: Counter
    let refusedSpans: Counter
    private let requests: [Int: Counter]
    private let decodeErrors: [String: Counter]
    private let otherRequests: @Sendable (Int) -> Counter

    init(receiver: String, transport: String, metrics: SelfMetrics) {
        let labels = [("receiver", receiver), ("transport", transport)]
        acceptedSpans = metrics.counter("agenttrace_receiver_accepted_spans_total",
                                        help: "Spans accepted into the pipeline.", labels: labels)
        refusedSpans = metrics.counter("agenttrace_receiver_refused_spans_total",
                                       help: "Spans refused: invalid ids, or the pipeline was full.", labels: labels)
        let makeRequests: @Sendable (Int) -> Counter = { code in
            metrics.counter("agenttrace_receiver_requests_total", help: "Requests answered, by status code.",
                            labels: labels + [("code", String(code))])
        }
        var requests: [Int: Counter] = [:]
        for code in Self.knownCodes { requests[code] = makeRequests(code) }
        self.requests = requests
        otherRequests = makeRequests
        var decodeErrors: [String: Counter] = [:]
        for encoding in ["protobuf", "json", "gzip"] {
            decodeErrors[encoding] = metrics.counter(
                "agenttrace_receiver_decode_errors_total", help: "Requests whose body could not be decoded.",
                labels: labels + [("encoding", encoding)])
        }
        self.decodeErrors = decodeErrors
    }

    func answered(_ code: Int) {
        (requests[code] ?? otherRequests(code)).increment()
    }

    func decodeFailed(_ encoding: String) {
        decodeErrors[encoding]?.increment()
    }
}
