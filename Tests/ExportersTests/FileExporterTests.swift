import ConfigYAML
import Foundation
import Pipeline
import Testing
import TestSupport
import TraceModel
import TraceWire
@testable import Exporters

@Suite("file exporter")
struct FileExporterTests {
    func temporaryPath() -> String {
        scratchDirectory("file").appendingPathComponent("nested/traces.jsonl").path
    }

    func batch(_ name: String) -> SpanBatch {
        SpanBatch(resourceSpans: [ResourceSpans(resource: Resource(attributes: [Attribute("service.name", .string("svc"))]),
                                                scopeSpans: [ScopeSpans(spans: [Span(traceID: TraceID(high: 7, low: 8), spanID: SpanID(9), name: name)])])])
    }

    @Test("writes one OTLP/JSON request per line, appending, and the lines decode back")
    func writesLines() async throws {
        let path = temporaryPath()
        var configuration = FileExporter.Configuration()
        configuration.path = path
        let exporter = FileExporter(configuration: configuration)
        try await exporter.start()
        try await exporter.export(batch("one"))
        try await exporter.export(batch("two"))
        await exporter.shutdown()
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        let decoded = try lines.map { try OTLPJSON.decodeRequest(Array($0.utf8)) }
        #expect(decoded == [batch("one"), batch("two")])

        let again = FileExporter(configuration: configuration)
        try await again.start()
        try await again.export(batch("three"))
        await again.shutdown()
        #expect(try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").count == 3)
    }

    @Test("rotates by size, keeping max_backups older files")
    func rotation() async throws {
        let path = temporaryPath()
        var configuration = FileExporter.Configuration()
        configuration.path = path
        configuration.maxMegabytes = 1
        configuration.maxBackups = 2
        let exporter = FileExporter(configuration: configuration)
        try await exporter.start()
        let big = batch(String(repeating: "x", count: 400_000))
        for _ in 0..<7 { try await exporter.export(big) }
        await exporter.shutdown()
        let manager = FileManager.default
        #expect(manager.fileExists(atPath: path))
        #expect(manager.fileExists(atPath: path + ".1"))
        #expect(manager.fileExists(atPath: path + ".2"))
        #expect(!manager.fileExists(atPath: path + ".3"))
        for file in [path, path + ".1", path + ".2"] {
            let size = try #require(try manager.attributesOfItem(atPath: file)[.size] as? Int)
            #expect(size <= 1 << 20)
        }
    }

    @Test("configuration rejects unknown keys and formats, naming them")
    func configuration() throws {
        let value = try ConfigValue.parse(yaml: "path: /tmp/a\nformat: proto\n", environment: [:])
        #expect(throws: ConfigurationError.self) { try FileExporter.Configuration(section: try ConfigSection(value, path: "exporters.file")) }
        let unknown = try ConfigValue.parse(yaml: "path: /tmp/a\nrotation:\n  max_megs: 3\n", environment: [:])
        do {
            _ = try FileExporter.Configuration(section: try ConfigSection(unknown, path: "exporters.file"))
            Issue.record("expected a failure")
        } catch {
            #expect(error.key == "exporters.file.rotation.max_megs")
        }
    }
}
