import Foundation
import Pipeline

/// The graph on the admin API: `/api/service-graph` and `/api/graph/data` (Grafana's Node Graph panel),
/// `/api/graph/fields` and `/api/health` (the Node Graph API plugin), `/api/dependencies` (Jaeger's
/// dependencies answer). With several `service_graph` processors, `?processor=service_graph/b` picks one.
/// With `cluster:`, the graph is every replica's, from Prometheus (`ClusterGraph`), in the same JSON; when
/// Prometheus cannot answer, 503 with the reason, never this replica's share alone.
extension ServiceGraphProcessor: AdminRouteProvider {
    /// A query parameter read, or the answer to give when it is bad.
    enum Parsed<Value> {
        case success(Value)
        case failure(AdminResponse)
    }

    /// `window` as the local graph reads it: nil for the totals (none given, or longer than the hour of
    /// per-minute history), else the duration; a bad value is the 400 answer.
    static func window(_ request: AdminRequest) -> Parsed<Duration?> {
        guard let window = request.query["window"] else { return .success(nil) }
        guard let duration = Duration(configText: window) else { return .failure(.text("window: expected a duration such as 15m\n", status: 400)) }
        // Per-minute history covers the last hour; a longer window reads the totals.
        return .success(duration <= .seconds(3600) ? duration : nil)
    }

    /// `/api/dependencies`' `endTs` and `lookback`, in ms; a bad value is the 400 answer.
    static func dependencyRange(_ request: AdminRequest) -> Parsed<(end: UInt64, lookback: UInt64?)> {
        let endMilliseconds: UInt64
        if let text = request.query["endTs"] {
            guard let value = UInt64(text) else {
                return .failure(.json(GraphJSON.dependenciesError("unable to parse param 'endTs': \(text)").encoded(), status: 400))
            }
            endMilliseconds = value
        } else {
            endMilliseconds = wallClockNanos() / 1_000_000
        }
        var lookbackMilliseconds: UInt64?
        if let text = request.query["lookback"] {
            guard let value = UInt64(text) else {
                return .failure(.json(GraphJSON.dependenciesError("unable to parse param 'lookback': \(text)").encoded(), status: 400))
            }
            lookbackMilliseconds = value
        }
        return .success((endMilliseconds, lookbackMilliseconds))
    }

    public var adminRoutes: [AdminRoute] {
        if let cluster = graph.configuration.cluster {
            return clusterRoutes(ClusterGraph(source: PrometheusHTTPQuerier(baseURL: cluster.prometheus, timeout: cluster.timeout)))
        }
        let nodeGraph: @Sendable (AdminRequest) -> AdminResponse = { [self] request in
            switch Self.window(request) {
            case .failure(let answer): return answer
            case .success(let window):
                let since = window.map { wallClockNanos() &- UInt64(clamping: $0.nanoseconds) }
                return .json(GraphJSON.encodeNodeGraph(snapshot(since: since, service: request.query["service"], rendering: true)))
            }
        }
        return [
            AdminRoute("/api/service-graph", respond: nodeGraph),
            AdminRoute("/api/graph/data", respond: nodeGraph),
            AdminRoute("/api/graph/fields") { [self] _ in .json(GraphJSON.fields(nodeDetails: nodeDetailKeys).encoded()) },
            AdminRoute("/api/health") { _ in .text("API is working well!\n") },
            AdminRoute("/api/dependencies") { [self] request in
                switch Self.dependencyRange(request) {
                case .failure(let answer): return answer
                case .success(let (end, lookback)):
                    let since = lookback.map { end > $0 ? (end - $0) * 1_000_000 : 0 }
                    return .json(GraphJSON.dependencies(snapshot(since: since, until: end &* 1_000_000)).encoded())
                }
            },
        ]
    }

    /// The same routes answered from Prometheus.
    func clusterRoutes(_ cluster: ClusterGraph) -> [AdminRoute] {
        let unavailable: @Sendable (any Error) -> AdminResponse = { error in
            .text("cluster graph unavailable: \((error as? ClusterGraphError)?.reason ?? "\(error)")\n", status: 503)
        }
        let nodeGraph: @Sendable (AdminRequest) async -> AdminResponse = { request in
            switch Self.window(request) {
            case .failure(let answer): return answer
            case .success(let window):
                do {
                    return .json(GraphJSON.encodeNodeGraph(try await cluster.snapshot(window: window, service: request.query["service"])))
                } catch {
                    return unavailable(error)
                }
            }
        }
        return [
            AdminRoute("/api/service-graph", respondAsync: nodeGraph),
            AdminRoute("/api/graph/data", respondAsync: nodeGraph),
            AdminRoute("/api/graph/fields", respondAsync: { _ in
                do {
                    return .json(GraphJSON.fields(nodeDetails: try await cluster.detailKeys()).encoded())
                } catch {
                    return unavailable(error)
                }
            }),
            AdminRoute("/api/health") { _ in .text("API is working well!\n") },
            AdminRoute("/api/dependencies", respondAsync: { request in
                switch Self.dependencyRange(request) {
                case .failure(let answer): return answer
                case .success(let (end, lookback)):
                    do {
                        let snapshot = try await cluster.snapshot(window: lookback.map { .milliseconds(Int64(clamping: $0)) },
                                                                  at: Double(end) / 1000)
                        return .json(GraphJSON.dependencies(snapshot).encoded())
                    } catch {
                        return unavailable(error)
                    }
                }
            }),
        ]
    }
}
