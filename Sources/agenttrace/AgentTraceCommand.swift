import AgentTraceServer
import ArgumentParser
import Foundation
import HTTP2
import Logging
import Pipeline
import ServerSupport
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

/// The process's exit codes, from BSD's sysexits.h, so scripts and supervisors can tell a mistake in the
/// command line from one in the configuration from a failure at run time.
enum ExitStatus {
    /// EX_USAGE: the command line is wrong (ArgumentParser's own code for usage errors; usage is printed).
    static let usage: Int32 = 64
    /// EX_NOINPUT: the configuration file cannot be read.
    static let noInput: Int32 = 66
    /// EX_UNAVAILABLE: a listener cannot bind its address (busy, not permitted, unknown host).
    static let unavailable: Int32 = 69
    /// EX_SOFTWARE: the collector failed while running (an exporter failed to start, …).
    static let software: Int32 = 70
    /// EX_CONFIG: the configuration is invalid.
    static let configuration: Int32 = 78
}

/// A failure reported on standard error as one `agenttrace: …` message, without usage text, ending the
/// process with its own exit code.
struct Failure: Error {
    let message: String
    let code: Int32

    /// Writes the message and returns the code for ArgumentParser to exit with.
    func exit() -> ExitCode {
        FileHandle.standardError.write(Data("agenttrace: \(message)\n".utf8))
        return ExitCode(code)
    }

    /// A configuration mistake, one line per problem when there are several.
    static func configuration(_ error: ConfigurationError, file: String?) -> Failure {
        let problems = error.all
        let source = file.map { " in \($0)" } ?? ""
        if problems.count == 1 {
            return Failure(message: "invalid configuration\(source): \(error)", code: ExitStatus.configuration)
        }
        return Failure(message: "invalid configuration\(source), \(problems.count) problems:\n"
                            + problems.map { "  \($0)" }.joined(separator: "\n"), code: ExitStatus.configuration)
    }

    /// Maps what running the collector threw to its exit code.
    static func runtime(_ error: any Error) -> Failure {
        switch error {
        case let error as ListenError: Failure(message: "\(error)", code: ExitStatus.unavailable)
        case let error as ConfigurationError: configuration(error, file: nil)
        default: Failure(message: "\(error)", code: ExitStatus.software)
        }
    }
}

/// Options shared by the commands that read a configuration.
struct ConfigOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "A YAML configuration file; without it the embedded default is used.")
    var config: String?

    /// Reads the configuration, keeping its mistakes in `problems` for `build` to report with the
    /// components' own.
    func load() throws(Failure) -> CollectorConfiguration {
        let text: String
        if let config {
            guard let data = FileManager.default.contents(atPath: config) else {
                throw Failure(message: "cannot read the configuration file \(config)", code: ExitStatus.noInput)
            }
            text = String(decoding: data, as: UTF8.self)
        } else {
            text = CollectorConfiguration.defaultYAML
        }
        do throws(ConfigurationError) {
            return try CollectorConfiguration.parse(yaml: text, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw .configuration(error, file: config)
        }
    }

    /// Builds the collector, reporting every configuration mistake at once.
    func build(_ configuration: CollectorConfiguration, logger: Logger) throws(Failure) -> Collector {
        do {
            return try Collector(configuration: configuration, logger: logger)
        } catch let error as ConfigurationError {
            throw .configuration(error, file: config)
        } catch {
            throw Failure(message: "invalid configuration\(config.map { " in \($0)" } ?? ""): \(error)", code: ExitStatus.configuration)
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
        UsableCores.sizeNIOSingletons()
        do {
            let configuration = try options.load()
            let logger = options.makeLogger(level: configuration.logLevel)
            let collector = try options.build(configuration, logger: logger)
            logger.info("starting", metadata: ["version": "\(AgentTraceCommand.version)"])
            do {
                try await collector.run()
            } catch {
                throw Failure.runtime(error)
            }
            logger.info("stopped")
        } catch let failure as Failure {
            throw failure.exit()
        }
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
        UsableCores.sizeNIOSingletons()
        let summary: ReplaySummary
        do {
            summary = try await replay()
        } catch let error as TraceFileReader.ReadError {
            throw Failure(message: "\(error)", code: ExitStatus.noInput).exit()
        } catch let error as ExitCode {
            throw error
        } catch let error as ValidationError {
            throw error
        } catch {
            throw Failure.runtime(error).exit()
        }
        for line in summary.lines { print(line) }
        if summary.malformed > 0 { throw ExitCode(1) }
    }

    private func replay() async throws -> ReplaySummary {
        let summary: ReplaySummary
        let progress = ReplayProgress()
        if let endpoint {
            summary = try await EndpointReplay(endpoint: endpoint, speed: speed, progress: progress).run(files: files)
        } else {
            let collector: Collector
            do throws(Failure) {
                let configuration = try options.load()
                collector = try options.build(configuration, logger: options.makeLogger(level: configuration.logLevel))
            } catch {
                throw error.exit()
            }
            summary = try await InProcessReplay(collector: collector, progress: progress).run(files: files)
            if let graphOut {
                guard let graph = collector.components(ServiceGraphProcessor.self).first else {
                    throw ValidationError("--graph-out needs a service_graph processor in the pipeline")
                }
                try Data(GraphJSON.encodeNodeGraph(graph.snapshot())).write(to: URL(fileURLWithPath: graphOut))
            }
        }
        return summary
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
        do throws(Failure) {
            let configuration = try options.load()
            _ = try options.build(configuration, logger: Logger(label: "agenttrace", factory: { _ in SwiftLogNoOpLogHandler() }))
        } catch {
            throw error.exit()
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
