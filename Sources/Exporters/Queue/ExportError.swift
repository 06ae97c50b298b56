import HTTP2

/// How a send failed, classified as the OTLP specification classifies responses: a retryable failure
/// is tried again with backoff; a permanent one drops the batch.
public struct ExportError: Error, CustomStringConvertible, Sendable {
    /// Whether trying again may succeed.
    public var isRetryable: Bool
    /// What went wrong, for logs.
    public var reason: String
    /// How long the backend asked us to wait (HTTP `Retry-After`, gRPC `RetryInfo`).
    public var retryAfter: Duration?

    public static func retryable(_ reason: String, retryAfter: Duration? = nil) -> ExportError {
        ExportError(isRetryable: true, reason: reason, retryAfter: retryAfter)
    }

    public static func permanent(_ reason: String) -> ExportError {
        ExportError(isRetryable: false, reason: reason, retryAfter: nil)
    }

    public var description: String { "\(isRetryable ? "retryable" : "permanent"): \(reason)" }

    /// OTLP/HTTP: 429, 502, 503 and 504 are retryable; every other failure status is not.
    public static func forHTTPStatus(_ status: Int, body: String, retryAfter: Duration?) -> ExportError {
        let reason = "HTTP \(status)\(body.isEmpty ? "" : ": \(body.prefix(200))")"
        return [429, 502, 503, 504].contains(status) ? .retryable(reason, retryAfter: retryAfter) : .permanent(reason)
    }

    /// OTLP/gRPC: CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED (only with RetryInfo), ABORTED,
    /// OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are retryable.
    public static func forGRPCStatus(_ code: GRPCStatusCode, message: String, retryAfter: Duration?) -> ExportError {
        let reason = "gRPC status \(code.rawValue)\(message.isEmpty ? "" : ": \(message.prefix(200))")"
        switch code {
        case .cancelled, .deadlineExceeded, .aborted, .outOfRange, .unavailable, .dataLoss:
            return .retryable(reason, retryAfter: retryAfter)
        case .resourceExhausted where retryAfter != nil:
            return .retryable(reason, retryAfter: retryAfter)
        default:
            return .permanent(reason)
        }
    }
}

/// What a backend said of a batch it accepted: OTLP's `partial_success`, else everything accepted.
public struct SendResult: Sendable, Equatable {
    /// Spans the backend refused although the request succeeded (OTLP `partial_success.rejected_spans`).
    public var rejectedSpans: Int
    /// Why, as the backend put it (`partial_success.error_message`).
    public var errorMessage: String

    /// A result; the defaults are everything accepted.
    public init(rejectedSpans: Int = 0, errorMessage: String = "") {
        self.rejectedSpans = rejectedSpans
        self.errorMessage = errorMessage
    }

    /// Every span accepted.
    public static let accepted = SendResult()

    /// What a Zipkin or Jaeger export leaves out: exporter-mappings §0.4, "A span whose `trace_id` is not 16
    /// bytes with at least one non-zero byte, or whose `span_id` is not 8 bytes with at least one non-zero
    /// byte, is never exported", so it is counted as failed (the translators skip it).
    public static func unmappable(_ payload: SpanBatchPayload) -> SendResult {
        var invalid = 0
        for resourceSpans in payload.batch.resourceSpans {
            for scopeSpans in resourceSpans.scopeSpans {
                for span in scopeSpans.spans where !span.traceID.isValid || !span.spanID.isValid { invalid += 1 }
            }
        }
        guard invalid > 0 else { return .accepted }
        return SendResult(rejectedSpans: invalid, errorMessage: "spans with an all-zero trace or span id are not exported")
    }
}

/// Sends one batch to a backend; the queue around it retries and persists.
public protocol BatchSender: Sendable {
    /// Sends `batch`, throwing an `ExportError` that says whether to try again; on success, what the
    /// backend said it rejected.
    func send(_ batch: SpanBatchPayload) async throws(ExportError) -> SendResult
    /// Releases connections.
    func shutdown() async
}

import TraceModel

/// What a sender sends: the batch, and how many spans it holds (counted once).
public struct SpanBatchPayload: Sendable {
    public var batch: SpanBatch
    public var spanCount: Int

    public init(_ batch: SpanBatch) {
        self.batch = batch
        spanCount = batch.spanCount
    }
}
