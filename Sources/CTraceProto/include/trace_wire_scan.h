/* Hand-written; not generated. A pre-pass over protobuf bytes that bounds message nesting before
 * protobuf-c (which recurses without a limit) unpacks them, so hostile input cannot overflow the stack. */
#ifndef TRACE_WIRE_SCAN_H
#define TRACE_WIRE_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

typedef enum {
    TRACE_WIRE_SCAN_OK = 0,
    TRACE_WIRE_SCAN_TOO_DEEP = 1,
    TRACE_WIRE_SCAN_MALFORMED = 2,
} TraceWireScanResult;

/* Walks `data` as a message of `descriptor`, descending into known message fields, and fails when
 * they nest more than max_depth levels deep or the framing (tags, varints, lengths) is broken.
 * Sub-messages too short to nest past the limit are skipped, not checked: protobuf-c checks them. */
TraceWireScanResult trace_wire_scan(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data,
                                    size_t length, unsigned max_depth);

/* trace_wire_scan for an opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest; takes the
 * descriptor's address here in C, where it is stable. */
TraceWireScanResult trace_wire_scan_export_trace_request(const uint8_t *data, size_t length, unsigned max_depth);

#endif /* TRACE_WIRE_SCAN_H */
