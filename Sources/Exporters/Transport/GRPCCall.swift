import HTTP2
import TraceWire

/// One unary call with its outcome classified for the retrying queue.
enum GRPCCall {
    @discardableResult
    static func unary(_ client: GRPCClient, path: String, message: [UInt8], compressed: Bool, metadata: [HTTP2Header],
                      timeout: Duration) async throws(ExportError) -> [UInt8] {
        let result: GRPCCallResult
        do {
            result = try await client.call(path: path, message: message, compressed: compressed, metadata: metadata, timeout: timeout)
        } catch {
            throw .retryable(error.description)
        }
        guard result.status != .ok else { return result.body }
        throw ExportError.forGRPCStatus(result.status, message: result.message,
                                        retryAfter: result.statusDetails.flatMap(RPCStatusDetails.retryDelay(base64:)))
    }
}
