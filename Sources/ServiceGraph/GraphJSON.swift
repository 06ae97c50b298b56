import Foundation
import TraceModel

/// The graph in the JSON shapes its consumers read: Grafana's Node Graph panel (through the Infinity
/// datasource or the Node Graph API plugin) and Jaeger's dependencies API.
public enum GraphJSON {
    /// The kind of each node, from the edges that reach it.
    static func kinds(_ snapshot: GraphSnapshot) -> [String: String] {
        var kinds: [String: String] = [:]
        for edge in snapshot.edges {
            let kind = switch edge.connectionType {
            case "model": "model"
            case "tool": "tool"
            case "database": "database"
            case "virtual_node": "external"
            case "messaging_system": "service"
            default: "service"
            }
            if kinds[edge.target] == nil || kind != "service" { kinds[edge.target] = kind }
            if kinds[edge.source] == nil { kinds[edge.source] = edge.source == "user" ? "user" : "service" }
        }
        return kinds
    }

    /// The Node Graph field for a node's agent attribute: `agent.type` → `detail__agent_type`.
    public static func detailField(_ key: String) -> String {
        "detail__" + String(key.map { $0.isASCII && ($0.isLetter || $0.isNumber) ? $0 : "_" })
    }

    /// A node's agent attributes as Node Graph detail fields with text values, sorted by field, first key
    /// winning when two map to one field.
    static func details(_ node: GraphSnapshot.Node) -> [(field: String, text: String)] {
        var result: [(field: String, text: String)] = []
        for attribute in node.details {
            let field = detailField(attribute.key)
            guard !result.contains(where: { $0.field == field }) else { continue }
            result.append((field, detailText(attribute.value)))
        }
        return result.sorted { $0.field < $1.field }
    }

    private static func detailText(_ value: AttributeValue) -> String {
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

    /// Node Graph panel frames, encoded straight from the snapshot (same bytes as `encode(nodeGraph(…))`).
    public static func encodeNodeGraph(_ snapshot: GraphSnapshot) -> [UInt8] {
        let kinds = kinds(snapshot)
        var out = Writer()
        out.bytes.reserveCapacity(256 * (snapshot.edges.count + snapshot.nodes.count) + 64)
        // Keys in sorted order, as `encode` writes them.
        out.raw("{\"edges\":[")
        for index in snapshot.edges.indices {
            let edge = snapshot.edges[index]
            out.raw(index > 0 ? ",{" : "{")
            out.key("detail__connection_type"); out.string(edge.connectionType)
            out.key(",\"detail__failed"); out.integer(edge.failed)
            if let mean = edge.meanServerMilliseconds { out.key(",\"detail__mean_server_ms"); out.number((mean * 1000).rounded() / 1000) }
            if edge.percentiles.count == 3 {
                out.key(",\"detail__p50_ms"); out.number(edge.percentiles[0])
                out.key(",\"detail__p95_ms"); out.number(edge.percentiles[1])
                out.key(",\"detail__p99_ms"); out.number(edge.percentiles[2])
            }
            out.key(",\"detail__requests"); out.integer(edge.requests)
            out.key(",\"id"); out.string(edge.id)
            out.key(",\"mainstat"); out.integer(edge.requests)
            out.key(",\"secondarystat"); out.number(rate(edge.failed, edge.requests))
            out.key(",\"source"); out.string(edge.source)
            out.key(",\"target"); out.string(edge.target)
            out.raw("}")
        }
        out.raw("],\"nodes\":[")
        for index in snapshot.nodes.indices {
            let node = snapshot.nodes[index]
            out.raw(index > 0 ? ",{" : "{")
            out.key("arc__failed"); out.number(node.requests == 0 ? 0 : Double(node.failed) / Double(node.requests))
            out.key(",\"arc__success"); out.number(node.requests == 0 ? 1 : Double(node.requests - node.failed) / Double(node.requests))
            // detail__agent_… sort before detail__errors.
            for (field, text) in details(node) {
                out.raw(","); out.string(field); out.raw(":"); out.string(text)
            }
            out.key(",\"detail__errors"); out.integer(node.failed)
            out.key(",\"detail__input_tokens"); out.integer(node.inputTokens)
            out.key(",\"detail__output_tokens"); out.integer(node.outputTokens)
            if node.percentiles.count == 3 {
                out.key(",\"detail__p50_ms"); out.number(node.percentiles[0])
                out.key(",\"detail__p95_ms"); out.number(node.percentiles[1])
                out.key(",\"detail__p99_ms"); out.number(node.percentiles[2])
            }
            out.key(",\"detail__requests"); out.integer(node.requests)
            out.key(",\"id"); out.string(node.id)
            out.key(",\"mainstat"); out.integer(node.requests)
            out.key(",\"secondarystat"); out.number(rate(node.failed, node.requests))
            out.key(",\"subtitle"); out.string(kinds[node.id] ?? "service")
            out.key(",\"title"); out.string(node.id)
            out.raw("}")
        }
        out.raw("]}")
        return out.bytes
    }

    /// JSON text appended to a byte array, with no closures (so no dynamic exclusivity checks per call).
    struct Writer {
        var bytes: [UInt8] = []

        mutating func raw(_ text: StaticString) {
            text.withUTF8Buffer { bytes.append(contentsOf: $0) }
        }

        /// `"name":` — `name` may start with `,"` to put the separator in the same copy; the opening quote
        /// is written when it does not.
        mutating func key(_ name: StaticString) {
            name.withUTF8Buffer { buffer in
                if buffer.first != UInt8(ascii: ",") { bytes.append(UInt8(ascii: "\"")) }
                bytes.append(contentsOf: buffer)
            }
            bytes.append(UInt8(ascii: "\""))
            bytes.append(UInt8(ascii: ":"))
        }

        mutating func string(_ text: String) { GraphJSON.writeString(text, into: &bytes) }
        mutating func integer<Value: BinaryInteger>(_ value: Value) { GraphJSON.writeInteger(value, into: &bytes) }
        mutating func number(_ value: Double) { GraphJSON.write(value, into: &bytes) }
    }

    /// Node Graph panel frames: `{"nodes":[…],"edges":[…]}`.
    public static func nodeGraph(_ snapshot: GraphSnapshot) -> [String: Any] {
        let kinds = kinds(snapshot)
        let nodes: [[String: Any]] = snapshot.nodes.map { node in
            var object: [String: Any] = [
                "id": node.id, "title": node.id, "subtitle": kinds[node.id] ?? "service",
                "mainstat": node.requests, "secondarystat": rate(node.failed, node.requests),
                "arc__success": node.requests == 0 ? 1.0 : Double(node.requests - node.failed) / Double(node.requests),
                "arc__failed": node.requests == 0 ? 0.0 : Double(node.failed) / Double(node.requests),
                "detail__requests": node.requests, "detail__errors": node.failed,
                "detail__input_tokens": node.inputTokens, "detail__output_tokens": node.outputTokens,
            ]
            for (field, text) in details(node) { object[field] = text }
            if node.percentiles.count == 3 {
                object["detail__p50_ms"] = node.percentiles[0]
                object["detail__p95_ms"] = node.percentiles[1]
                object["detail__p99_ms"] = node.percentiles[2]
            }
            return object
        }
        let edges: [[String: Any]] = snapshot.edges.map { edge in
            var object: [String: Any] = [
                "id": edge.id, "source": edge.source, "target": edge.target,
                "mainstat": edge.requests, "secondarystat": rate(edge.failed, edge.requests),
                "detail__requests": edge.requests, "detail__failed": edge.failed, "detail__connection_type": edge.connectionType,
            ]
            if let mean = edge.meanServerMilliseconds { object["detail__mean_server_ms"] = (mean * 1000).rounded() / 1000 }
            if edge.percentiles.count == 3 {
                object["detail__p50_ms"] = edge.percentiles[0]
                object["detail__p95_ms"] = edge.percentiles[1]
                object["detail__p99_ms"] = edge.percentiles[2]
            }
            return object
        }
        return ["nodes": nodes, "edges": edges]
    }

    /// The Node Graph API plugin's `/api/graph/fields`; `nodeDetails` are the agent attribute keys nodes carry
    /// (`agent.type`), declared as string detail fields.
    public static func fields(nodeDetails: [String] = []) -> [String: Any] {
        func field(_ name: String, _ type: String, _ display: String, color: String? = nil) -> [String: Any] {
            var object: [String: Any] = ["field_name": name, "type": type, "displayName": display]
            if let color { object["color"] = color }
            return object
        }
        return [
            "nodes_fields": [
                field("id", "string", "Node"), field("title", "string", "Name"), field("subtitle", "string", "Kind"),
                field("mainstat", "number", "Requests"), field("secondarystat", "number", "Error rate (%)"),
                field("arc__success", "number", "Success", color: "green"), field("arc__failed", "number", "Failed", color: "red"),
                field("detail__requests", "number", "Requests"), field("detail__errors", "number", "Errors"),
                field("detail__p50_ms", "number", "p50 (ms)"), field("detail__p95_ms", "number", "p95 (ms)"),
                field("detail__p99_ms", "number", "p99 (ms)"), field("detail__input_tokens", "number", "Input tokens"),
                field("detail__output_tokens", "number", "Output tokens"),
            ] + Dictionary(nodeDetails.map { (detailField($0), $0) }, uniquingKeysWith: { first, _ in first })
                .sorted { $0.key < $1.key }.map { field($0.key, "string", $0.value) },
            "edges_fields": [
                field("id", "string", "Edge"), field("source", "string", "Source"), field("target", "string", "Target"),
                field("mainstat", "number", "Requests"), field("secondarystat", "number", "Error rate (%)"),
                field("detail__requests", "number", "Requests"), field("detail__failed", "number", "Failed"),
                field("detail__connection_type", "string", "Connection"), field("detail__mean_server_ms", "number", "Mean server time (ms)"),
                field("detail__p50_ms", "number", "p50 (ms)"), field("detail__p95_ms", "number", "p95 (ms)"),
                field("detail__p99_ms", "number", "p99 (ms)"),
            ],
        ]
    }

    /// Jaeger's `/api/dependencies` answer.
    public static func dependencies(_ snapshot: GraphSnapshot) -> [String: Any] {
        [
            "data": snapshot.edges.map { ["parent": $0.source, "child": $0.target, "callCount": $0.requests] as [String: Any] },
            "total": 0, "limit": 0, "offset": 0, "errors": NSNull(),
        ]
    }

    /// Jaeger's error shape for a bad dependencies query.
    public static func dependenciesError(_ message: String) -> [String: Any] {
        ["data": NSNull(), "total": 0, "limit": 0, "offset": 0, "errors": [["code": 400, "msg": message]]]
    }

    /// Compact JSON with sorted keys, so the same graph always gives the same bytes. Written by hand:
    /// Foundation's serializer took about a second for a graph of 10,000 edges.
    public static func encode(_ object: Any) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(1 << 16)
        write(object, into: &output)
        return output
    }

    private static func write(_ value: Any, into output: inout [UInt8]) {
        switch value {
        case let dictionary as [String: Any]:
            output.append(UInt8(ascii: "{"))
            for (index, key) in dictionary.keys.sorted().enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                writeString(key, into: &output)
                output.append(UInt8(ascii: ":"))
                write(dictionary[key]!, into: &output)
            }
            output.append(UInt8(ascii: "}"))
        case let array as [Any]:
            output.append(UInt8(ascii: "["))
            for (index, element) in array.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                write(element, into: &output)
            }
            output.append(UInt8(ascii: "]"))
        case let text as String:
            writeString(text, into: &output)
        case let integer as Int:
            writeInteger(integer, into: &output)
        case let integer as Int64:
            writeInteger(integer, into: &output)
        case let real as Double:
            write(real, into: &output)
        case let flag as Bool:
            output.append(contentsOf: (flag ? "true" : "false").utf8)
        default:
            output.append(contentsOf: "null".utf8)
        }
    }

    static func write(_ real: Double, into output: inout [UInt8]) {
        if real.isFinite, real == real.rounded(), abs(real) < 1e15 {
            writeInteger(Int64(real), into: &output)
        } else if real.isFinite, abs(real) < 1e12, case let thousandths = (real * 1000).rounded(),
                  abs(thousandths - real * 1000) < 1e-6, Int64(thousandths) % 1000 != 0 {
            // Three decimals or fewer (milliseconds rounded to the µs): written from integers, without a
            // String per number; parses back to the same Double as `String(real)` would.
            let scaled = Int64(thousandths)
            if scaled < 0 { output.append(UInt8(ascii: "-")) }
            writeInteger(abs(scaled) / 1000, into: &output)
            var fraction = abs(scaled) % 1000
            output.append(UInt8(ascii: "."))
            var divisor: Int64 = 100
            while fraction > 0 {
                output.append(UInt8(ascii: "0") + UInt8(fraction / divisor))
                fraction %= divisor
                divisor /= 10
            }
        } else if real.isFinite {
            output.append(contentsOf: String(real).utf8)
        } else {
            output.append(contentsOf: "null".utf8)
        }
    }

    static func writeString(_ text: String, into output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        // Names rarely need escaping: copy them whole when they do not.
        if !text.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            output.append(contentsOf: text.utf8)
            output.append(UInt8(ascii: "\""))
            return
        }
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"):
                output.append(UInt8(ascii: "\\"))
                output.append(byte)
            case 0..<0x20:
                output.append(contentsOf: "\\u00".utf8)
                output.append(hexDigits[Int(byte >> 4)])
                output.append(hexDigits[Int(byte & 0xF)])
            default:
                output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Writes an integer's decimal digits without making a String.
    static func writeInteger<Value: BinaryInteger>(_ value: Value, into output: inout [UInt8]) {
        var magnitude = value.magnitude
        if value < 0 { output.append(UInt8(ascii: "-")) }
        guard magnitude != 0 else { return output.append(UInt8(ascii: "0")) }
        let start = output.count
        while magnitude != 0 {
            output.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: magnitude % 10))
            magnitude /= 10
        }
        output[start...].reverse()
    }
}
