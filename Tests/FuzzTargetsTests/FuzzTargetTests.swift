import Foundation
import FuzzTargets
import TraceWire
import Testing

/// The repository's root, found from this file's path.
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

private func contents(_ relativePath: String) throws -> [UInt8] {
    try [UInt8](Data(contentsOf: repositoryRoot.appendingPathComponent(relativePath)))
}

/// Every input kept in fuzz/regressions/<target>/, as (target, file name).
private func regressionInputs() -> [(FuzzTarget, String)] {
    FuzzTarget.allCases.flatMap { target in
        let folder = repositoryRoot.appendingPathComponent("fuzz/regressions/\(target.rawValue)").path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { !$0.hasPrefix(".") && $0 != "README.md" }.sorted().map { (target, $0) }
    }
}

@Suite("fuzz targets")
struct FuzzTargetTests {
    /// Each crash a fuzz run found, replayed through the function the fuzzer calls: now it must be refused
    /// cleanly or accepted, with every checked property holding (a crash would end the test process).
    @Test("the inputs of crashes found by fuzzing no longer crash", arguments: regressionInputs().map { "\($0.0.rawValue)/\($0.1)" })
    func regression(_ path: String) throws {
        let target = try #require(FuzzTarget(rawValue: String(path.prefix { $0 != "/" })))
        let input = try contents("fuzz/regressions/\(path)")
        let outcome = try target.run(input, in: FuzzContext())
        if case .rejected(let reason) = outcome { #expect(!reason.isEmpty) }
        // Corpus entries kept for reaching deep code say in their name how they were answered when kept.
        let name = path.drop { $0 != "/" }.dropFirst()
        if name.hasPrefix("corpus-deep-accepted-") {
            #expect(outcome == .accepted, "\(path) reached the end of the target when kept; now: \(outcome)")
        } else if name.hasPrefix("corpus-refused-") {
            #expect(outcome != .accepted, "\(path) was refused when kept; now accepted")
        }
    }

    @Test("every target has kept corpus inputs that reach its deepest code", arguments: FuzzTarget.allCases)
    func keptCorpus(_ target: FuzzTarget) {
        let kept = regressionInputs().filter { $0.0 == target && $0.1.hasPrefix("corpus-deep-accepted-") }
        #expect(!kept.isEmpty, "fuzz/regressions/\(target.rawValue) has no corpus-deep-accepted-* input")
    }

    static let sources = Result {
        SeedSources(protobufRequest: try contents("testdata/multi-agent.pb"), jsonRequest: try contents("testdata/multi-agent.json"),
                    jsonLines: try contents("testdata/multi-agent.jsonl"), invalidIDs: try contents("testdata/invalid-ids.json"))
    }

    /// The seeds are real requests: each one is accepted and its round trips hold, except the few made to
    /// be refused. This is also the round-trip property checked on the test data without a fuzzer.
    @Test("every seed is accepted with its properties holding, but those meant to be refused", arguments: FuzzTarget.allCases)
    func seeds(_ target: FuzzTarget) throws {
        let seeds = try SeedCorpus.seeds(for: target, from: try Self.sources.get())
        #expect(seeds.count >= 5)
        let refusedOnPurpose: Set<String> = ["empty-body", "two-messages.grpc", "multi-agent-oversized.grpc"]
        let context = FuzzContext()
        for seed in seeds {
            #expect(seed.bytes.count <= target.maximumLength, "\(seed.name) is longer than the fuzzer's -max_len")
            let outcome = try target.run(seed.bytes, in: context)
            if refusedOnPurpose.contains(seed.name) {
                #expect(outcome != .accepted, "\(seed.name)")
            } else {
                #expect(outcome == .accepted, "\(seed.name)")
            }
        }
    }

    /// A JSON string holding U+0000 survives the protobuf writer and reader too (protobuf-c's strings
    /// would cut it): the JSON target compares the protobuf round trip and accepts it.
    @Test("a JSON string holding NUL survives the protobuf round trip")
    func nulInJSONString() throws {
        let body = Array(#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"a\u0000b"}]}]}]}"#.utf8)
        #expect(try FuzzTarget.json.run(body, in: FuzzContext()) == .accepted)
        let decoded = try OTLPJSON.decodeRequest(body)
        let codec = OTLPProtobufCodec()
        #expect(try codec.decodeRequest(codec.encodeRequest(decoded)).resourceSpans[0].scopeSpans[0].spans[0].name == "a\u{0}b")
    }

    @Test("hostile inputs are refused with the protocol's error", arguments: [
        (FuzzTarget.protobuf, [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F] as [UInt8]),
        (.json, Array(String(repeating: "[", count: 200).utf8)),  // deeper than JSONParser.maximumDepth
        (.grpcFraming, [0, 0xFF, 0xFF, 0xFF, 0xFF]),
        (.http2Session, [0, 0, 0, 0, 0, 0, 0, 0, 0]),  // DATA on stream 0
    ])
    func hostile(_ target: FuzzTarget, _ input: [UInt8]) throws {
        let outcome = try target.run(input, in: FuzzContext())
        guard case .rejected = outcome else {
            Issue.record("\(target.rawValue) accepted a hostile input")
            return
        }
    }
}
