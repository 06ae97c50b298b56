import Foundation
import Logging
import Testing
import TestSupport
import TraceModel
import TraceWire
@testable import AgentTraceServer

@Suite("replay")
struct ReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func replay(_ files: [String], into output: String, tailSampling: Bool = false) async throws -> ReplaySummary {
        let yaml = """
        receivers:
          otlp:
            protocols:
              http:
                endpoint: 127.0.0.1:0
        processors:
          tail_sampling:
            decision_wait: 5s
            policies:
              - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
              - {name: some, type: probabilistic, probabilistic: {sampling_percentage: 40}}
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
              processors: [\(tailSampling ? "tail_sampling, " : "")batch]
              exporters: [file]
        """
        let collector = try Collector(configuration: try CollectorConfiguration(yaml: yaml, environment: [:]),
                                      logger: Logger(label: "test"), announcer: StartupAnnouncer { _ in })
        return try await InProcessReplay(collector: collector, progress: ReplayProgress(isTerminal: false)).run(files: files)
    }

    @Test("replaying the same recording twice gives byte-identical output")
    func deterministic() async throws {
        let input = Self.root.appendingPathComponent("testdata/multi-agent.jsonl").path
        let directory = scratchDirectory("replay")
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

    @Test("tail sampling on the replay's clock: the same traces kept every run, each with all its spans")
    func tailSampling() async throws {
        let input = Self.root.appendingPathComponent("testdata/multi-agent.jsonl").path
        let directory = scratchDirectory("replay")
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = directory.appendingPathComponent("a.jsonl").path
        let second = directory.appendingPathComponent("b.jsonl").path
        _ = try await replay([input], into: first, tailSampling: true)
        _ = try await replay([input], into: second, tailSampling: true)
        let a = try Data(contentsOf: URL(fileURLWithPath: first))
        #expect(a == (try Data(contentsOf: URL(fileURLWithPath: second))))

        // Kept traces are whole, and every trace with an error is kept.
        var spansByTrace: [TraceID: Set<SpanID>] = [:]
        var failing: Set<TraceID> = []
        var resources: [SpanID: Resource] = [:]
        for entry in try TraceFileReader().read(input) {
            try entry.get().batch.forEachSpan { span, resource, _ in
                resources[span.spanID] = resource
                spansByTrace[span.traceID, default: []].insert(span.spanID)
                if span.status.code == .error { failing.insert(span.traceID) }
            }
        }
        var kept: [TraceID: Set<SpanID>] = [:]
        for line in String(decoding: a, as: UTF8.self).split(separator: "\n") {
            try OTLPJSON.decodeRequest(Array(line.utf8)).forEachSpan { span, resource, _ in
                kept[span.traceID, default: []].insert(span.spanID)
                // Held spans keep their resource (it is held beside their bytes, not in them).
                #expect(resource.attributes["service.name"] == resources[span.spanID]?.attributes["service.name"])
            }
        }
        #expect(!kept.isEmpty && kept.count < spansByTrace.count)
        for (trace, spans) in kept { #expect(spans == spansByTrace[trace], "trace \(trace) came out partly") }
        #expect(failing.isSubset(of: Set(kept.keys)))
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
