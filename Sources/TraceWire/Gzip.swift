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
    /// Inflates `compressed`, refusing to produce more than `limit` bytes. Every member of a
    /// multi-member stream is inflated ("A gzip file consists of a series of members", RFC 1952 §2.2),
    /// under one limit for all of them.
    public static func inflate(_ compressed: ByteBuffer, limit: Int) throws(GzipError) -> ByteBuffer {
        var input = compressed
        var output: ByteBuffer?
        repeat {
            let before = input.readableBytes
            var member = try inflateMember(&input, limit: limit - (output?.readableBytes ?? 0), totalLimit: limit)
            // No progress: trailing bytes that are not a gzip member.
            guard input.readableBytes < before else { throw .corrupt }
            if output == nil {
                output = member
            } else {
                output!.writeBuffer(&member)
            }
        } while input.readableBytes > 0
        return output ?? ByteBuffer()
    }

    /// Inflates the member at the start of `input`, moving past it.
    private static func inflateMember(_ input: inout ByteBuffer, limit: Int, totalLimit: Int) throws(GzipError) -> ByteBuffer {
        guard limit > 0 else { throw .tooLarge(limit: totalLimit) }
        do {
            let inflated = try input.decompress(with: .gzip(), maxSize: limit)
            // CompressNIO's maxSize bounds what it allocates, rounded up to a power of two, not what
            // it returns, so the limit is checked here too.
            guard inflated.readableBytes <= limit else { throw GzipError.tooLarge(limit: totalLimit) }
            return inflated
        } catch let error as GzipError {
            throw error
        } catch let error as CompressNIOError where error == .bufferOverflow {
            throw .tooLarge(limit: totalLimit)
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
