/// A GET (or HEAD) request to the admin API, as a component's route sees it.
public struct AdminRequest: Sendable {
    /// The path, without the query (`/api/service-graph`).
    public var path: String
    /// Query parameters, percent-decoded; a parameter without `=` maps to ""; a repeated one to its last value.
    public var query: [String: String]
    /// Every query parameter in request order, repeats included (Jaeger's `tag=a:1&tag=b:2`, `traceID=…&traceID=…`).
    public var queryItems: [(name: String, value: String)]

    /// A request for `path` with `query` (in the dictionary's order as its `queryItems`).
    public init(path: String, query: [String: String] = [:]) {
        self.path = path
        self.query = query
        self.queryItems = query.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }
    }

    /// A request for `path` with these parameters, repeats kept; `query` holds each name's last value.
    public init(path: String, queryItems: [(name: String, value: String)]) {
        self.path = path
        self.queryItems = queryItems
        self.query = Dictionary(queryItems.map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
    }

    /// The values of every parameter named `name`, in request order.
    public func values(_ name: String) -> [String] {
        queryItems.filter { $0.name == name }.map(\.value)
    }

    /// Splits a request target (`/api/alerts?limit=5`) into path and percent-decoded query.
    public init(target: String) {
        guard let mark = target.firstIndex(of: "?") else {
            self.init(path: target)
            return
        }
        var items: [(name: String, value: String)] = []
        for pair in target[target.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { Self.percentDecoded(String($0)) }
            if parts.count == 2 { items.append((parts[0], parts[1])) } else if parts.count == 1 { items.append((parts[0], "")) }
        }
        self.init(path: String(target[..<mark]), queryItems: items)
    }

    /// `%XX` escapes decoded and `+` read as a space (HTML form encoding); malformed escapes are kept as written.
    public static func percentDecoded(_ text: String) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(text.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if byte == UInt8(ascii: "%"), utf8.count >= 2,
                      let value = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(value)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What a route answers.
public struct AdminResponse: Sendable {
    /// The HTTP status code.
    public var status: Int
    /// `content-type`.
    public var contentType: String
    /// The body.
    public var body: [UInt8]

    /// An answer with any body.
    public init(status: Int = 200, contentType: String, body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// A JSON document (`application/json`).
    public static func json(_ body: [UInt8], status: Int = 200) -> AdminResponse {
        AdminResponse(status: status, contentType: "application/json", body: body)
    }

    /// Plain text, one line or more (`text/plain; charset=utf-8`).
    public static func text(_ text: String, status: Int = 200) -> AdminResponse {
        AdminResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
    }
}

/// One path a component serves on the admin API (GET and HEAD).
public struct AdminRoute: Sendable {
    /// The exact path (`/api/service-graph`), or the prefix ending in `/` of the paths it serves (`/api/traces/`).
    public var path: String
    /// When true, `path` is a prefix: the route answers every longer path under it (`/api/traces/{traceID}`)
    /// that no exact route serves; the longest matching prefix wins.
    public var matchesSubpaths: Bool
    /// Answers a request; called on an event loop, so it must not block.
    public var respond: @Sendable (AdminRequest) -> AdminResponse
    /// For a route that must wait (a query to another server): answers off the event loop, suspending,
    /// never blocking; the admin API completes the response when it returns. Nil for the others.
    public var respondAsync: (@Sendable (AdminRequest) async -> AdminResponse)?

    /// A route for exactly `path`.
    public init(_ path: String, respond: @escaping @Sendable (AdminRequest) -> AdminResponse) {
        self.path = path
        self.matchesSubpaths = false
        self.respond = respond
    }

    /// A route for exactly `path` whose answer is awaited (`respondAsync`).
    public init(_ path: String, respondAsync: @escaping @Sendable (AdminRequest) async -> AdminResponse) {
        self.path = path
        self.matchesSubpaths = false
        self.respond = { _ in .text("this route answers asynchronously\n", status: 500) }
        self.respondAsync = respondAsync
    }

    /// A route for every path below `prefix` (which ends in `/`): the handler reads the rest of `request.path`.
    public init(subpathsOf prefix: String, respond: @escaping @Sendable (AdminRequest) -> AdminResponse) {
        self.path = prefix
        self.matchesSubpaths = true
        self.respond = respond
    }
}

/// A component (processor, exporter, or a resource components share) that serves routes on the admin
/// API. The collector gathers them: a component needs no edit outside its own folder to add one. When
/// several instances serve one path (`service_graph/a` and `service_graph/b`), `?processor=ID` (or
/// `?exporter=ID`) picks one; without it the first in configuration order answers.
public protocol AdminRouteProvider: Sendable {
    /// The routes, fixed for the component's lifetime.
    var adminRoutes: [AdminRoute] { get }
}
