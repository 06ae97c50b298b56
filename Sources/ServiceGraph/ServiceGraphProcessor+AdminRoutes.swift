import Pipeline

/// The graph on the admin API: `/api/service-graph` and `/api/graph/data` (Grafana's Node Graph panel),
/// `/api/graph/fields` and `/api/health` (the Node Graph API plugin), `/api/dependencies` (Jaeger's
/// dependencies answer). With several `service_graph` processors, `?processor=service_graph/b` picks one.
extension ServiceGraphProcessor: AdminRouteProvider {
    public var adminRoutes: [AdminRoute] {
        let nodeGraph: @Sendable (AdminRequest) -> AdminResponse = { [self] request in
            var since: UInt64?
            if let window = request.query["window"] {
                guard let duration = Duration(configText: window) else { return .text("window: expected a duration such as 15m\n", status: 400) }
                // Per-minute history covers the last hour; a longer window reads the totals.
                if duration <= .seconds(3600) { since = wallClockNanos() &- UInt64(clamping: duration.nanoseconds) }
            }
            return .json(GraphJSON.encodeNodeGraph(snapshot(since: since, service: request.query["service"], rendering: true)))
        }
        return [
            AdminRoute("/api/service-graph", respond: nodeGraph),
            AdminRoute("/api/graph/data", respond: nodeGraph),
            AdminRoute("/api/graph/fields") { [self] _ in .json(GraphJSON.fields(nodeDetails: nodeDetailKeys).encoded()) },
            AdminRoute("/api/health") { _ in .text("API is working well!\n") },
            AdminRoute("/api/dependencies") { [self] request in
                let endMilliseconds: UInt64
                if let text = request.query["endTs"] {
                    guard let value = UInt64(text) else {
                        return .json(GraphJSON.dependenciesError("unable to parse param 'endTs': \(text)").encoded(), status: 400)
                    }
                    endMilliseconds = value
                } else {
                    endMilliseconds = wallClockNanos() / 1_000_000
                }
                var lookbackMilliseconds: UInt64?
                if let text = request.query["lookback"] {
                    guard let value = UInt64(text) else {
                        return .json(GraphJSON.dependenciesError("unable to parse param 'lookback': \(text)").encoded(), status: 400)
                    }
                    lookbackMilliseconds = value
                }
                let since = lookbackMilliseconds.map { endMilliseconds > $0 ? (endMilliseconds - $0) * 1_000_000 : 0 }
                return .json(GraphJSON.dependencies(snapshot(since: since, until: endMilliseconds &* 1_000_000)).encoded())
            },
        ]
    }
}
