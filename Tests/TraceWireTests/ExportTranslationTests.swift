import Foundation
import Testing
import TraceModel
@testable import TraceWire

@Suite("Zipkin and Jaeger translation")
struct ExportTranslationTests {
    static let traceID = TraceID(high: 0x0102_0304_0506_0708, low: 0x090A_0B0C_0D0E_0F10)

    static func batch(kind: SpanKind = .client, status: SpanStatus = SpanStatus(code: .error, message: "boom")) -> SpanBatch {
        SpanBatch(resourceSpans: [ResourceSpans(
            resource: Resource(attributes: [Attribute("service.name", "coder-agent"), Attribute("host.name", "h1")]),
            scopeSpans: [ScopeSpans(scope: InstrumentationScope(name: "agents", version: "1.2"), spans: [
                Span(traceID: traceID, spanID: SpanID(0xAA), parentSpanID: SpanID(0xBB), traceState: "v=1", name: "chat",
                     kind: kind, startTimeUnixNano: 1_000_000_500, endTimeUnixNano: 1_000_000_900,
                     attributes: [Attribute("peer.service", "llm-gateway"), Attribute("n", .int(3)), Attribute("f", .double(2.0)),
                                  Attribute("list", .array(["a", .int(1)])), Attribute("network.peer.address", "10.0.0.7"),
                                  Attribute("network.peer.port", .int(8443))],
                     events: [SpanEvent(timeUnixNano: 1_000_000_700, name: "retry", attributes: [Attribute("n", .int(2))])],
                     links: [SpanLink(traceID: traceID, spanID: SpanID(0xCC))],
                     status: status),
            ])])])
    }

    @Test("Zipkin: ids, kind, microseconds with duration at least 1, endpoints, tags, annotations")
    func zipkin() throws {
        let span = try #require(ZipkinTranslator.spans(from: Self.batch()).first)
        let json = try JSONSerialization.jsonObject(with: Data(ZipkinEncoder.json([span]))) as! [[String: Any]]
        let object = try #require(json.first)
        #expect(object["traceId"] as? String == "0102030405060708090a0b0c0d0e0f10")
        #expect(object["id"] as? String == "00000000000000aa")
        #expect(object["parentId"] as? String == "00000000000000bb")
        #expect(object["kind"] as? String == "CLIENT")
        #expect(object["timestamp"] as? Int == 1_000_000)
        #expect(object["duration"] as? Int == 1)  // 400 ns rounds up to the minimum
        #expect((object["localEndpoint"] as? [String: Any])?["serviceName"] as? String == "coder-agent")
        let remote = try #require(object["remoteEndpoint"] as? [String: Any])
        #expect(remote["serviceName"] as? String == "llm-gateway")
        #expect(remote["ipv4"] as? String == "10.0.0.7")
        #expect(remote["port"] as? Int == 8443)
        let tags = try #require(object["tags"] as? [String: String])
        #expect(tags["host.name"] == "h1")
        #expect(tags["service.name"] == nil)
        #expect(tags["n"] == "3")
        #expect(tags["f"] == "2")
        #expect(tags["list"] == "[\"a\",1]")
        #expect(tags["otel.status_code"] == "ERROR")
        #expect(tags["error"] == "boom")
        #expect(tags["otel.status_description"] == "boom")
        #expect(tags["otel.scope.name"] == "agents")
        #expect(tags["otel.library.version"] == "1.2")
        #expect(tags["w3c.tracestate"] == "v=1")
        #expect(tags["otlp.link.0"] == "0102030405060708090a0b0c0d0e0f10|00000000000000cc||{}|0")
        let annotations = try #require(object["annotations"] as? [[String: Any]])
        #expect(annotations.first?["value"] as? String == "retry|{\"n\":2}|0")
        #expect(annotations.first?["timestamp"] as? Int == 1_000_000)
    }

    @Test("Zipkin: INTERNAL has no kind and a span.kind tag; OK status has no error tag")
    func zipkinInternal() throws {
        let span = try #require(ZipkinTranslator.spans(from: Self.batch(kind: .internal, status: SpanStatus(code: .ok))).first)
        #expect(span.kind == nil)
        let tags = Dictionary(uniqueKeysWithValues: span.tags.map { ($0.key, $0.value) })
        #expect(tags["span.kind"] == "internal")
        #expect(tags["otel.status_code"] == "OK")
        #expect(tags["error"] == nil)
        #expect(!ZipkinEncoder().proto([span]).isEmpty)
    }

    @Test("Jaeger: process, CHILD_OF parent first, FOLLOWS_FROM links, typed tags, logs, nanoseconds")
    func jaeger() throws {
        let batch = try #require(JaegerTranslator.batches(from: Self.batch()).first)
        #expect(batch.serviceName == "coder-agent")
        #expect(batch.processTags == [JaegerTag("host.name", .string("h1"))])
        let span = try #require(batch.spans.first)
        #expect(span.references.map(\.followsFrom) == [false, true])
        #expect(span.references.first?.spanID == SpanID(0xBB))
        #expect(span.startTimeUnixNano == 1_000_000_500)
        #expect(span.durationNanos == 400)
        let tags = Dictionary(uniqueKeysWithValues: span.tags.map { ($0.key, $0.value) })
        #expect(tags["n"] == .int64(3))
        #expect(tags["f"] == .float64(2))
        #expect(tags["error"] == .bool(true))
        #expect(tags["span.kind"] == .string("client"))
        #expect(tags["otel.status_code"] == .string("ERROR"))
        #expect(span.logs.first?.fields.first == JaegerTag("event", .string("retry")))
        #expect(span.flags == 1)
        #expect(!JaegerEncoder().postSpansRequest(batch).isEmpty)
    }

    static func zipkinSpan(kind: SpanKind, _ attributes: [Attribute], links: [SpanLink] = []) throws -> ZipkinSpan {
        let span = Span(traceID: traceID, spanID: SpanID(0xAA), parentSpanID: SpanID(0xBB), name: "op", kind: kind,
                        startTimeUnixNano: 1_000_000_000, endTimeUnixNano: 2_000_000_000, attributes: attributes, links: links)
        let batch = SpanBatch(resourceSpans: [ResourceSpans(resource: Resource(attributes: [Attribute("service.name", "planner")]),
                                                            scopeSpans: [ScopeSpans(scope: InstrumentationScope(name: "t"), spans: [span])])])
        return try #require(ZipkinTranslator.spans(from: batch).first)
    }

    /// Expected values from the rule, not from our output: zipkin.md ranks `server.address` for the
    /// remote endpoint of CLIENT and PRODUCER spans ("If Zipkin SpanKind resolves to either
    /// SpanKind.CLIENT or SpanKind.PRODUCER then the service SHOULD specify remote endpoint"); the
    /// semantic conventions define `server.address` on a SERVER span as the span's own host and
    /// `client.address` / `network.peer.address` as the caller. So a SERVER or CONSUMER span's remote
    /// endpoint names the caller or is absent.
    @Test("Zipkin: SERVER and CONSUMER remoteEndpoint names the caller, never the span's own server.address")
    func zipkinIncomingRemoteEndpoint() throws {
        let ownHostOnly = try Self.zipkinSpan(kind: .server, [Attribute("server.address", "agents.example.com"),
                                                              Attribute("server.port", .int(8443)), Attribute("net.peer.name", "legacy.example.com")])
        #expect(ownHostOnly.remoteEndpoint == nil)
        let withClient = try Self.zipkinSpan(kind: .server, [Attribute("server.address", "agents.example.com"),
                                                             Attribute("client.address", "198.51.100.7"), Attribute("client.port", .int(51000))])
        #expect(withClient.remoteEndpoint == ZipkinSpan.Endpoint(serviceName: nil, ipv4: [198, 51, 100, 7], ipv6: nil, port: 51000))
        let namedClient = try Self.zipkinSpan(kind: .server, [Attribute("server.address", "agents.example.com"),
                                                              Attribute("client.address", "gateway.internal"),
                                                              Attribute("network.peer.address", "10.0.0.5"), Attribute("network.peer.port", .int(40123))])
        #expect(namedClient.remoteEndpoint == ZipkinSpan.Endpoint(serviceName: "gateway.internal", ipv4: [10, 0, 0, 5], ipv6: nil, port: 40123))
        let consumer = try Self.zipkinSpan(kind: .consumer, [Attribute("server.address", "broker.local"), Attribute("peer.service", "orders-api"),
                                                             Attribute("net.sock.peer.addr", "2001:db8::9")])
        #expect(consumer.remoteEndpoint == ZipkinSpan.Endpoint(serviceName: "orders-api", ipv4: nil,
                                                                ipv6: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9], port: nil))
        let brokerOnly = try Self.zipkinSpan(kind: .consumer, [Attribute("server.address", "broker.local"), Attribute("server.socket.address", "10.9.9.9")])
        #expect(brokerOnly.remoteEndpoint == nil)
        // CLIENT and PRODUCER keep zipkin.md's full ranking: there server.address is the remote host.
        let client = try Self.zipkinSpan(kind: .client, [Attribute("server.address", "api.openai.com")])
        #expect(client.remoteEndpoint?.serviceName == "api.openai.com")
        let producer = try Self.zipkinSpan(kind: .producer, [Attribute("server.address", "broker.local")])
        #expect(producer.remoteEndpoint?.serviceName == "broker.local")
        // Every attribute stays a tag whatever the kind.
        #expect(ownHostOnly.tags.contains { $0 == ("server.address", "agents.example.com") })
    }

    /// Expected values from zipkin.md's ranking (peer.service before server.address before net.peer.name ...;
    /// network.peer.address before net.peer.ip; network.peer.port before net.peer.port), whatever order the
    /// attributes come in; a key's first value is its value, and a value that does not serve (empty, not an
    /// IP literal, not a port) passes the part to the next ranked key.
    @Test("Zipkin: each part of the remote endpoint comes from the best-ranked key that serves, in any attribute order")
    func zipkinRemoteEndpointRanking() throws {
        let ranked = try Self.zipkinSpan(kind: .client, [
            Attribute("net.peer.name", "legacy"), Attribute("net.peer.ip", "192.0.2.1"), Attribute("net.peer.port", .int(80)),
            Attribute("server.address", "api.example.com"), Attribute("peer.service", ""),
            Attribute("network.peer.address", "not-an-ip"), Attribute("server.socket.address", "::ffff:198.51.100.9"),
            Attribute("network.peer.port", .int(70000)), Attribute("server.socket.port", "8443"),
            Attribute("server.address", "second.example.com"),
        ])
        #expect(ranked.remoteEndpoint == ZipkinSpan.Endpoint(serviceName: "api.example.com", ipv4: [198, 51, 100, 9], ipv6: nil, port: 8443))
        let firstValueOnly = try Self.zipkinSpan(kind: .client, [Attribute("network.peer.port", "x"), Attribute("network.peer.port", .int(9000)),
                                                                 Attribute("net.peer.port", .int(81)), Attribute("peer.service", "payments")])
        #expect(firstValueOnly.remoteEndpoint == ZipkinSpan.Endpoint(serviceName: "payments", ipv4: nil, ipv6: nil, port: 81))
    }

    /// Expected values from the Collector's jaeger translator (contrib pkg/translator/jaeger,
    /// `makeJaegerProtoReferences`): a link to the parent is not added again, it overrides the parent
    /// reference's type with `refTypeFromLink` (FOLLOWS_FROM unless `opentracing.ref_type = child_of`).
    @Test("Jaeger: a link to the parent sets the parent reference's type instead of adding a reference")
    func jaegerParentLink() throws {
        func references(_ links: [SpanLink]) throws -> [JaegerBatch.Reference] {
            let span = Span(traceID: Self.traceID, spanID: SpanID(0xAA), parentSpanID: SpanID(0xBB), name: "op", kind: .consumer,
                            startTimeUnixNano: 1, endTimeUnixNano: 2, links: links)
            let batch = SpanBatch(resourceSpans: [ResourceSpans(resource: Resource(attributes: [Attribute("service.name", "s")]),
                                                                scopeSpans: [ScopeSpans(scope: InstrumentationScope(name: "t"), spans: [span])])])
            return try #require(JaegerTranslator.batches(from: batch).first?.spans.first).references
        }
        let parent = JaegerBatch.Reference(traceID: Self.traceID, spanID: SpanID(0xBB), followsFrom: false)
        let other = TraceID(high: 7, low: 7)
        #expect(try references([]) == [parent])
        var followsFromParent = parent
        followsFromParent.followsFrom = true
        #expect(try references([SpanLink(traceID: Self.traceID, spanID: SpanID(0xBB))]) == [followsFromParent])
        #expect(try references([SpanLink(traceID: Self.traceID, spanID: SpanID(0xBB), attributes: [Attribute("opentracing.ref_type", "child_of")])]) == [parent])
        #expect(try references([SpanLink(traceID: Self.traceID, spanID: SpanID(0xBB), attributes: [Attribute("opentracing.ref_type", "follows_from")])])
            == [followsFromParent])
        // The same span id in another trace is not the parent: a reference of its own.
        #expect(try references([SpanLink(traceID: other, spanID: SpanID(0xBB), attributes: [Attribute("opentracing.ref_type", "child_of")])])
            == [parent, JaegerBatch.Reference(traceID: other, spanID: SpanID(0xBB), followsFrom: false)])
    }

    @Test("attribute text follows the non-OTLP mapping rules")
    func text() {
        #expect(AttributeText.string(.double(0.25)) == "0.25")
        #expect(AttributeText.string(.double(2)) == "2")
        #expect(AttributeText.string(.double(1e-7)) == "1e-7")
        #expect(AttributeText.string(.bool(true)) == "true")
        #expect(AttributeText.string(.bytes([1, 2, 3])) == "AQID")
        #expect(AttributeText.string(.keyValueList([Attribute("k", "v"), Attribute("n", .int(1))])) == "{\"k\":\"v\",\"n\":1}")
    }

    @Test("RetryInfo in grpc-status-details-bin gives the delay")
    func retryInfo() {
        // google.rpc.Status{code: 14, details: [Any{type_url: RetryInfo, value: RetryInfo{retry_delay: {seconds: 3}}}]}
        let duration: [UInt8] = [0x08, 0x03]
        let retryInfo: [UInt8] = [0x0A, UInt8(duration.count)] + duration
        let typeURL = Array("type.googleapis.com/google.rpc.RetryInfo".utf8)
        let any: [UInt8] = [0x0A, UInt8(typeURL.count)] + typeURL + [0x12, UInt8(retryInfo.count)] + retryInfo
        let status: [UInt8] = [0x08, 14, 0x1A, UInt8(any.count)] + any
        #expect(RPCStatusDetails.retryDelay(base64: Base64.encode(status)) == .seconds(3))
        #expect(RPCStatusDetails.retryDelay(base64: "not base64!") == nil)
    }
}
