import Foundation
import NIOCore
import TraceModel
import TraceWire

/// Reads recorded trace files: OTLP/JSON lines (`.jsonl`), one OTLP/JSON request (`.json`), or one
/// binary `ExportTraceServiceRequest` (`.pb`), each optionally gzipped (`.gz`).
public struct TraceFileReader {
    /// The largest file, after decompression, read at once.
    public static let maximumFileSize = 1 << 30

    /// A file that could not be read, naming it (and the line, for `.jsonl`).
    public struct ReadError: Error, CustomStringConvertible {
        public var description: String
    }

    /// One request read from a file.
    public struct Entry {
        public var batch: SpanBatch
        /// Where it came from: `path` or `path:line`.
        public var location: String
    }

    private let codec = OTLPProtobufCodec()

    public init() {}

    /// The requests in `path`, in file order. Malformed lines of a `.jsonl` are returned as errors in
    /// place, so a replay can report them and go on.
    public func read(_ path: String) throws -> [Result<Entry, ReadError>] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReadError(description: "\(path): cannot read the file")
        }
        var bytes = ByteBuffer(bytes: data)
        var name = path
        if name.hasSuffix(".gz") {
            name.removeLast(3)
            do {
                bytes = try Gzip.inflate(bytes, limit: Self.maximumFileSize)
            } catch {
                throw ReadError(description: "\(path): not a valid gzip file (\(error))")
            }
        }
        if name.hasSuffix(".jsonl") || name.hasSuffix(".ndjson") {
            var entries: [Result<Entry, ReadError>] = []
            let content = bytes.readableBytesView
            var lineNumber = 0
            var start = content.startIndex
            while start < content.endIndex {
                let end = content[start...].firstIndex(of: UInt8(ascii: "\n")) ?? content.endIndex
                lineNumber += 1
                let line = content[start..<end]
                start = end == content.endIndex ? end : content.index(after: end)
                guard line.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }) else { continue }
                do {
                    entries.append(.success(Entry(batch: try OTLPJSON.decodeRequest(line), location: "\(path):\(lineNumber)")))
                } catch {
                    entries.append(.failure(ReadError(description: "\(path):\(lineNumber): \(error)")))
                }
            }
            return entries
        }
        if name.hasSuffix(".json") {
            do {
                return [.success(Entry(batch: try OTLPJSON.decodeRequest(bytes.readableBytesView), location: path))]
            } catch {
                return [.failure(ReadError(description: "\(path): \(error)"))]
            }
        }
        if name.hasSuffix(".pb") || name.hasSuffix(".binpb") || name.hasSuffix(".protobuf") {
            do {
                let batch = try bytes.withUnsafeReadableBytes { try codec.decodeRequest($0) }
                return [.success(Entry(batch: batch, location: path))]
            } catch {
                return [.failure(ReadError(description: "\(path): \(error)"))]
            }
        }
        throw ReadError(description: "\(path): unknown file type; expected .jsonl, .json or .pb, optionally with .gz")
    }
}
