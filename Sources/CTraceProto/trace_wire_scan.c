/* Hand-written; not generated. See include/trace_wire_scan.h. */
#include "trace_wire_scan.h"

#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"

static int trace_wire_read_varint(const uint8_t *data, size_t length, size_t *offset, uint64_t *value) {
    uint64_t result = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*offset >= length) return 0;
        uint8_t byte = data[(*offset)++];
        result |= (uint64_t)(byte & 0x7F) << shift;
        if ((byte & 0x80) == 0) {
            *value = result;
            return 1;
        }
    }
    return 0;
}

static TraceWireScanResult trace_wire_scan_level(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data,
                                                 size_t length, unsigned depth_left) {
    size_t offset = 0;
    while (offset < length) {
        uint64_t key;
        if (!trace_wire_read_varint(data, length, &offset, &key)) return TRACE_WIRE_SCAN_MALFORMED;
        uint64_t number = key >> 3;
        if (number == 0 || number > 0x1FFFFFFF) return TRACE_WIRE_SCAN_MALFORMED;
        uint64_t skipped;
        switch (key & 7) {
        case 0:
            if (!trace_wire_read_varint(data, length, &offset, &skipped)) return TRACE_WIRE_SCAN_MALFORMED;
            break;
        case 1:
            if (length - offset < 8) return TRACE_WIRE_SCAN_MALFORMED;
            offset += 8;
            break;
        case 5:
            if (length - offset < 4) return TRACE_WIRE_SCAN_MALFORMED;
            offset += 4;
            break;
        case 2: {
            uint64_t size;
            if (!trace_wire_read_varint(data, length, &offset, &size)) return TRACE_WIRE_SCAN_MALFORMED;
            if (size > length - offset) return TRACE_WIRE_SCAN_MALFORMED;
            const ProtobufCFieldDescriptor *field =
                protobuf_c_message_descriptor_get_field(descriptor, (unsigned)number);
            /* Every nesting level costs at least two bytes (a tag and a length), so a message of `size`
             * bytes holds at most size / 2 levels: when that fits the budget, it need not be walked. This
             * keeps the scan to the request's top levels instead of every attribute. */
            if (field != NULL && field->type == PROTOBUF_C_TYPE_MESSAGE && size / 2 >= depth_left) {
                if (depth_left == 0) return TRACE_WIRE_SCAN_TOO_DEEP;
                TraceWireScanResult inner =
                    trace_wire_scan_level(field->descriptor, data + offset, (size_t)size, depth_left - 1);
                if (inner != TRACE_WIRE_SCAN_OK) return inner;
            }
            offset += (size_t)size;
            break;
        }
        default:
            return TRACE_WIRE_SCAN_MALFORMED; /* groups (3, 4) do not occur in proto3; 6 and 7 are invalid */
        }
    }
    return TRACE_WIRE_SCAN_OK;
}

TraceWireScanResult trace_wire_scan(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data,
                                    size_t length, unsigned max_depth) {
    return trace_wire_scan_level(descriptor, data, length, max_depth);
}

TraceWireScanResult trace_wire_scan_export_trace_request(const uint8_t *data, size_t length, unsigned max_depth) {
    return trace_wire_scan(&opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor, data, length,
                           max_depth);
}
