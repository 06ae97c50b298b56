import TraceModel
import TraceWire

extension FuzzTarget {
    /// Protobuf: a request decodes or is refused with an `OTLPDecodingError`. What decodes must survive
    /// our own encoders: protobuf out and in again gives the same batch, and so does OTLP/JSON out and in
    /// (which also checks that the JSON writer escapes every string the protobuf side can produce).
    static func protobuf(_ input: [UInt8], in context: FuzzContext) throws(InvariantViolation) -> FuzzOutcome {
        let batch: SpanBatch
        do {
            batch = try context.protobuf.decodeRequest(input)
        } catch {
            try checkProtobufCRefuses(input, refusal: error, in: context)
            return .rejected(error.message)
        }
        try checkProtobufCReadsTheSame(input, batch, in: context)
        try checkProtobufRoundTrip(batch, in: context, from: .protobuf)
        try checkJSONRoundTrip(batch, from: .protobuf)
        return .accepted
    }

    /// OTLP/JSON: a body decodes or is refused with an `OTLPDecodingError`. What decodes must survive our
    /// JSON writer and, when protobuf can carry it, our protobuf encoder.
    static func json(_ input: [UInt8], in context: FuzzContext) throws(InvariantViolation) -> FuzzOutcome {
        let batch: SpanBatch
        do {
            batch = try OTLPJSON.decodeRequest(input)
        } catch {
            return .rejected(error.message)
        }
        try checkJSONRoundTrip(batch, from: .json)
        // JSON allows deeper AnyValue nesting (128 levels of JSON) than the protobuf decoder accepts
        // (64 levels of messages), so a refusal for depth is expected, not a bug.
        try checkProtobufRoundTrip(batch, in: context, from: .json, allowTooDeep: true)
        return .accepted
    }

    /// The reader refused what protobuf-c, the reference, refuses too, unless the refusal is the
    /// reader's own expansion limit (the reference runs without one) or a field number beyond the
    /// specification's 2^29 - 1 (protobuf-c keeps 32 bits of such a number and skips the field).
    static func checkProtobufCRefuses(_ input: [UInt8], refusal: OTLPDecodingError, in context: FuzzContext)
        throws(InvariantViolation) {
        guard !refusal.message.contains("expands beyond"),
              refusal.message != OTLPDecodingError.fieldNumberTooLarge.message,
              let reference = try? context.protobuf.decodeRequestUsingProtobufC(input) else { return }
        throw InvariantViolation(.protobuf, "refused (\(refusal.message)) what protobuf-c reads as \(reference.spanCount) spans")
    }

    /// protobuf-c, the reference, reads the same batch, except where it departs from the protobuf
    /// specification: strings cut at U+0000, a singular message sent twice not merged.
    static func checkProtobufCReadsTheSame(_ input: [UInt8], _ batch: SpanBatch, in context: FuzzContext)
        throws(InvariantViolation) {
        let merged = context.protobuf.lastRequestMergedSingularMessage
        let reference: SpanBatch
        do {
            reference = try context.protobuf.decodeRequestUsingProtobufC(input)
        } catch {
            throw InvariantViolation(.protobuf, "read \(batch.spanCount) spans where protobuf-c refuses: \(error.message)")
        }
        if merged || batch.containsNUL { return }
        try expectSame(reference, batch, .protobuf, "reading with protobuf-c instead")
    }

    /// Protobuf out and in again gives the same batch.
    static func checkProtobufRoundTrip(_ batch: SpanBatch, in context: FuzzContext, from target: FuzzTarget,
                                       allowTooDeep: Bool = false) throws(InvariantViolation) {
        let encoded = context.protobuf.encodeRequest(batch)
        let again: SpanBatch
        do {
            again = try context.protobuf.decodeRequest(encoded)
        } catch {
            if allowTooDeep, error.message.contains("nested deeper") { return }
            throw InvariantViolation(target, "our protobuf encoding of a decoded batch does not decode: \(error.message)")
        }
        try expectSame(batch, again, target, "protobuf encode then decode")
    }

    /// OTLP/JSON out and in again gives the same batch.
    static func checkJSONRoundTrip(_ batch: SpanBatch, from target: FuzzTarget) throws(InvariantViolation) {
        let encoded = OTLPJSON.encodeRequest(batch)
        let again: SpanBatch
        do {
            again = try OTLPJSON.decodeRequest(encoded)
        } catch {
            throw InvariantViolation(target, "our OTLP/JSON encoding of a decoded batch does not decode: \(error.message)")
        }
        try expectSame(batch, again, target, "OTLP/JSON encode then decode")
    }

    /// Equal batches; NaN attribute values (never equal to themselves) are compared through the JSON
    /// writer's output, which spells every field of the model out.
    static func expectSame(_ expected: SpanBatch, _ actual: SpanBatch, _ target: FuzzTarget, _ step: String) throws(InvariantViolation) {
        if expected == actual { return }
        let expectedJSON = OTLPJSON.encodeRequest(expected)
        let actualJSON = OTLPJSON.encodeRequest(actual)
        if expectedJSON == actualJSON { return }
        var index = 0
        while index < min(expectedJSON.count, actualJSON.count), expectedJSON[index] == actualJSON[index] { index += 1 }
        let start = max(0, index - 60)
        throw InvariantViolation(target, """
            \(step) changed the batch; as OTLP/JSON, first difference at byte \(index):
              before: …\(String(decoding: expectedJSON[start..<min(expectedJSON.count, index + 60)], as: UTF8.self))
              after:  …\(String(decoding: actualJSON[start..<min(actualJSON.count, index + 60)], as: UTF8.self))
            """)
    }
}
