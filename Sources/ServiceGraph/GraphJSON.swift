import JSONText
import TraceModel

/// The graph in the JSON shapes its consumers read: Grafana's Node Graph panel (through the Infinity
/// datasource or the Node Graph API plugin) and Jaeger's dependencies API.
public enum GraphJSON {
    /// The kind an edge of `connectionType` gives its target node; `service` gives way to any other kind.
    static func targetKind(_ connectionType: String) -> String {
        switch connectionType {
        case "model": "model"
        case "tool": "tool"
        case "database": "database"
        case "virtual_node": "external"
        default: "service"  // requests and messaging_system
        }
    }

    /// The Node Graph field for a node's agent attribute: `agent.type` → `detail__agent_type`.
    public static func detailField(_ key: String) -> String {
        // ASCII keys (all of them in practice) byte by byte; others by Character, one `_` per Character
        // (as is "\r\n").
        guard key.utf8.allSatisfy({ $0 < 0x80 && $0 != 0x0D }) else {
            return "detail__" + String(key.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
        }
        let alphanumeric = { (byte: UInt8) in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        }
        return "detail__" + String(decoding: key.utf8.map { alphanumeric($0) ? $0 : UInt8(ascii: "_") }, as: UTF8.self)
    }

    /// A node's agent attributes as Node Graph detail fields with text values, sorted by field, first key
    /// winning when two map to one field. Made once when a node's attributes change, not per answer.
    static func detailFields(_ details: [Attribute]) -> [(field: String, text: String)] {
        var result: [(field: String, text: String)] = []
        for attribute in details {
            let field = detailField(attribute.key)
            guard !result.contains(where: { $0.field == field }) else { continue }
            result.append((field, detailText(attribute.value)))
        }
        return result.sorted { $0.field < $1.field }
    }

    static func detailText(_ value: AttributeValue) -> String {
        switch value {
        case .array(let elements): elements.map(detailText).joined(separator: ", ")
        case .bytes(let bytes): bytes.map { String($0, radix: 16) }.joined()
        case .keyValueList(let attributes): attributes.map { "\($0.key)=\(detailText($0.value))" }.joined(separator: ", ")
        case .empty: ""
        default: AttributeText.plain(value)
        }
    }

    static func rate(_ failed: Int, _ requests: Int) -> Double {
        requests == 0 ? 0 : (Double(failed) / Double(requests) * 10_000).rounded() / 100
    }

    /// Node Graph panel frames, `{"edges":[…],"nodes":[…]}`, written straight from the snapshot with
    /// `JSONWriter`, members in sorted order so the same graph always gives the same bytes. Each edge and
    /// node object is `edgeObject`'s or `nodeObject`'s, or the same bytes the snapshot kept from an earlier
    /// answer for an edge or node that has not changed since (`ServiceGraph.snapshot(rendering:)`).
    public static func encodeNodeGraph(_ snapshot: GraphSnapshot) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(256 * (snapshot.edges.count + snapshot.nodes.count) + 64)
        bytes.append(contentsOf: #"{"edges":["#.utf8)
        for (position, edge) in snapshot.edges.enumerated() {
            if position > 0 { bytes.append(UInt8(ascii: ",")) }
            if let json = edge.json { bytes.append(contentsOf: json) } else { bytes.append(contentsOf: edgeObject(edge)) }
        }
        bytes.append(contentsOf: #"],"nodes":["#.utf8)
        for (position, node) in snapshot.nodes.enumerated() {
            if position > 0 { bytes.append(UInt8(ascii: ",")) }
            if let json = node.json { bytes.append(contentsOf: json) } else { bytes.append(contentsOf: nodeObject(node)) }
        }
        bytes.append(contentsOf: "]}".utf8)
        return bytes
    }

    /// One edge of the Node Graph answer.
    static func edgeObject(_ edge: GraphSnapshot.Edge) -> [UInt8] {
        var out = JSONWriter(capacity: 320)
        out.beginObject()
        out.key("detail__connection_type"); out.string(edge.connectionType)
        out.key("detail__failed"); out.integer(edge.failed)
        if let mean = edge.meanServerMilliseconds { out.key("detail__mean_server_ms"); out.number((mean * 1000).rounded() / 1000) }
        writePercentiles(edge.percentiles, to: &out)
        out.key("detail__requests"); out.integer(edge.requests)
        out.key("id"); out.string(edge.id)
        out.key("mainstat"); out.integer(edge.requests)
        out.key("secondarystat"); out.number(rate(edge.failed, edge.requests))
        out.key("source"); out.string(edge.source)
        out.key("target"); out.string(edge.target)
        out.endObject()
        return out.bytes
    }

    /// `detail__p50_ms`, `detail__p95_ms`, `detail__p99_ms` of an edge or node, when it has them.
    private static func writePercentiles(_ percentiles: [Double], to out: inout JSONWriter) {
        guard percentiles.count == 3 else { return }
        out.key("detail__p50_ms"); out.number(percentiles[0])
        out.key("detail__p95_ms"); out.number(percentiles[1])
        out.key("detail__p99_ms"); out.number(percentiles[2])
    }

    /// One node of the Node Graph answer.
    static func nodeObject(_ node: GraphSnapshot.Node) -> [UInt8] {
        var out = JSONWriter(capacity: 384)
        out.beginObject()
        out.key("arc__failed"); out.number(node.requests == 0 ? 0 : Double(node.failed) / Double(node.requests))
        out.key("arc__success"); out.number(node.requests == 0 ? 1 : Double(node.requests - node.failed) / Double(node.requests))
        // detail__agent_… sort before detail__errors.
        for (field, text) in node.detailFields {
            out.dynamicKey(field); out.string(text)
        }
        out.key("detail__errors"); out.integer(node.failed)
        out.key("detail__input_tokens"); out.integer(node.inputTokens)
        out.key("detail__output_tokens"); out.integer(node.outputTokens)
        writePercentiles(node.percentiles, to: &out)
        out.key("detail__requests"); out.integer(node.requests)
        out.key("id"); out.string(node.id)
        out.key("mainstat"); out.integer(node.requests)
        out.key("secondarystat"); out.number(rate(node.failed, node.requests))
        out.key("subtitle"); out.string(node.kind)
        out.key("title"); out.string(node.id)
        out.endObject()
        return out.bytes
    }

    /// The Node Graph API plugin's `/api/graph/fields`; `nodeDetails` are the agent attribute keys nodes carry
    /// (`agent.type`), declared as string detail fields.
    public static func fields(nodeDetails: [String] = []) -> JSONValue {
        func field(_ name: String, _ type: String, _ display: String, color: String? = nil) -> JSONValue {
            // Members in sorted order, as every document here.
            var members: [(String, JSONValue)] = []
            if let color { members.append(("color", .string(color))) }
            members += [("displayName", .string(display)), ("field_name", .string(name)), ("type", .string(type))]
            return .object(members)
        }
        let details = Dictionary(nodeDetails.map { (detailField($0), $0) }, uniquingKeysWith: { first, _ in first })
            .sorted { $0.key < $1.key }.map { field($0.key, "string", $0.value) }
        return .object([
            ("edges_fields", .array([
                field("id", "string", "Edge"), field("source", "string", "Source"), field("target", "string", "Target"),
                field("mainstat", "number", "Requests"), field("secondarystat", "number", "Error rate (%)"),
                field("detail__requests", "number", "Requests"), field("detail__failed", "number", "Failed"),
                field("detail__connection_type", "string", "Connection"), field("detail__mean_server_ms", "number", "Mean server time (ms)"),
                field("detail__p50_ms", "number", "p50 (ms)"), field("detail__p95_ms", "number", "p95 (ms)"),
                field("detail__p99_ms", "number", "p99 (ms)"),
            ])),
            ("nodes_fields", .array([
                field("id", "string", "Node"), field("title", "string", "Name"), field("subtitle", "string", "Kind"),
                field("mainstat", "number", "Requests"), field("secondarystat", "number", "Error rate (%)"),
                field("arc__success", "number", "Success", color: "green"), field("arc__failed", "number", "Failed", color: "red"),
                field("detail__requests", "number", "Requests"), field("detail__errors", "number", "Errors"),
                field("detail__p50_ms", "number", "p50 (ms)"), field("detail__p95_ms", "number", "p95 (ms)"),
                field("detail__p99_ms", "number", "p99 (ms)"), field("detail__input_tokens", "number", "Input tokens"),
                field("detail__output_tokens", "number", "Output tokens"),
            ] + details)),
        ])
    }

    /// Jaeger's `/api/dependencies` answer.
    public static func dependencies(_ snapshot: GraphSnapshot) -> JSONValue {
        .object([
            ("data", .array(snapshot.edges.map { edge in
                .object([("callCount", .integer(Int64(edge.requests))), ("child", .string(edge.target)), ("parent", .string(edge.source))])
            })),
            ("errors", .null), ("limit", .integer(0)), ("offset", .integer(0)), ("total", .integer(0)),
        ])
    }

    /// Jaeger's error shape for a bad dependencies query.
    public static func dependenciesError(_ message: String) -> JSONValue {
        .object([
            ("data", .null),
            ("errors", .array([.object([("code", .integer(400)), ("msg", .string(message))])])),
            ("limit", .integer(0)), ("offset", .integer(0)), ("total", .integer(0)),
        ])
    }
}
