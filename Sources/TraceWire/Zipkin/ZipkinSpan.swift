#if canImport(Glibc)
import Glibc
#endif
import TraceModel

/// A Zipkin v2 span (zipkin2-api.yaml `Span`), the shape both the JSON and the proto3 encodings take.
public struct ZipkinSpan: Sendable, Equatable {
    /// Zipkin's span kinds; INTERNAL has none.
    public enum Kind: String, Sendable {
        case client = "CLIENT", server = "SERVER", producer = "PRODUCER", consumer = "CONSUMER"
    }

    /// A service and network address.
    public struct Endpoint: Sendable, Equatable {
        public var serviceName: String?
        /// 4 bytes, or nil.
        public var ipv4: [UInt8]?
        /// 16 bytes, or nil.
        public var ipv6: [UInt8]?
        public var port: Int?
    }

    public var traceID: TraceID
    public var parentID: SpanID?
    public var id: SpanID
    public var kind: Kind?
    public var name: String
    /// Epoch microseconds; nil when the start is unknown.
    public var timestamp: UInt64?
    /// Microseconds, at least 1; nil when unknown.
    public var duration: UInt64?
    public var localEndpoint: Endpoint
    public var remoteEndpoint: Endpoint?
    /// (epoch µs, value)
    public var annotations: [(timestamp: UInt64, value: String)]
    /// In the order keys were first set.
    public var tags: [(key: String, value: String)]

    public static func == (lhs: ZipkinSpan, rhs: ZipkinSpan) -> Bool {
        lhs.traceID == rhs.traceID && lhs.parentID == rhs.parentID && lhs.id == rhs.id && lhs.kind == rhs.kind
            && lhs.name == rhs.name && lhs.timestamp == rhs.timestamp && lhs.duration == rhs.duration
            && lhs.localEndpoint == rhs.localEndpoint && lhs.remoteEndpoint == rhs.remoteEndpoint
            && lhs.annotations.elementsEqual(rhs.annotations, by: { $0 == $1 }) && lhs.tags.elementsEqual(rhs.tags, by: { $0 == $1 })
    }
}

/// Maps OTLP spans to Zipkin v2, as docs/exporter-mappings.md §1 sets out (the OpenTelemetry
/// specification's Zipkin exporter rules, with the Collector's formats where the specification is open).
public enum ZipkinTranslator {
    /// Where a span's remote endpoint is read from: which attributes name the remote service and its
    /// address and port, best first.
    struct RemoteKeys: Sendable {
        let service: [String]
        let address: [String]
        let port: [String]
        /// Bit n set when some key is n bytes long (all are under 64): most attributes are passed over on their length.
        let lengths: UInt64

        init(service: [String], address: [String], port: [String]) {
            (self.service, self.address, self.port) = (service, address, port)
            lengths = (service + address + port).reduce(0) { $0 | 1 << UInt64($1.utf8.count) }
        }

        /// CLIENT, PRODUCER and INTERNAL spans: zipkin.md "Remote endpoint" ranking. "If Zipkin
        /// `SpanKind` resolves to either `SpanKind.CLIENT` or `SpanKind.PRODUCER` then the service SHOULD
        /// specify remote endpoint otherwise Zipkin won't treat the Span as a dependency."
        static let outgoing = RemoteKeys(
            service: ["peer.service", "server.address", "net.peer.name", "server.socket.domain",
                      "net.sock.peer.name", "peer.hostname", "peer.address", "db.name"],
            address: ["network.peer.address", "server.socket.address", "net.sock.peer.addr", "net.peer.ip"],
            port: ["network.peer.port", "server.socket.port", "net.sock.peer.port", "net.peer.port"])

        /// SERVER and CONSUMER spans: only attributes that name the caller. On these spans
        /// `server.address` (and the legacy `net.peer.name`) is the span's own host, so ranking it would
        /// make Zipkin's dependency linker draw a link from this host to this service. `client.address`
        /// names the caller when it is a host name; as an IP literal it is the caller's address.
        static let incoming = RemoteKeys(
            service: ["peer.service", "client.address"],
            address: ["network.peer.address", "net.sock.peer.addr", "net.peer.ip", "client.address"],
            port: ["network.peer.port", "net.sock.peer.port", "net.peer.port", "client.port"])
    }

    /// Every span of the batch, in order.
    public static func spans(from batch: SpanBatch) -> [ZipkinSpan] {
        var result: [ZipkinSpan] = []
        result.reserveCapacity(batch.spanCount)
        for resourceSpans in batch.resourceSpans {
            let serviceName = resourceSpans.resource.serviceName.flatMap { $0.isEmpty ? nil : $0 } ?? "unknown_service"
            var resourceTags = TagList()
            for attribute in resourceSpans.resource.attributes where attribute.key != "service.name" {
                resourceTags.set(attribute.key, AttributeText.string(attribute.value))
            }
            for scopeSpans in resourceSpans.scopeSpans {
                var scopeTags = resourceTags
                let scope = scopeSpans.scope
                if !scope.name.isEmpty {
                    scopeTags.set("otel.scope.name", scope.name)
                    scopeTags.set("otel.library.name", scope.name)
                }
                if !scope.version.isEmpty {
                    scopeTags.set("otel.scope.version", scope.version)
                    scopeTags.set("otel.library.version", scope.version)
                }
                for attribute in scope.attributes { scopeTags.set(attribute.key, AttributeText.string(attribute.value)) }
                let inherited = scopeTags.sealed()
                for span in scopeSpans.spans where span.traceID.isValid && span.spanID.isValid {
                    result.append(self.span(span, serviceName: serviceName, inheritedTags: inherited))
                }
            }
        }
        return result
    }

    static func span(_ span: Span, serviceName: String, inheritedTags: TagList) -> ZipkinSpan {
        var tags = inheritedTags
        for attribute in span.attributes { tags.set(attribute.key, AttributeText.string(attribute.value)) }
        let kind: ZipkinSpan.Kind? = switch span.kind {
        case .client: .client
        case .server: .server
        case .producer: .producer
        case .consumer: .consumer
        case .internal, .unspecified: nil
        }
        if span.kind == .internal { tags.set("span.kind", "internal") }
        switch span.status.code {
        case .ok:
            tags.set("otel.status_code", "OK")
            tags.remove("error")
        case .error:
            tags.set("otel.status_code", "ERROR")
            tags.set("error", span.status.message)
        case .unset:
            tags.remove("error")
        }
        if span.status.code != .unset, !span.status.message.isEmpty { tags.set("otel.status_description", span.status.message) }
        if !span.traceState.isEmpty { tags.set("w3c.tracestate", span.traceState) }
        for (index, link) in span.links.enumerated() {
            tags.set("otlp.link.\(index)", "\(link.traceID.hex)|\(link.spanID.hex)|\(link.traceState)|"
                + "\(AttributeText.jsonObject(link.attributes))|\(link.droppedAttributesCount)")
        }
        if span.droppedAttributesCount > 0 { tags.set("otel.dropped_attributes_count", String(span.droppedAttributesCount)) }
        if span.droppedEventsCount > 0 { tags.set("otel.dropped_events_count", String(span.droppedEventsCount)) }
        if span.droppedLinksCount > 0 { tags.set("otel.dropped_links_count", String(span.droppedLinksCount)) }

        let start = span.startTimeUnixNano
        let end = span.endTimeUnixNano
        return ZipkinSpan(
            traceID: span.traceID,
            parentID: span.parentSpanID.isValid ? span.parentSpanID : nil,
            id: span.spanID,
            kind: kind,
            name: span.name,
            timestamp: start == 0 ? nil : start / 1000,
            duration: start == 0 || end == 0 || end < start ? nil : max(1, (end - start) / 1000),
            localEndpoint: ZipkinSpan.Endpoint(serviceName: serviceName),
            remoteEndpoint: remoteEndpoint(span.attributes, keys: span.kind == .server || span.kind == .consumer ? .incoming : .outgoing),
            annotations: span.events.map { event in
                let value = event.attributes.isEmpty && event.droppedAttributesCount == 0
                    ? event.name
                    : "\(event.name)|\(AttributeText.jsonObject(event.attributes))|\(event.droppedAttributesCount)"
                return (event.timeUnixNano / 1000, value)
            },
            tags: tags.tags
        )
    }

    /// The remote endpoint: for each part, the best-ranked key whose (first) value serves. One pass over the
    /// attributes, each key compared with the rankings by length first, rather than a search per ranked key.
    static func remoteEndpoint(_ attributes: [Attribute], keys: RemoteKeys = .outgoing) -> ZipkinSpan.Endpoint? {
        var endpoint = ZipkinSpan.Endpoint()
        var serviceRank = Int.max, addressRank = Int.max, portRank = Int.max
        // Ranks already met: later attributes with the same key are not the value `attributes[key]` reads.
        var seenService: UInt32 = 0, seenAddress: UInt32 = 0, seenPort: UInt32 = 0
        func rank(of key: String, in ranking: [String], seen: inout UInt32) -> Int? {
            let length = key.utf8.count
            for (rank, candidate) in ranking.enumerated() where candidate.utf8.count == length && candidate == key {
                let bit: UInt32 = 1 << UInt32(rank)
                let first = seen & bit == 0
                seen |= bit
                return first ? rank : nil
            }
            return nil
        }
        let lengths = keys.lengths
        for attribute in attributes {
            let key = attribute.key
            let length = key.utf8.count
            guard length < 64, lengths & (1 << UInt64(length)) != 0 else { continue }
            if let rank = rank(of: key, in: keys.service, seen: &seenService), rank < serviceRank {
                let text = AttributeText.string(attribute.value)
                // An IP literal in client.address is the caller's address, not its name.
                let isAddress = key == "client.address" && (IPAddress.v4(text) != nil || IPAddress.v6(text) != nil)
                if !text.isEmpty, !isAddress { (serviceRank, endpoint.serviceName) = (rank, text) }
            }
            if let rank = rank(of: key, in: keys.address, seen: &seenAddress), rank < addressRank, let text = attribute.value.stringValue {
                if let v4 = IPAddress.v4(text) {
                    (addressRank, endpoint.ipv4, endpoint.ipv6) = (rank, v4, nil)
                } else if let v6 = IPAddress.v6(text) {
                    addressRank = rank
                    if v6.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] {
                        (endpoint.ipv4, endpoint.ipv6) = (Array(v6.suffix(4)), nil)
                    } else {
                        (endpoint.ipv4, endpoint.ipv6) = (nil, v6)
                    }
                }
            }
            if let rank = rank(of: key, in: keys.port, seen: &seenPort), rank < portRank {
                let port: Int? = switch attribute.value {
                case .int(let number): Int(exactly: number)
                case .string(let text): Int(text)
                default: nil
                }
                if let port, (1...65535).contains(port) { (portRank, endpoint.port) = (rank, port) }
            }
        }
        guard endpoint.serviceName != nil || endpoint.ipv4 != nil || endpoint.ipv6 != nil else { return nil }
        return endpoint
    }
}

/// Tags with one value per key, in the order keys were first set; a later `set` replaces the value.
/// Built once per resource and scope, then copied per span: the copy shares the key index with the
/// original, and keys a span adds are found by a short scan instead of a fresh dictionary per span.
struct TagList {
    private(set) var entries: [(key: String, value: String)] = []
    /// Positions of the keys set before the first copy; shared by copies.
    private var index: [String: Int] = [:]
    /// Entries from here on were added after `sealed()` and are not in `index`.
    private var firstUnindexed = 0
    private var isSealed = false
    /// Entries blanked by `remove`.
    private var removed = 0

    /// A copy whose later additions do not grow the shared index.
    func sealed() -> TagList {
        var copy = self
        copy.firstUnindexed = copy.entries.count
        copy.isSealed = true
        return copy
    }

    /// Up to this many tags, a key is found by comparing lengths, then the few of its length, rather than by
    /// hashing it (a span's tags are mostly its resource's dozen and its own).
    static let scannedAtMost = 24

    private func position(of key: String) -> Int? {
        let length = key.utf8.count
        var position = firstUnindexed
        if entries.count <= Self.scannedAtMost {
            position = 0
        } else if let indexed = index[key], indexed < entries.count, entries[indexed].key == key {
            return indexed
        }
        while position < entries.count {
            if entries[position].key.utf8.count == length, entries[position].key == key { return position }
            position += 1
        }
        return nil
    }

    mutating func set(_ key: String, _ value: String) {
        if let position = position(of: key) {
            entries[position].value = value
        } else if !isSealed {
            index[key] = entries.count
            entries.append((key, value))
            firstUnindexed = entries.count
        } else {
            entries.append((key, value))
        }
    }

    mutating func remove(_ key: String) {
        guard let position = position(of: key) else { return }
        // Keep positions stable for the shared index: blank the key instead of shifting.
        entries[position] = ("", "")
        removed += 1
    }

    /// The tags, without removed ones (the entries themselves, uncopied, when none was).
    var tags: [(key: String, value: String)] { removed == 0 ? entries : entries.filter { !$0.key.isEmpty } }
}

/// IP address literals, parsed by the C library.
enum IPAddress {
    static func v4(_ text: String) -> [UInt8]? {
        var address = in_addr()
        guard inet_pton(AF_INET, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    static func v6(_ text: String) -> [UInt8]? {
        var address = in6_addr()
        guard inet_pton(AF_INET6, text, &address) == 1 else { return nil }
        return withUnsafeBytes(of: &address) { Array($0) }
    }

    static func text(v4 bytes: [UInt8]) -> String { bytes.map(String.init).joined(separator: ".") }

    static func text(v6 bytes: [UInt8]) -> String {
        var address = in6_addr()
        withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &address, &buffer, socklen_t(buffer.count)) != nil else { return "" }
        return String(cString: buffer)
    }
}
