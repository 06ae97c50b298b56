import Testing
import TraceModel
@testable import TraceWire

@Suite("OTLP/JSON")
struct OTLPJSONTests {
    @Test("decodes the OTLP/JSON forms: hex ids, integer enums, 64-bit integers as strings or numbers")
    func specForms() throws {
        let document = """
        {"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"planner-agent"}}]},
         "scopeSpans":[{"scope":{"name":"agents","version":"1.0"},"spans":[
          {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"eee19b7ec3c1b173",
           "name":"plan","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
           "attributes":[{"key":"n","value":{"intValue":"-42"}},{"key":"m","value":{"intValue":7}},
                         {"key":"d","value":{"doubleValue":"NaN"}},{"key":"b","value":{"bytesValue":"AQID"}},
                         {"key":"a","value":{"arrayValue":{"values":[{"boolValue":true},{}]}}},
                         {"key":"k","value":{"kvlistValue":{"values":[{"key":"x","value":{"doubleValue":1.5}}]}}}],
           "status":{"code":2,"message":"failed"},"unknownField":{"ignored":[1,2,3]}}]}]}]}
        """
        let batch = try OTLPJSON.decodeRequest(Array(document.utf8))
        let span = try #require(batch.resourceSpans.first?.scopeSpans.first?.spans.first)
        #expect(span.traceID.hex == "5b8efff798038103d269b633813fc60c")
        #expect(span.spanID.hex == "eee19b7ec3c1b174")
        #expect(span.parentSpanID.hex == "eee19b7ec3c1b173")
        #expect(span.kind == .server)
        #expect(span.startTimeUnixNano == 1_544_712_660_000_000_000)
        #expect(span.endTimeUnixNano == 1_544_712_661_000_000_000)
        #expect(span.attributes["n"] == .int(-42))
        #expect(span.attributes["m"] == .int(7))
        #expect(span.attributes["d"]?.doubleValue?.isNaN == true)
        #expect(span.attributes["b"] == .bytes([1, 2, 3]))
        #expect(span.attributes["a"] == .array([.bool(true), .empty]))
        #expect(span.attributes["k"] == .keyValueList([Attribute("x", .double(1.5))]))
        #expect(span.status == SpanStatus(code: .error, message: "failed"))
        #expect(batch.resourceSpans[0].resource.serviceName == "planner-agent")
        #expect(batch.resourceSpans[0].scopeSpans[0].scope.version == "1.0")
    }

    @Test("snake_case field names and enum names are accepted too")
    func lenientForms() throws {
        let document = """
        {"resource_spans":[{"scope_spans":[{"spans":[{"trace_id":"0102030405060708090a0b0c0d0e0f10",
         "span_id":"0102030405060708","kind":"SPAN_KIND_CLIENT","status":{"code":"STATUS_CODE_OK"}}]}]}]}
        """
        let span = try #require(try OTLPJSON.decodeRequest(Array(document.utf8)).resourceSpans.first?.scopeSpans.first?.spans.first)
        #expect(span.kind == .client)
        #expect(span.status.code == .ok)
    }

    @Test("malformed documents are refused with a message naming the place", arguments: [
        "", "{", "[]", "{\"resourceSpans\":{}}", "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"traceId\":\"xyz\"}]}]}]}",
        "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"startTimeUnixNano\":\"soon\"}]}]}]}", "{\"a\":1} x",
        "{\"a\":\"\\ud800\"}", "{\"a\":tru}", "{\"a\":01}",
    ])
    func malformed(document: String) {
        #expect(throws: OTLPDecodingError.self) { try OTLPJSON.decodeRequest(Array(document.utf8)) }
    }

    @Test("nesting past the parser's limit is refused, not a stack overflow")
    func deepNesting() {
        let document = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: OTLPDecodingError.self) { try OTLPJSON.decodeRequest(Array(document.utf8)) }
    }

    @Test("strings with escapes, control characters and non-ASCII survive encoding")
    func escaping() throws {
        let name = "tab\tquote\"back\\slash\nnul\u{0}é🙂"
        let batch = SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: [
            Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), name: name),
        ])])])
        let decoded = try OTLPJSON.decodeRequest(OTLPJSON.encodeRequest(batch))
        #expect(decoded.resourceSpans[0].scopeSpans[0].spans[0].name == name)
    }

    @Test("64-bit integers are written as strings, as OTLP/JSON asks")
    func int64AsStrings() {
        let batch = SpanBatch(resourceSpans: [ResourceSpans(scopeSpans: [ScopeSpans(spans: [
            Span(traceID: TraceID(high: 1, low: 2), spanID: SpanID(3), startTimeUnixNano: 5, attributes: [Attribute("n", .int(-9))]),
        ])])])
        let text = String(decoding: OTLPJSON.encodeRequest(batch), as: UTF8.self)
        #expect(text.contains("\"startTimeUnixNano\":\"5\""))
        #expect(text.contains("\"intValue\":\"-9\""))
        #expect(text.contains("\"traceId\":\"00000000000000010000000000000002\""))
    }
}
