import CompressNIO
import NIOCore

/// Why a gzip body could not be inflated.
public enum GzipError: Error, Equatable, Sendable {
    /// The inflated data would exceed the limit; inflation stopped there, so a gzip bomb costs nothing.
    case tooLarge(limit: Int)
    /// Not a valid gzip stream.
    case corrupt
}

/// gzip as OTLP uses it for `Content-Encoding: gzip` and `grpc-encoding: gzip`.
public enum Gzip {
    /// Inflates `compressed`, refusing to produce more than `limit` bytes.
    public static func inflate(_ compressed: ByteBuffer, limit: Int) throws(GzipError) -> ByteBuffer {
        var input = compressed
        do {
            return try input.decompress(with: .gzip(), maxSize: limit)
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw .tooLarge(limit: limit)
        } catch {
            throw .corrupt
        }
    }

    /// Compresses `bytes` with gzip.
    public static func deflate(_ bytes: ByteBuffer) throws -> ByteBuffer {
        var input = bytes
        return try input.compress(with: .gzip())
    }
}
