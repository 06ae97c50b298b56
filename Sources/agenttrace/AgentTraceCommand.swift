import AgentTraceServer
import ArgumentParser
import Foundation
import HTTP2
import Logging
import Pipeline
import ServiceGraph
import TraceWire

@main
struct AgentTraceCommand: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "agenttrace",
        abstract: "An OpenTelemetry trace collector for systems of AI agents.",
        version: version,
        subcommands: [Serve.self, Replay.self, Validate.self, Version.self],
        defaultSubcommand: Serve.self
    )
}

/// Options shared by the commands that read a configuration.
struct ConfigOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "A YAML configuration file; without it the embedded default is used.")
    var config: String?

    func load() throws -> CollectorConfiguration {
        let text: String
        if let config {
            guard let data = FileManager.default.contents(atPath: config) else {
                throw ValidationError("cannot read the configuration file \(config)")
            }
            text = String(decoding: data, as: UTF8.self)
        } else {
            text = CollectorConfiguration.defaultYAML
        }
        do {
            return try CollectorConfiguration(yaml: text, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError("invalid configuration\(config.map { " in \($0)" } ?? ""): \(error)")
        }
    }

    func makeLogger(level: String) -> Logger {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = Logger.Level(configName: level)
            return handler
        }
        return Logger(label: "agenttrace")
    }
}

extension Logger.Level {
    init(configName: String) {
        switch configName {
        case "trace": self = .trace
        case "debug": self = .debug
        case "notice": self = .notice
        case "warn", "warning": self = .warning
        case "error": self = .error
        case "critical": self = .critical
        default: self = .info
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the collector until SIGINT or SIGTERM.")

    @OptionGroup var options: ConfigOptions

    func run() async throws {
        let configuration = try options.load()
        let logger = options.makeLogger(level: configuration.logLevel)
        let collector: Collector
        do {
            collector = try Collector(configuration: configuration, logger: logger)
        } catch {
            throw ValidationError("invalid configuration: \(error)")
        }
        logger.info("starting", metadata: ["version": "\(AgentTraceCommand.version)"])
        try await collector.run()
        logger.info("stopped")
    }
}

struct Replay: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay recorded trace files (.jsonl, .json, .pb, optionally .gz).",
        discussion: """
            Without --endpoint the configured pipeline runs in this process on a virtual clock driven by the \
            spans' timestamps, so the same input gives the same output. With --endpoint the files are sent \
            to a running collector over OTLP/HTTP protobuf.
            """
    )

    @OptionGroup var options: ConfigOptions

    @Option(help: "Send to a running collector's OTLP/HTTP endpoint, such as http://localhost:4318.")
    var endpoint: String?

    @Option(help: "With --endpoint: replay at this multiple of the recorded pace; 0 sends as fast as possible.")
    var speed: Double = 1

    @Option(help: "Without --endpoint: write the service graph (the /api/service-graph JSON) to this file afterwards.")
    var graphOut: String?

    @Argument(help: "The trace files to replay.")
    var files: [String]

    func validate() throws {
        guard speed >= 0, speed.isFinite else { throw ValidationError("--speed must be 0 or more") }
        guard !files.isEmpty else { throw ValidationError("name at least one trace file") }
    }

    func run() async throws {
        let summary: ReplaySummary
        let progress = ReplayProgress()
        if let endpoint {
            summary = try await EndpointReplay(endpoint: endpoint, speed: speed, progress: progress).run(files: files)
        } else {
            let configuration = try options.load()
            let logger = options.makeLogger(level: configuration.logLevel)
            let collector: Collector
            do {
                collector = try Collector(configuration: configuration, logger: logger)
            } catch {
                throw ValidationError("invalid configuration: \(error)")
            }
            summary = try await InProcessReplay(collector: collector, progress: progress).run(files: files)
            if let graphOut {
                guard let graph = collector.serviceGraphs.first else {
                    throw ValidationError("--graph-out needs a service_graph processor in the pipeline")
                }
                try Data(GraphJSON.encodeNodeGraph(graph.snapshot())).write(to: URL(fileURLWithPath: graphOut))
            }
        }
        for line in summary.lines { print(line) }
        if summary.malformed > 0 { throw ExitCode(1) }
    }
}

struct Validate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check a configuration without running it.")

    @OptionGroup var options: ConfigOptions

    @Flag(help: "Print the embedded default configuration and exit.")
    var printDefault = false

    func run() async throws {
        if printDefault {
            print(CollectorConfiguration.defaultYAML, terminator: "")
            return
        }
        let configuration = try options.load()
        do {
            _ = try Collector(configuration: configuration, logger: Logger(label: "agenttrace", factory: { _ in SwiftLogNoOpLogHandler() }))
        } catch {
            throw ValidationError("invalid configuration\(options.config.map { " in \($0)" } ?? ""): \(error)")
        }
        print("configuration is valid")
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the version and the C libraries in use.")

    func run() {
        print("agenttrace \(AgentTraceCommand.version) (libprotobuf-c \(ProtobufCLibrary.version), libnghttp2 \(NGHTTP2Library.version))")
    }
}
