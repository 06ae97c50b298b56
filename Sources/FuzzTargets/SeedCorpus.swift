import HTTP2
import NIOCore
import TraceModel
import TraceWire

/// The files of testdata/ that seed corpora are made from (scripts/generate-testdata writes them).
public struct SeedSources: Sendable {
    /// multi-agent.pb: one binary `ExportTraceServiceRequest`.
    public var protobufRequest: [UInt8]
    /// multi-agent.json: the same request in OTLP/JSON.
    public var jsonRequest: [UInt8]
    /// multi-agent.jsonl: one OTLP/JSON request a line.
    public var jsonLines: [UInt8]
    /// invalid-ids.json: a request with spans whose ids are invalid.
    public var invalidIDs: [UInt8]

    /// Bundles the four files' contents.
    public init(protobufRequest: [UInt8], jsonRequest: [UInt8], jsonLines: [UInt8], invalidIDs: [UInt8]) {
        self.protobufRequest = protobufRequest
        self.jsonRequest = jsonRequest
        self.jsonLines = jsonLines
        self.invalidIDs = invalidIDs
    }

    /// The requests of multi-agent.jsonl, one per non-empty line.
    var requestLines: [[UInt8]] {
        jsonLines.split(separator: UInt8(ascii: "\n")).map(Array.init).filter { !$0.isEmpty }
    }
}

/// Why seeds could not be built: the test data is not what it should be.
public struct SeedCorpusError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public var description: String
}

/// Seed inputs for each target, made from the test data and a few hand-built cases, so the fuzzer
/// starts from real requests rather than from nothing. Built in code rather than kept as binary files:
/// they follow the encoders and the test data when those change.
public enum SeedCorpus {
    /// A named seed input.
    public typealias Seed = (name: String, bytes: [UInt8])

    /// Every seed for `target`.
    public static func seeds(for target: FuzzTarget, from sources: SeedSources) throws(SeedCorpusError) -> [Seed] {
        switch target {
        case .protobuf: try protobufSeeds(sources)
        case .json: try jsonSeeds(sources)
        case .grpcFraming: try grpcFramingSeeds(sources)
        case .http2Session: try http2SessionSeeds(sources)
        }
    }

    /// A libFuzzer dictionary (`-dict=`) of tokens the target's format is made of, or nil.
    public static func dictionary(for target: FuzzTarget) -> String? {
        switch target {
        case .json:
            let keys = ["resourceSpans", "resource_spans", "resource", "attributes", "droppedAttributesCount", "scopeSpans",
                        "scope_spans", "scope", "name", "version", "schemaUrl", "spans", "traceId", "trace_id", "spanId",
                        "span_id", "parentSpanId", "traceState", "flags", "kind", "startTimeUnixNano", "endTimeUnixNano",
                        "events", "timeUnixNano", "droppedEventsCount", "links", "droppedLinksCount", "status", "code", "message",
                        "key", "value", "stringValue", "boolValue", "intValue", "doubleValue", "bytesValue", "arrayValue",
                        "kvlistValue", "values", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR", "NaN", "Infinity", "-Infinity"]
            var lines = keys.map { "\"\\\"\($0)\\\"\"" }
            lines += ["\"true\"", "\"false\"", "\"null\"", "\"\\\\u\"", "\"\\\\ud83d\\\\ude00\"", "\"e+\"", "\"-0.\"",
                      "\"18446744073709551615\"", "\"-9223372036854775808\"", "\"0123456789abcdef0123456789abcdef\""]
            return lines.joined(separator: "\n") + "\n"
        case .protobuf, .grpcFraming, .http2Session:
            return nil
        }
    }

    // MARK: protobuf and JSON

    /// Binary requests: the test data re-encoded, and the hand-built batches.
    static func protobufSeeds(_ sources: SeedSources) throws(SeedCorpusError) -> [Seed] {
        let codec = OTLPProtobufCodec()
        var seeds: [Seed] = [("multi-agent.pb", sources.protobufRequest), ("empty.pb", [])]
        for (index, line) in sources.requestLines.enumerated() {
            seeds.append((name("multi-agent-line", index, "pb"), codec.encodeRequest(try decodeJSON(line, "multi-agent.jsonl"))))
        }
        seeds.append(("invalid-ids.pb", codec.encodeRequest(try decodeJSON(sources.invalidIDs, "invalid-ids.json"))))
        seeds.append(("every-field.pb", codec.encodeRequest(everyField)))
        seeds.append(("nested-values.pb", codec.encodeRequest(nestedValues(depth: 12))))
        return seeds
    }

    /// OTLP/JSON bodies: the test data as it is, the hand-built batches, and the lenient forms.
    static func jsonSeeds(_ sources: SeedSources) throws(SeedCorpusError) -> [Seed] {
        var seeds: [Seed] = [("multi-agent.json", sources.jsonRequest), ("invalid-ids.json", sources.invalidIDs)]
        for (index, line) in sources.requestLines.enumerated() {
            seeds.append((name("multi-agent-line", index, "json"), line))
        }
        seeds.append(("every-field.json", OTLPJSON.encodeRequest(everyField)))
        seeds.append(("nested-values.json", OTLPJSON.encodeRequest(nestedValues(depth: 12))))
        // The lenient forms the decoder also reads: snake_case names, numbers for 64-bit integers, enum
        // names, escapes, NaN.
        seeds.append(("lenient.json", Array("""
            {"resource_spans":[{"resource":{"attributes":[{"key":"service.name","value":{"string_value":"a\\u00e9\\ud83d\\ude00\\n"}}],\
            "dropped_attributes_count":1},"scope_spans":[{"scope":{"name":"s"},"spans":[{"trace_id":"0102030405060708090A0B0C0D0E0F10",\
            "span_id":"0102030405060708","parent_span_id":"","kind":"SPAN_KIND_CLIENT","start_time_unix_nano":1767225600000000000,\
            "end_time_unix_nano":"1767225600000000001","attributes":[{"key":"d","value":{"double_value":"NaN"}},\
            {"key":"i","value":{"int_value":-9223372036854775808}},{"key":"b","value":{"bytes_value":"AAEC/w=="}},\
            {"key":"n","value":null}],"status":{"code":"STATUS_CODE_ERROR","message":"x"}}]}]}]}
            """.utf8)))
        return seeds
    }

    /// A test data request decoded, or an error naming the file.
    static func decodeJSON(_ bytes: [UInt8], _ file: String) throws(SeedCorpusError) -> SpanBatch {
        do {
            return try OTLPJSON.decodeRequest(bytes)
        } catch {
            throw SeedCorpusError(description: "testdata/\(file) does not decode: \(error)")
        }
    }

    /// `stem-NN.suffix`, so seeds sort in test data order.
    static func name(_ stem: String, _ index: Int, _ suffix: String) -> String {
        let number = String(index)
        return "\(stem)-\(String(repeating: "0", count: max(0, 2 - number.count)))\(number).\(suffix)"
    }

    /// One span with every field and every kind of attribute value set.
    static var everyField: SpanBatch {
        let traceID = TraceID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10)
        let values: [Attribute] = [
            Attribute("s", .string("text \" \\ \n é")), Attribute("b", .bool(true)), Attribute("i", .int(-1)),
            Attribute("d", .double(0.25)), Attribute("x", .bytes([0, 1, 255])), Attribute("e", .empty),
            Attribute("a", .array([.int(1), .string("two")])), Attribute("k", .keyValueList([Attribute("inner", .bool(false))])),
        ]
        let span = Span(
            traceID: traceID, spanID: SpanID(0x1112_1314_1516_1718), parentSpanID: SpanID(0x2122_2324_2526_2728),
            traceState: "vendor=value", flags: 0x301, name: "llm.call", kind: .client,
            startTimeUnixNano: 1_767_225_600_000_000_000, endTimeUnixNano: 1_767_225_600_500_000_000, attributes: values,
            droppedAttributesCount: 1,
            events: [SpanEvent(timeUnixNano: 1_767_225_600_100_000_000, name: "exception", attributes: values, droppedAttributesCount: 2)],
            droppedEventsCount: 3,
            links: [SpanLink(traceID: traceID, spanID: SpanID(9), traceState: "a=b", attributes: values, droppedAttributesCount: 4, flags: 1)],
            droppedLinksCount: 5, status: SpanStatus(code: .error, message: "failed"))
        let scope = ScopeSpans(scope: InstrumentationScope(name: "agent-sdk", version: "1.0", attributes: values, droppedAttributesCount: 6),
                               spans: [span], schemaURL: "https://opentelemetry.io/schemas/1.26.0")
        return SpanBatch(resourceSpans: [ResourceSpans(resource: Resource(attributes: values, droppedAttributesCount: 7),
                                                       scopeSpans: [scope], schemaURL: "https://opentelemetry.io/schemas/1.26.0")])
    }

    /// One span whose attribute nests arrays and key-value lists `depth` levels deep.
    static func nestedValues(depth: Int) -> SpanBatch {
        var value = AttributeValue.string("leaf")
        for level in 0..<depth {
            value = level % 2 == 0 ? .array([value, .int(Int64(level))]) : .keyValueList([Attribute("level", value)])
        }
        let span = Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), name: "nested", attributes: [Attribute("deep", value)])
        return SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: [span])])])
    }

    // MARK: gRPC framing

    /// gRPC bodies: requests framed plain and compressed, and the framing edge cases.
    static func grpcFramingSeeds(_ sources: SeedSources) throws(SeedCorpusError) -> [Seed] {
        let codec = OTLPProtobufCodec()
        var seeds: [Seed] = [("empty-body", []), ("empty-message", GRPCFraming.frame([]))]
        let small = codec.encodeRequest(everyField)
        seeds.append(("every-field.grpc", GRPCFraming.frame(small)))
        seeds.append(("every-field.gzip.grpc", try compressedFrame(small)))
        seeds.append(("two-messages.grpc", GRPCFraming.frame(small) + GRPCFraming.frame([])))
        seeds.append(("multi-agent-oversized.grpc", GRPCFraming.frame(sources.protobufRequest)))
        for (index, line) in sources.requestLines.enumerated() where index % 5 == 0 {
            let request = codec.encodeRequest(try decodeJSON(line, "multi-agent.jsonl"))
            seeds.append((name("multi-agent-line", index, "grpc"), GRPCFraming.frame(request)))
            seeds.append((name("multi-agent-line", index, "gzip.grpc"), try compressedFrame(request)))
        }
        return seeds
    }

    /// A message framed with the compressed flag, its bytes gzip.
    static func compressedFrame(_ message: [UInt8]) throws(SeedCorpusError) -> [UInt8] {
        var compressed: ByteBuffer
        do {
            compressed = try Gzip.deflate(ByteBuffer(bytes: message))
        } catch {
            throw SeedCorpusError(description: "cannot gzip a seed: \(error)")
        }
        var framed = GRPCFraming.frame(compressed.readBytes(length: compressed.readableBytes) ?? [])
        framed[0] = 1
        return framed
    }

    // MARK: HTTP/2

    /// Client byte streams after the preface: recorded conversations and the hand-built frames.
    static func http2SessionSeeds(_ sources: SeedSources) throws(SeedCorpusError) -> [Seed] {
        let codec = OTLPProtobufCodec()
        let request = codec.encodeRequest(everyField)
        let grpcHeaders: [HTTP2Header] = [(":method", "POST"), (":scheme", "http"), (":path", FuzzTarget.exportPath),
                                          (":authority", "localhost:4317"), ("content-type", "application/grpc"), ("te", "trailers")]
        return [
            ("export.h2", try conversation([(grpcHeaders, GRPCFraming.frame(request))])),
            ("export-gzip-and-unknown-method.h2", try conversation([
                (grpcHeaders + [("grpc-encoding", "gzip")], try compressedFrame(request)),
                ([(":method", "POST"), (":scheme", "http"), (":path", "/x.Y/Z"), (":authority", "localhost"),
                  ("content-type", "application/grpc")], GRPCFraming.frame([1, 2, 3])),
            ])),
            ("not-grpc.h2", try conversation([([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "localhost")], [])])),
            ("oversized.h2", try conversation([(grpcHeaders, GRPCFraming.frame(Array(repeating: 0x0A, count: FuzzTarget.maximumMessageSize + 100)))])),
            ("every-frame-type.h2", everyFrameType(message: GRPCFraming.frame(request))),
        ]
    }

    /// What a client session sends, after the preface, to make `requests` against a server session
    /// answered by `UnaryGRPCResponder`: SETTINGS, its ACK, WINDOW_UPDATEs, HEADERS, DATA.
    static func conversation(_ requests: [(headers: [HTTP2Header], body: [UInt8])]) throws(SeedCorpusError) -> [UInt8] {
        do {
            let client = try HTTP2Session(role: .client)
            let server = try HTTP2Session(role: .server, settings: FuzzTarget.sessionSettings)
            var responder = UnaryGRPCResponder(maximumMessageSize: FuzzTarget.maximumMessageSize)
            for request in requests { _ = try client.request(headers: request.headers, body: request.body) }
            var sent: [UInt8] = []
            for _ in 0..<50 {
                var toServer: [UInt8] = []
                var toClient: [UInt8] = []
                let clientWrote = try client.takeOutput(into: &toServer)
                if clientWrote {
                    sent += toServer
                    for event in try toServer.withUnsafeBytes({ try server.receive($0) }) { responder.handle(event, session: server) }
                }
                let serverWrote = try server.takeOutput(into: &toClient)
                if serverWrote { _ = try toClient.withUnsafeBytes { try client.receive($0) } }
                if !clientWrote && !serverWrote { break }
            }
            guard sent.starts(with: FuzzTarget.clientPreface) else {
                throw SeedCorpusError(description: "the client session did not start with the connection preface")
            }
            return Array(sent.dropFirst(FuzzTarget.clientPreface.count))
        } catch let error as SeedCorpusError {
            throw error
        } catch {
            throw SeedCorpusError(description: "cannot record an HTTP/2 conversation: \(error)")
        }
    }

    /// Frames laid out by hand from RFC 9113 §4.1 and §6, for the frame types and flags a well-behaved
    /// client rarely sends: padding, priority, CONTINUATION, PING, RST_STREAM, client trailers, GOAWAY.
    /// Header blocks use HPACK static-table entries and literals (RFC 7541).
    static func everyFrameType(message: [UInt8]) -> [UInt8] {
        func frame(_ type: UInt8, _ flags: UInt8, _ stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
            [UInt8(payload.count >> 16 & 0xFF), UInt8(payload.count >> 8 & 0xFF), UInt8(payload.count & 0xFF), type, flags,
             UInt8(stream >> 24 & 0x7F), UInt8(stream >> 16 & 0xFF), UInt8(stream >> 8 & 0xFF), UInt8(stream & 0xFF)] + payload
        }
        func literal(_ value: String) -> [UInt8] { [UInt8(value.utf8.count)] + Array(value.utf8) }
        let data: UInt8 = 0, headers: UInt8 = 1, priority: UInt8 = 2, rstStream: UInt8 = 3, settings: UInt8 = 4
        let ping: UInt8 = 6, goAway: UInt8 = 7, windowUpdate: UInt8 = 8, continuation: UInt8 = 9
        let endStream: UInt8 = 0x1, ack: UInt8 = 0x1, endHeaders: UInt8 = 0x4, padded: UInt8 = 0x8, withPriority: UInt8 = 0x20
        // :method POST (3), :scheme http (6), then literals without indexing for :path (4), :authority (1)
        // and content-type (31 = 15 + 16).
        let grpcBlock: [UInt8] = [0x83, 0x86, 0x04] + literal(FuzzTarget.exportPath) + [0x01] + literal("localhost")
            + [0x0F, 0x10] + literal("application/grpc")
        let half = grpcBlock.count / 2
        var bytes: [UInt8] = []
        bytes += frame(settings, 0, 0, [0, 1, 0, 0, 0x10, 0, 0, 2, 0, 0, 0, 0, 0, 4, 0, 0, 0xFF, 0xFF, 0, 5, 0, 0, 0x40, 0])
        bytes += frame(settings, ack, 0, [])
        bytes += frame(ping, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8])
        bytes += frame(windowUpdate, 0, 0, [0, 0x10, 0, 0])
        // Stream 1: padded HEADERS with priority, continued, then padded DATA ending the stream.
        bytes += frame(headers, padded | withPriority, 1, [3] + [0, 0, 0, 0, 15] + Array(grpcBlock[..<half]) + [0, 0, 0])
        bytes += frame(continuation, endHeaders, 1, Array(grpcBlock[half...]))
        bytes += frame(data, padded | endStream, 1, [4] + message + [0, 0, 0, 0])
        // Stream 3: PRIORITY, a GET that is not gRPC, then a reset.
        bytes += frame(priority, 0, 3, [0, 0, 0, 1, 200])
        bytes += frame(headers, endHeaders, 3, [0x82, 0x86, 0x84, 0x01] + literal("localhost"))
        bytes += frame(rstStream, 0, 3, [0, 0, 0, 8])
        // Stream 5: a body, then client trailers end it.
        bytes += frame(headers, endHeaders, 5, grpcBlock)
        bytes += frame(windowUpdate, 0, 5, [0, 0, 1, 0])
        bytes += frame(data, 0, 5, message)
        bytes += frame(headers, endHeaders | endStream, 5, [0x00] + literal("x-trailer") + literal("1"))
        bytes += frame(goAway, 0, 0, [0, 0, 0, 0, 0, 0, 0, 0] + Array("bye".utf8))  // last stream 0: no pushed stream seen
        return bytes
    }
}
