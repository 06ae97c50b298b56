import Foundation
import Logging
import Testing
import TraceModel
import TraceWire
@testable import AgentTraceServer

@Suite("replay")
struct ReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func replay(_ files: [String], into output: String) async throws -> ReplaySummary {
        let yaml = """
        receivers:
          otlp:
            protocols:
              http:
                endpoint: 127.0.0.1:0
        processors:
          batch:
            send_batch_size: 50
            timeout: 1s
        exporters:
          file:
            path: \(output)
        service:
          pipelines:
            traces:
              receivers: [otlp]
              processors: [batch]
              exporters: [file]
        """
        let collector = try Collector(configuration: try CollectorConfiguration(yaml: yaml, environment: [:]),
                                      logger: Logger(label: "test"), announcer: StartupAnnouncer { _ in })
        return try await InProcessReplay(collector: collector, progress: ReplayProgress(isTerminal: false)).run(files: files)
    }

    @Test("replaying the same recording twice gives byte-identical output")
    func deterministic() async throws {
        let input = Self.root.appendingPathComponent("testdata/multi-agent.jsonl").path
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("agenttrace-replay-\(UUID().uuidString)")
        let first = directory.appendingPathComponent("a.jsonl").path
        let second = directory.appendingPathComponent("b.jsonl").path
        let summaryA = try await replay([input], into: first)
        let summaryB = try await replay([input], into: second)
        #expect(summaryA == summaryB)
        #expect(summaryA.spansRead > 0)
        #expect(summaryA.exporters.first?.sent == summaryA.accepted)
        let a = try Data(contentsOf: URL(fileURLWithPath: first))
        let b = try Data(contentsOf: URL(fileURLWithPath: second))
        #expect(!a.isEmpty)
        #expect(a == b)

        // The output is itself replayable and holds every accepted span.
        var outputSpans = 0
        for line in String(decoding: a, as: UTF8.self).split(separator: "\n") {
            outputSpans += try OTLPJSON.decodeRequest(Array(line.utf8)).spanCount
        }
        #expect(outputSpans == summaryA.accepted)
    }

    @Test("every recorded format reads the same spans", arguments: ["multi-agent.json", "multi-agent.pb"])
    func formats(file: String) async throws {
        let reader = TraceFileReader()
        let json = try reader.read(Self.root.appendingPathComponent("testdata/multi-agent.json").path)
        let other = try reader.read(Self.root.appendingPathComponent("testdata/\(file)").path)
        #expect(try json.map { try $0.get().batch } == other.map { try $0.get().batch })
    }

    @Test("gzipped JSON lines read the same as plain ones")
    func gzipped() throws {
        let reader = TraceFileReader()
        let plain = try reader.read(Self.root.appendingPathComponent("testdata/multi-agent.jsonl").path)
        let gzipped = try reader.read(Self.root.appendingPathComponent("testdata/multi-agent.jsonl.gz").path)
        #expect(plain.count == gzipped.count)
        #expect(try plain.map { try $0.get().batch } == gzipped.map { try $0.get().batch })
    }
}
