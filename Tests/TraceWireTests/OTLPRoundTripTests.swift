import Foundation
import Testing
import TraceModel
@testable import TraceWire

@Suite("OTLP round trips")
struct OTLPRoundTripTests {
    @Test("protobuf: encode then decode is identity over generated batches", arguments: 0..<200)
    func protobufRoundTrip(seed: Int) throws {
        var generator = SpanGenerator(seed: UInt64(seed))
        let batch = generator.batch()
        let codec = OTLPProtobufCodec()
        let decoded = try codec.decodeRequest(codec.encodeRequest(batch))
        #expect(decoded == batch)
    }

    @Test("JSON: encode then decode is identity over generated batches", arguments: 0..<200)
    func jsonRoundTrip(seed: Int) throws {
        var generator = SpanGenerator(seed: UInt64(seed))
        let batch = generator.batch()
        let decoded = try OTLPJSON.decodeRequest(OTLPJSON.encodeRequest(batch))
        #expect(decoded == batch)
    }

    @Test("protobuf → JSON → protobuf keeps every field", arguments: 0..<50)
    func crossFormat(seed: Int) throws {
        var generator = SpanGenerator(seed: UInt64(seed) + 10_000)
        let batch = generator.batch()
        let codec = OTLPProtobufCodec()
        let viaJSON = try OTLPJSON.decodeRequest(OTLPJSON.encodeRequest(try codec.decodeRequest(codec.encodeRequest(batch))))
        #expect(viaJSON == batch)
        #expect(codec.encodeRequest(viaJSON) == codec.encodeRequest(batch))
    }

    @Test("the testdata request decodes the same from .json and .pb")
    func testdataFormatsAgree() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let json = try Data(contentsOf: root.appendingPathComponent("testdata/multi-agent.json"))
        let binary = try Data(contentsOf: root.appendingPathComponent("testdata/multi-agent.pb"))
        let fromJSON = try OTLPJSON.decodeRequest(Array(json))
        let fromBinary = try OTLPProtobufCodec().decodeRequest(Array(binary))
        #expect(fromJSON.spanCount > 0)
        #expect(fromJSON == fromBinary)
    }

    @Test("the arena is reused across requests without leaking state between them")
    func arenaReuse() throws {
        let codec = OTLPProtobufCodec(initialArenaCapacity: 4096)
        var generator = SpanGenerator(seed: 99)
        let batches = (0..<20).map { _ in generator.batch() }
        let encoded = batches.map(codec.encodeRequest)
        for (batch, bytes) in zip(batches, encoded) {
            #expect(try codec.decodeRequest(bytes) == batch)
        }
    }
}
