import Foundation
import Pipeline
import TraceModel
import TraceWire

/// Writes batches as OTLP/JSON lines, one `ExportTraceServiceRequest` per line, the format the
/// OpenTelemetry Collector's file exporter writes and `agenttrace replay` reads. Appends to `path`;
/// when the file would pass `rotation.max_megabytes`, it becomes `path.1` (older ones shift up, at most
/// `rotation.max_backups` kept).
public actor FileExporter: SpanExporter {
    /// `exporters: file:` settings.
    public struct Configuration: Sendable, Equatable {
        /// Where to write. Default `./data/traces.jsonl`; parent folders are created.
        public var path = "./data/traces.jsonl"
        /// Size that triggers rotation, in MiB; 0 turns rotation off. Default 100.
        public var maxMegabytes = 100
        /// Rotated files kept. Default 10.
        public var maxBackups = 10

        public init() {}

        /// Reads the section, failing on unknown keys or bad values.
        public init(section: ConfigSection) throws(ConfigurationError) {
            path = try section.string("path", default: path)
            guard !path.isEmpty else { throw ConfigurationError(key: section.keyPath("path"), "must not be empty") }
            let format = try section.string("format", default: "json")
            guard format == "json" else {
                throw ConfigurationError(key: section.keyPath("format"), "only \"json\" (OTLP/JSON lines) is supported")
            }
            if let rotation = try section.section("rotation") {
                maxMegabytes = try rotation.int("max_megabytes", default: maxMegabytes, in: 0...1_000_000)
                maxBackups = try rotation.int("max_backups", default: maxBackups, in: 0...10_000)
                try rotation.finish()
            }
            try section.finish()
        }
    }

    private let configuration: Configuration
    private var handle: FileHandle?
    private var size: UInt64 = 0

    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    public func start() throws {
        try open()
    }

    public func export(_ batch: SpanBatch) throws {
        var line = OTLPJSON.encodeRequest(batch)
        line.append(UInt8(ascii: "\n"))
        let limit = UInt64(configuration.maxMegabytes) << 20
        if limit > 0, size > 0, size + UInt64(line.count) > limit { try rotate() }
        guard let handle else { throw FileExporterError.notStarted }
        try handle.write(contentsOf: line)
        size += UInt64(line.count)
    }

    public func shutdown() {
        try? handle?.synchronize()
        try? handle?.close()
        handle = nil
    }

    private func open() throws {
        let url = URL(fileURLWithPath: configuration.path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw FileExporterError.cannotCreate(configuration.path)
            }
        }
        let handle = try FileHandle(forWritingTo: url)
        size = try handle.seekToEnd()
        self.handle = handle
    }

    private func rotate() throws {
        try handle?.close()
        handle = nil
        let manager = FileManager.default
        let path = configuration.path
        if configuration.maxBackups == 0 {
            try manager.removeItem(atPath: path)
        } else {
            try? manager.removeItem(atPath: "\(path).\(configuration.maxBackups)")
            for generation in stride(from: configuration.maxBackups - 1, through: 1, by: -1)
            where manager.fileExists(atPath: "\(path).\(generation)") {
                try manager.moveItem(atPath: "\(path).\(generation)", toPath: "\(path).\(generation + 1)")
            }
            try manager.moveItem(atPath: path, toPath: "\(path).1")
        }
        try open()
    }
}

/// File exporter failures.
public enum FileExporterError: Error, CustomStringConvertible {
    case notStarted
    case cannotCreate(String)

    public var description: String {
        switch self {
        case .notStarted: "the file exporter was not started"
        case .cannotCreate(let path): "cannot create \(path)"
        }
    }
}

/// Builds `file` exporters.
public struct FileExporterFactory: ExporterFactory {
    public let type = "file"

    public init() {}

    public func makeExporter(section: ConfigSection, context: ComponentContext) throws -> any SpanExporter {
        FileExporter(configuration: try FileExporter.Configuration(section: section))
    }
}
