// Decodes one binary OTLP request many times: the decode path alone, for instruction counts under
// callgrind (bench/callgrind-decode), where the whole collector is too large for valgrind to load.
// `protobuf-c` decodes with the reference instead (libprotobuf-c's unpack, then the span model).
//   decode-bench FILE.pb [REPEAT] [protobuf-c]
import Foundation
import TraceWire

let arguments = CommandLine.arguments
guard arguments.count >= 2, let data = FileManager.default.contents(atPath: arguments[1]) else {
    FileHandle.standardError.write(Data("usage: decode-bench FILE.pb [REPEAT] [protobuf-c]\n".utf8))
    exit(2)
}
let repeats = arguments.count >= 3 ? Int(arguments[2]) ?? 1 : 1
let reference = arguments.count >= 4 && arguments[3] == "protobuf-c"
let bytes = [UInt8](data)
let codec = OTLPProtobufCodec()
var spans = 0
for _ in 0..<repeats {
    do {
        spans += try (reference ? codec.decodeRequestUsingProtobufC(bytes) : codec.decodeRequest(bytes)).spanCount
    } catch {
        FileHandle.standardError.write(Data("decode failed: \(error)\n".utf8))
        exit(1)
    }
}
print("decoded \(repeats) requests, \(spans) spans")
