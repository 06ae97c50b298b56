import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import Pipeline
import Receivers
import TraceModel
import TraceWire

/// What a replay did.
public struct ReplaySummary: Sendable, Equatable {
    public var files = 0
    public var spansRead = 0
    public var accepted = 0
    public var rejected = 0
    /// Requests (lines) that could not be decoded.
    public var malformed = 0
    /// Per exporter, in pipeline order: name, spans sent, spans failed.
    public var exporters: [(name: String, sent: Int, failed: Int)] = []

    public init() {}

    public static func == (lhs: ReplaySummary, rhs: ReplaySummary) -> Bool {
        lhs.lines == rhs.lines
    }

    /// The summary as printed: the `replay:` line, then one line per exporter.
    public var lines: [String] {
        ["replay: files=\(files) spans_read=\(spansRead) accepted=\(accepted) rejected=\(rejected)"
            + (malformed > 0 ? " malformed_requests=\(malformed)" : "")]
            + exporters.map { "exporter \($0.name): sent=\($0.sent) failed=\($0.failed)" }
    }
}

/// Replays recorded trace files through the configured pipeline in this process, on a virtual clock
/// that follows the spans' own timestamps: batch timeouts fire where the recording says time passed,
/// so the same input always gives the same output.
public struct InProcessReplay {
    private let collector: Collector
    private let reader = TraceFileReader()
    private let progress: ReplayProgress

    public init(collector: Collector, progress: ReplayProgress) {
        self.collector = collector
        self.progress = progress
    }

    public func run(files: [String]) async throws -> ReplaySummary {
        var summary = ReplaySummary()
        for pipeline in collector.pipelines { try await pipeline.runner.start() }
        var clock: UInt64 = 0
        try await reader.forEachRequest(in: files, summary: &summary, progress: progress) { request, summary in
            var batch = request.batch
            summary.rejected += SpanValidation.dropInvalidSpans(&batch)
            guard !batch.isEmpty else { return }
            summary.accepted += batch.spanCount
            clock = max(clock, Self.arrivalTime(of: batch))
            for pipeline in collector.pipelines {
                await pipeline.runner.tick(now: clock)
                await pipeline.runner.process(batch, now: clock)
            }
        }
        for pipeline in collector.pipelines { await pipeline.runner.shutdown(now: clock) }
        progress.finish()
        for pipeline in collector.pipelines {
            // An exporter several pipelines share is one instance: one line.
            for instance in pipeline.runner.exporters where !summary.exporters.contains(where: { $0.0 == instance.id.description }) {
                summary.exporters.append((instance.id.description, instance.tally.sent.load(ordering: .relaxed),
                                          instance.tally.failed.load(ordering: .relaxed)))
            }
        }
        return summary
    }

    /// When a recorded request reached the collector: as soon as its last span ended.
    static func arrivalTime(of batch: SpanBatch) -> UInt64 {
        var latest: UInt64 = 0
        batch.forEachSpan { span, _, _ in latest = max(latest, span.endTimeUnixNano, span.startTimeUnixNano) }
        return latest
    }
}

/// Sends recorded trace files to a running collector over OTLP/HTTP protobuf, paced by the recording's
/// timing divided by `speed` (0: as fast as possible), retrying when told to (429/503, Retry-After).
public struct EndpointReplay {
    private let url: URL
    private let speed: Double
    private let progress: ReplayProgress
    private let reader = TraceFileReader()
    private let codec = OTLPProtobufCodec()

    public init(endpoint: String, speed: Double, progress: ReplayProgress) throws {
        var text = endpoint
        if !text.contains("://") { text = "http://\(text)" }
        guard var components = URLComponents(string: text), components.host != nil else {
            throw TraceFileReader.ReadError(description: "--endpoint: \"\(endpoint)\" is not a URL such as http://localhost:4318")
        }
        if components.path.isEmpty || components.path == "/" { components.path = "/v1/traces" }
        guard let url = components.url else {
            throw TraceFileReader.ReadError(description: "--endpoint: \"\(endpoint)\" is not a URL")
        }
        self.url = url
        self.speed = speed
        self.progress = progress
    }

    public func run(files: [String]) async throws -> ReplaySummary {
        // AsyncHTTPClient rather than URLSession: on Linux URLSession is FoundationNetworking, which
        // links libcurl, and the container image (deploy/Dockerfile) carries no libcurl.
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(
            redirectConfiguration: .disallow, timeout: .init(connect: .seconds(5)), decompression: .disabled))
        do {
            let summary = try await run(files: files, client: client)
            try await client.shutdown()
            return summary
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func run(files: [String], client: HTTPClient) async throws -> ReplaySummary {
        var summary = ReplaySummary()
        var firstRecorded: UInt64?
        let started = ContinuousClock.now
        try await reader.forEachRequest(in: files, summary: &summary, progress: progress) { request, summary in
            let count = request.batch.spanCount
            if speed > 0 {
                let recorded = InProcessReplay.arrivalTime(of: request.batch)
                let origin = firstRecorded ?? recorded
                firstRecorded = origin
                let due = Duration.nanoseconds(Int64(Double(recorded &- min(origin, recorded)) / speed))
                let wait = due - (ContinuousClock.now - started)
                if wait > .zero { try await Task.sleep(for: wait) }
            }
            let rejected = try await send(codec.encodeRequest(request.batch), client: client, location: request.location)
            summary.rejected += rejected
            summary.accepted += count - rejected
        }
        progress.finish()
        return summary
    }

    /// Posts one request; returns the spans the collector rejected in its partial success.
    private func send(_ body: [UInt8], client: HTTPClient, location: String) async throws -> Int {
        for attempt in 1...10 {
            var request = HTTPClientRequest(url: url.absoluteString)
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/x-protobuf")
            request.headers.add(name: "user-agent", value: "AgentTrace")
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await client.execute(request, timeout: .seconds(60))
            let data = Array(buffer: try await response.body.collect(upTo: 16 << 20))
            let status = Int(response.status.code)
            switch status {
            case 200:
                let partial = try codec.decodeResponse(data)
                return Int(partial.rejectedSpans)
            case 429, 502, 503, 504:
                let retryAfter = response.headers.first(name: "retry-after").flatMap(Double.init) ?? 1
                progress.warn("\(location): collector answered \(status); retrying in \(retryAfter)s (attempt \(attempt))")
                try await Task.sleep(for: .milliseconds(Int(min(retryAfter, 30) * 1000)))
            default:
                let message = (try? codec.decodeStatus(data).message) ?? String(decoding: data, as: UTF8.self)
                throw TraceFileReader.ReadError(description: "\(location): collector answered \(status): \(message)")
            }
        }
        throw TraceFileReader.ReadError(description: "\(location): collector kept refusing; gave up after 10 attempts")
    }
}

extension TraceFileReader {
    /// Reads `files` in order and calls `body` with every decodable request, counting files, spans
    /// read and malformed requests into `summary` and drawing progress; malformed requests are warned
    /// about and skipped.
    func forEachRequest(in files: [String], summary: inout ReplaySummary, progress: ReplayProgress,
                        _ body: (Entry, inout ReplaySummary) async throws -> Void) async throws {
        for (fileIndex, path) in files.enumerated() {
            let entries = try read(path)
            summary.files += 1
            for (entryIndex, entry) in entries.enumerated() {
                progress.update(fraction: (Double(fileIndex) + Double(entryIndex + 1) / Double(max(entries.count, 1))) / Double(files.count),
                                spans: summary.spansRead)
                switch entry {
                case .success(let request):
                    summary.spansRead += request.batch.spanCount
                    try await body(request, &summary)
                case .failure(let error):
                    progress.warn(error.description)
                    summary.malformed += 1
                }
            }
        }
    }
}

/// A progress bar on standard error when it is a terminal; warnings always.
public final class ReplayProgress: @unchecked Sendable {
    // Used from the replay's single task only.
    private let isTerminal: Bool
    private var lastDrawn = -1

    public init(isTerminal: Bool = isatty(STDERR_FILENO) == 1) {
        self.isTerminal = isTerminal
    }

    func update(fraction: Double, spans: Int) {
        guard isTerminal else { return }
        let percent = Int(min(max(fraction, 0), 1) * 100)
        guard percent != lastDrawn else { return }
        lastDrawn = percent
        let width = 30
        let filled = width * percent / 100
        let bar = String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(percent)% \(spans) spans".utf8))
    }

    func warn(_ message: String) {
        if isTerminal, lastDrawn >= 0 { FileHandle.standardError.write(Data("\n".utf8)) }
        FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
    }

    func finish() {
        if isTerminal, lastDrawn >= 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
