import Foundation
import Pipeline
import TraceModel

/// Jaeger's v1 HTTP query API on the admin port, so Grafana's Jaeger data source (and Jaeger UI's
/// calls) work against the stored traces: `/api/services`, `/api/services/{service}/operations`,
/// `/api/traces?service=&operation=&tags=&start=&end=&minDuration=&maxDuration=&limit=` and
/// `/api/traces/{traceID}`. Answers use Jaeger's envelope; a bad parameter answers 400 with Jaeger's
/// `errors: [{code, msg}]`. With several `memory` exporters, `?exporter=memory/b` picks one.
extension MemoryExporter: AdminRouteProvider {
    public var adminRoutes: [AdminRoute] {
        [
            AdminRoute("/api/services") { [self] _ in
                .json(JaegerQueryJSON.names(store.withLock { $0.services() }))
            },
            AdminRoute(subpathsOf: "/api/services/") { [self] request in
                let rest = request.path.dropFirst("/api/services/".count)
                guard rest.hasSuffix("/operations"), case let name = rest.dropLast("/operations".count), !name.isEmpty,
                      !name.contains("/") else {
                    return Self.jaegerError("not found: \(request.path)", status: 404)
                }
                let service = AdminRequest.percentDecoded(String(name))
                return .json(JaegerQueryJSON.names(store.withLock { $0.operations(service: service) }))
            },
            AdminRoute("/api/traces") { [self] request in
                switch Self.traceQuery(request) {
                case .failure(let problem): return Self.jaegerError(problem.message, status: 400)
                case .success(let query): return .json(JaegerQueryJSON.traces(store.withLock { $0.search(query) }))
                }
            },
            AdminRoute(subpathsOf: "/api/traces/") { [self] request in
                let text = request.path.dropFirst("/api/traces/".count)
                guard let id = Self.traceID(text) else {
                    return Self.jaegerError("cannot parse traceID: \(text)", status: 400)
                }
                guard let trace = store.withLock({ $0.trace(id) }) else {
                    return Self.jaegerError("trace not found", status: 404)
                }
                return .json(JaegerQueryJSON.traces([trace]))
            },
        ]
    }

    static func jaegerError(_ message: String, status: Int) -> AdminResponse {
        .json(JaegerQueryJSON.error(message, status: status), status: status)
    }

    /// A bad query parameter, in Jaeger's words (`unable to parse param 'limit': …`).
    struct QueryProblem: Error, Equatable {
        var message: String
    }

    /// Reads Jaeger's trace search parameters (`parseTraceQueryParams` in Jaeger's `cmd/query/app/query_parser.go`,
    /// with its messages: "parameter 'service' is required", "'maxDuration' should be greater than 'minDuration'",
    /// "malformed 'tag' parameter, expecting key:value"; parse failures name the parameter, as its
    /// `newParseError` does, `limit` included). `service` is required unless `traceID` is given, as in Jaeger's
    /// `validateQuery`; `start` and `end` are Unix microseconds; `minDuration` and `maxDuration` Go-style
    /// durations (`1.5s`, `300ms`); `tag=key:value` may repeat, and so may `tags`, a JSON object of strings
    /// (Jaeger's `parseTags` reads every `tag`, then every `tags`); `traceID` may repeat and asks for those traces.
    static func traceQuery(_ parameters: [String: String]) -> Result<TraceQuery, QueryProblem> {
        traceQuery(AdminRequest(path: "/api/traces", query: parameters))
    }

    /// The same, from a request whose parameters may repeat (`tag`, `tags`, `traceID`).
    static func traceQuery(_ request: AdminRequest) -> Result<TraceQuery, QueryProblem> {
        let parameters = request.query
        var query = TraceQuery()
        for text in request.values("traceID") where !text.isEmpty {
            guard let id = traceID(Substring(text)) else {
                return .failure(QueryProblem(message: "cannot parse traceID param: \(text)"))
            }
            query.traceIDs.append(id)
        }
        if let service = parameters["service"], !service.isEmpty {
            query.service = service
        } else if query.traceIDs.isEmpty {
            return .failure(QueryProblem(message: "parameter 'service' is required"))
        }
        if let operation = parameters["operation"], !operation.isEmpty { query.operation = operation }
        for name in ["start", "end"] {
            guard let text = parameters[name], !text.isEmpty else { continue }
            guard let micros = UInt64(text) else {
                return .failure(QueryProblem(message: "unable to parse param '\(name)': \(text) is not Unix microseconds"))
            }
            if name == "start" { query.startMinMicros = micros } else { query.startMaxMicros = micros }
        }
        for name in ["minDuration", "maxDuration"] {
            guard let text = parameters[name], !text.isEmpty else { continue }
            guard let duration = Duration(configText: text) else {
                return .failure(QueryProblem(message: "unable to parse param '\(name)': \(text) is not a duration such as 300ms"))
            }
            let nanos = UInt64(clamping: duration.components.seconds) &* 1_000_000_000 &+ UInt64(duration.components.attoseconds / 1_000_000_000)
            if name == "minDuration" { query.durationMinNanos = nanos } else { query.durationMaxNanos = nanos }
        }
        if let minimum = query.durationMinNanos, let maximum = query.durationMaxNanos, maximum < minimum {
            return .failure(QueryProblem(message: "'maxDuration' should be greater than 'minDuration'"))
        }
        if let text = parameters["limit"], !text.isEmpty {
            guard let limit = Int(text), limit >= 0 else {
                return .failure(QueryProblem(message: "unable to parse param 'limit': \(text) is not a count"))
            }
            if limit > 0 { query.limit = limit }
        }
        for text in request.values("tag") where !text.isEmpty {
            guard let colon = text.firstIndex(of: ":") else {
                return .failure(QueryProblem(message: "malformed 'tag' parameter, expecting key:value, received: \(text)"))
            }
            query.tags[String(text[..<colon])] = String(text[text.index(after: colon)...])
        }
        for text in request.values("tags") where !text.isEmpty {
            guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                  case let tags = object.compactMapValues({ $0 as? String }), tags.count == object.count else {
                return .failure(QueryProblem(message: "malformed 'tags' parameter, cannot unmarshal JSON: expecting an object of strings, received: \(text)"))
            }
            query.tags.merge(tags) { _, json in json }
        }
        return .success(query)
    }

    /// A trace id of 1 to 32 hex digits, leading zeros optional, as Jaeger's `TraceIDFromString` reads it.
    static func traceID(_ text: Substring) -> TraceID? {
        guard (1...32).contains(text.count), text.allSatisfy(\.isHexDigit) else { return nil }
        let padded = String(repeating: "0", count: 32 - text.count) + text
        guard let id = TraceID(hex: padded.lowercased()), id.isValid else { return nil }
        return id
    }
}
