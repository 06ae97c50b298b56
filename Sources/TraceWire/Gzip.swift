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
            let inflated = try input.decompress(with: .gzip(), maxSize: limit)
            // CompressNIO's maxSize bounds what it allocates, rounded up to a power of two, not what
            // it returns, so the limit is checked here too.
            guard inflated.readableBytes <= limit else { throw GzipError.tooLarge(limit: limit) }
            return inflated
        } catch let error as GzipError {
            throw error
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
