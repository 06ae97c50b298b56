import AsyncHTTPClient
import Foundation
import NIOCore
import TraceModel

/// One sample of a Prometheus instant vector: its labels and value.
public struct PrometheusSample: Sendable, Equatable {
    /// The sample's labels (those the query kept).
    public var labels: [String: String]
    /// Its value.
    public var value: Double

    /// A sample with `labels` and `value`.
    public init(_ labels: [String: String], _ value: Double) {
        self.labels = labels
        self.value = value
    }
}

/// Why the cluster graph cannot be answered; the admin API answers 503 with it, never a partial graph.
public struct ClusterGraphError: Error, CustomStringConvertible, Sendable {
    /// What went wrong, for the 503 answer.
    public var reason: String
    /// An error saying `reason`.
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Asks Prometheus one instant query (`/api/v1/query`).
public protocol PrometheusQuerying: Sendable {
    /// The query's instant vector, evaluated at `time` (Unix seconds; now when nil).
    func query(_ promQL: String, at time: Double?) async throws(ClusterGraphError) -> [PrometheusSample]
}

/// Prometheus's HTTP API over AsyncHTTPClient's shared client (NIO: the caller suspends, no thread waits).
public struct PrometheusHTTPQuerier: PrometheusQuerying {
    /// The base URL (`http://prometheus:9090`).
    public let baseURL: String
    /// How long one query may take.
    public let timeout: Duration

    /// A querier of the Prometheus at `baseURL`, each query allowed `timeout`.
    public init(baseURL: String, timeout: Duration) {
        self.baseURL = baseURL
        self.timeout = timeout
    }

    /// GETs `/api/v1/query`; an unreachable server, an error status or a body that is not the query API's
    /// JSON is a `ClusterGraphError` saying so.
    public func query(_ promQL: String, at time: Double?) async throws(ClusterGraphError) -> [PrometheusSample] {
        guard var components = URLComponents(string: baseURL + "/api/v1/query") else {
            throw ClusterGraphError("cannot make a query URL from \(baseURL)")
        }
        components.queryItems = [URLQueryItem(name: "query", value: promQL)] + (time.map { [URLQueryItem(name: "time", value: String($0))] } ?? [])
        // `+` is a space in a query string: PromQL's own `+` must be escaped.
        guard let url = components.string?.replacingOccurrences(of: "+", with: "%2B") else {
            throw ClusterGraphError("cannot make a query URL from \(baseURL)")
        }
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "accept", value: "application/json")
        let body: ByteBuffer
        let status: UInt
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .nanoseconds(timeout.nanoseconds))
            status = response.status.code
            body = try await response.body.collect(upTo: 32 << 20)
        } catch {
            throw ClusterGraphError("cannot reach Prometheus at \(baseURL): \(error)")
        }
        return try Self.decode(Array(body.readableBytesView), status: Int(status), baseURL: baseURL)
    }

    /// The samples of an `/api/v1/query` answer (`{"status":"success","data":{"resultType":"vector",…}}`).
    static func decode(_ body: [UInt8], status: Int, baseURL: String) throws(ClusterGraphError) -> [PrometheusSample] {
        let answer: QueryAnswer
        do {
            answer = try JSONDecoder().decode(QueryAnswer.self, from: Data(body))
        } catch {
            throw ClusterGraphError("Prometheus at \(baseURL) answered HTTP \(status) that is not its query API's JSON")
        }
        guard answer.status == "success", let data = answer.data else {
            throw ClusterGraphError("Prometheus at \(baseURL) refused the query: \(answer.errorType ?? "error"): \(answer.error ?? "HTTP \(status)")")
        }
        guard data.resultType == "vector" else { throw ClusterGraphError("Prometheus answered a \(data.resultType), not a vector") }
        return data.result.compactMap { sample in
            guard sample.value.count == 2, case .text(let text) = sample.value[1], let value = Double(text) else { return nil }
            return PrometheusSample(sample.metric, value)
        }
    }

    struct QueryAnswer: Decodable {
        var status: String
        var data: QueryData?
        var errorType: String?
        var error: String?
    }

    struct QueryData: Decodable {
        var resultType: String
        var result: [VectorSample]
    }

    struct VectorSample: Decodable {
        var metric: [String: String]
        var value: [Scalar]
    }

    /// `[1700000000.123, "42"]`: a time and a value as text.
    enum Scalar: Decodable {
        case time(Double)
        case text(String)

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) { self = .text(text) } else { self = .time(try container.decode(Double.self)) }
        }
    }
}

/// The graph of every replica, from the series each exports (Tempo's `traces_service_graph_*`, and the
/// node details AgentTrace adds), summed over replicas by Prometheus; the same snapshot the local graph
/// gives, so the same JSON. Counts are whole calls: `increase()` extrapolates to the window's edges, so a
/// windowed count is rounded. Percentiles come from the histograms' buckets (interpolated as
/// `histogram_quantile` does), not from the local latency sketch, so they are coarser.
public struct ClusterGraph: Sendable {
    let source: any PrometheusQuerying

    /// A cluster graph asking `source`.
    public init(source: any PrometheusQuerying) {
        self.source = source
    }

    /// What is asked of Prometheus for one answer.
    enum Query: CaseIterable {
        case requests, failed, serverSum, serverCount, serverBuckets, clientBuckets, inputTokens, outputTokens, details
    }

    /// The counts that a window subtracts: the edges' counters and histograms (tokens are totals, as in the
    /// local graph; details are current).
    static let windowed: [Query] = [.requests, .failed, .serverSum, .serverCount, .serverBuckets, .clientBuckets]

    /// The PromQL of `query`: summed over replicas (and over the dimensions, as the local graph merges edges
    /// that differ only in them); the totals, or with `offset` the totals as they were that long before.
    static func promQL(_ query: Query, offset: Duration? = nil) -> String {
        func edges(_ metric: String, by extra: String = "") -> String {
            let series = offset.map { "\(metric) offset \(max(1, $0.components.seconds))s" } ?? metric
            return "sum by (client, server, connection_type\(extra)) (\(series))"
        }
        switch query {
        case .requests: return edges("traces_service_graph_request_total")
        case .failed: return edges("traces_service_graph_request_failed_total")
        case .serverSum: return edges("traces_service_graph_request_server_seconds_sum")
        case .serverCount: return edges("traces_service_graph_request_server_seconds_count")
        case .serverBuckets: return edges("traces_service_graph_request_server_seconds_bucket", by: ", le")
        case .clientBuckets: return edges("traces_service_graph_request_client_seconds_bucket", by: ", le")
        case .inputTokens: return "sum by (node) (\(ServiceGraph.NodeSeries.inputTokens))"
        case .outputTokens: return "sum by (node) (\(ServiceGraph.NodeSeries.outputTokens))"
        case .details: return "max by (node, key, value) (\(ServiceGraph.NodeSeries.detail)) == 1"
        }
    }

    /// The graph over the last `window` (nil: totals) as of `time` (Unix seconds; nil: now), optionally only
    /// the edges touching `service`. Every query must succeed, else the error says which failed and why.
    ///
    /// A window is the totals now minus the totals `window` ago, per series (a series that did not exist
    /// then counts from zero; one whose replica restarted meanwhile counts from its restart). PromQL's
    /// `increase()` would lose the first calls of an edge born inside the window (it needs two samples) and
    /// extrapolates to the window's edges; the difference counts whole calls, as the local graph's window does.
    public func snapshot(window: Duration?, at time: Double? = nil, service: String? = nil) async throws(ClusterGraphError) -> GraphSnapshot {
        let source = self.source
        var asked: [(query: Query, earlier: Bool)] = Query.allCases.map { ($0, false) }
        if window != nil { asked += Self.windowed.map { ($0, true) } }
        var now: [Query: [PrometheusSample]] = [:]
        var then: [Query: [PrometheusSample]] = [:]
        do {
            let answers = try await withThrowingTaskGroup(of: (Query, Bool, [PrometheusSample]).self) { group in
                for (query, earlier) in asked {
                    group.addTask { (query, earlier, try await source.query(Self.promQL(query, offset: earlier ? window : nil), at: time)) }
                }
                var answers: [(Query, Bool, [PrometheusSample])] = []
                for try await answer in group { answers.append(answer) }
                return answers
            }
            for (query, earlier, samples) in answers {
                if earlier { then[query] = samples } else { now[query] = samples }
            }
        } catch let error as ClusterGraphError {
            throw error
        } catch {
            throw ClusterGraphError("\(error)")
        }
        if window != nil {
            for query in Self.windowed { now[query] = Self.difference(now[query] ?? [], then[query] ?? []) }
        }
        return Self.build(now, windowed: window != nil, service: service)
    }

    /// `now` minus `then`, series by series (same labels); a series missing from `then` counts from zero, and
    /// one that went down (its replica restarted, so its counter did) counts from the restart: `now` itself.
    static func difference(_ now: [PrometheusSample], _ then: [PrometheusSample]) -> [PrometheusSample] {
        var earlier: [[String: String]: Double] = [:]
        for sample in then { earlier[sample.labels, default: 0] += sample.value }
        return now.map { sample in
            let before = earlier[sample.labels] ?? 0
            return PrometheusSample(sample.labels, sample.value >= before ? sample.value - before : sample.value)
        }
    }

    /// The `agent.*` keys some node has now, sorted: `/api/graph/fields`' node detail fields.
    public func detailKeys() async throws(ClusterGraphError) -> [String] {
        let samples = try await source.query("group by (key) (\(ServiceGraph.NodeSeries.detail) == 1)", at: nil)
        return Set(samples.compactMap { $0.labels["key"] }).sorted()
    }

    /// The snapshot from the query results.
    static func build(_ results: [Query: [PrometheusSample]], windowed: Bool, service: String?) -> GraphSnapshot {
        struct Key: Hashable, Comparable {
            var client: String, server: String, connectionType: String
            var id: String { GraphSnapshot.Edge.id(source: client, target: server, connectionType: connectionType) }
            static func < (lhs: Key, rhs: Key) -> Bool { lhs.id < rhs.id }
        }
        func key(_ sample: PrometheusSample) -> Key {
            Key(client: sample.labels["client"] ?? "", server: sample.labels["server"] ?? "",
                connectionType: sample.labels["connection_type"] ?? "")
        }
        func byEdge(_ query: Query) -> [Key: Double] {
            var values: [Key: Double] = [:]
            for sample in results[query] ?? [] where sample.value.isFinite { values[key(sample), default: 0] += sample.value }
            return values
        }
        func buckets(_ query: Query) -> [Key: [(bound: Double, count: Double)]] {
            var values: [Key: [(bound: Double, count: Double)]] = [:]
            for sample in results[query] ?? [] {
                guard let text = sample.labels["le"], let bound = text == "+Inf" ? Double.infinity : Double(text) else { continue }
                values[key(sample), default: []].append((bound, sample.value))
            }
            return values.mapValues { $0.sorted { $0.bound < $1.bound } }
        }
        let requests = byEdge(.requests), failed = byEdge(.failed)
        let serverSum = byEdge(.serverSum), serverCount = byEdge(.serverCount)
        let serverBuckets = buckets(.serverBuckets), clientBuckets = buckets(.clientBuckets)
        // Each call's duration is the server side's, else the client side's, as in the local graph.
        func latency(_ key: Key) -> [(bound: Double, count: Double)] {
            if let server = serverBuckets[key], (server.last?.count ?? 0) > 0 { return server }
            return clientBuckets[key] ?? []
        }
        var snapshot = GraphSnapshot()
        var nodeCounts: [String: (requests: Int, failed: Int, buckets: [(bound: Double, count: Double)])] = [:]
        var touched: Set<String> = []
        for key in requests.keys.sorted() {
            let calls = Int(requests[key, default: 0].rounded())
            guard calls > 0 || !windowed else { continue }
            let failures = min(Int(failed[key, default: 0].rounded()), calls)
            var node = nodeCounts[key.server] ?? (0, 0, [])
            node.requests += calls
            node.failed += failures
            node.buckets = merge(node.buckets, latency(key))
            nodeCounts[key.server] = node
            if let service, key.client != service, key.server != service { continue }
            var edge = GraphSnapshot.Edge(id: key.id, source: key.client, target: key.server, connectionType: key.connectionType,
                                          requests: calls, failed: failures, meanServerMilliseconds: nil)
            if let count = serverCount[key], count > 0, let sum = serverSum[key] { edge.meanServerMilliseconds = sum / count * 1000 }
            edge.percentiles = percentiles(latency(key))
            snapshot.edges.append(edge)
            touched.insert(key.client)
            touched.insert(key.server)
        }
        var tokens: [String: (input: Int64, output: Int64)] = [:]
        for sample in results[.inputTokens] ?? [] { tokens[sample.labels["node"] ?? "", default: (0, 0)].input += Int64(sample.value.rounded()) }
        for sample in results[.outputTokens] ?? [] { tokens[sample.labels["node"] ?? "", default: (0, 0)].output += Int64(sample.value.rounded()) }
        var details: [String: [Attribute]] = [:]
        for sample in results[.details] ?? [] {
            guard let node = sample.labels["node"], let key = sample.labels["key"] else { continue }
            guard !(details[node] ?? []).contains(where: { $0.key == key }) else { continue }
            details[node, default: []].append(Attribute(key, .string(sample.labels["value"] ?? "")))
        }
        for name in touched.sorted() {
            let counts = nodeCounts[name] ?? (0, 0, [])
            let usage = tokens[name] ?? (0, 0)
            snapshot.nodes.append(GraphSnapshot.Node(id: name, requests: counts.requests, failed: counts.failed,
                                                     percentiles: percentiles(counts.buckets), inputTokens: usage.input,
                                                     outputTokens: usage.output,
                                                     details: (details[name] ?? []).sorted { $0.key < $1.key }))
        }
        snapshot.assignKindsAndDetailFields()
        return snapshot
    }

    /// Two cumulative histograms with the same bounds, added (one alone when the other is empty).
    static func merge(_ one: [(bound: Double, count: Double)], _ other: [(bound: Double, count: Double)]) -> [(bound: Double, count: Double)] {
        guard !one.isEmpty else { return other }
        guard !other.isEmpty else { return one }
        var counts: [Double: Double] = [:]
        for bucket in one + other { counts[bucket.bound, default: 0] += bucket.count }
        return counts.map { ($0.key, $0.value) }.sorted { $0.bound < $1.bound }
    }

    /// p50, p95, p99 in ms from cumulative buckets, interpolated within a bucket as Prometheus's
    /// `histogram_quantile` does (a quantile in the +Inf bucket is the highest finite bound); empty without calls.
    static func percentiles(_ buckets: [(bound: Double, count: Double)]) -> [Double] {
        guard let total = buckets.last?.count, total > 0 else { return [] }
        return [0.5, 0.95, 0.99].map { quantile in
            let rank = quantile * total
            var lowerBound = 0.0, lowerCount = 0.0
            for bucket in buckets {
                if bucket.count >= rank {
                    guard bucket.bound.isFinite else { return (lowerBound * 1000 * 1000).rounded() / 1000 }
                    let inBucket = bucket.count - lowerCount
                    let seconds = inBucket > 0 ? lowerBound + (bucket.bound - lowerBound) * (rank - lowerCount) / inBucket : bucket.bound
                    return (seconds * 1000 * 1000).rounded() / 1000
                }
                (lowerBound, lowerCount) = (bucket.bound, bucket.count)
            }
            return (lowerBound * 1000 * 1000).rounded() / 1000
        }
    }
}
