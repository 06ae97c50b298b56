import Foundation
import Pipeline
import Synchronization
import TraceWire

extension DurableLog {
    /// A log whose records are binary OTLP `ExportTraceServiceRequest`s, as every disk queue and
    /// write-ahead log of AgentTrace keeps them.
    public static func otlp(directory: URL) -> DurableLog {
        let codec = BatchCodec.otlp()
        return DurableLog(directory: directory, encode: codec.encode, decode: codec.decode)
    }
}

extension BatchCodec {
    /// Binary OTLP `ExportTraceServiceRequest`s: written straight from the spans (`OTLPProtobufWriter`,
    /// no arena, so no lock), read through one codec (and its arena) of its own, one caller at a time.
    public static func otlp() -> BatchCodec {
        let codec = Mutex(OTLPProtobufCodec(initialArenaCapacity: 64 << 10))
        return BatchCodec(encode: { batch in OTLPProtobufWriter.request(batch) },
                          decode: { bytes in try codec.withLock { try $0.decodeRequest(bytes) } },
                          encodeHeld: { selection, received in OTLPProtobufWriter.heldRequest(selection, received: received) })
    }
}
