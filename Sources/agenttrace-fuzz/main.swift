// The fuzzing driver (docs/fuzzing.md).
//
// Built by scripts/fuzz with `-sanitize=fuzzer,address -DFUZZING`, this is a libFuzzer binary:
//     agenttrace-fuzz TARGET [libFuzzer flags] [CORPUS_DIR...]
// SwiftPM links an executable's own `main` in place of libFuzzer's, so this main hands control to
// libFuzzer through LLVMFuzzerRunDriver after taking the target's name off the command line. The
// name is also put in AGENTTRACE_FUZZ_TARGET, where processes libFuzzer starts (-fork, crash
// minimisation) find it.
//
// Built normally (`swift build`), it replays inputs without libFuzzer:
//     agenttrace-fuzz TARGET FILE_OR_DIR...
// In both builds it writes the seed corpora:
//     agenttrace-fuzz --write-seeds TESTDATA_DIR OUT_DIR

import Foundation
import FuzzTargets

#if canImport(Glibc)
import Glibc
#endif

let usage = """
    usage: agenttrace-fuzz TARGET [libFuzzer flags] [CORPUS_DIR...]   (built by scripts/fuzz)
           agenttrace-fuzz TARGET FILE_OR_DIR...                      (a normal build: replays the inputs)
           agenttrace-fuzz --write-seeds TESTDATA_DIR OUT_DIR
    targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: " "))

    """

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("agenttrace-fuzz: \(message)\n".utf8))
    exit(2)
}

func readFile(_ path: String) -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else { fail("cannot read \(path)") }
    return [UInt8](data)
}

/// Writes OUT_DIR/<target>/<seed> for every target and OUT_DIR/<target>.dict where there is a dictionary.
func writeSeeds(testdata: String, to directory: String) {
    let sources = SeedSources(
        protobufRequest: readFile("\(testdata)/multi-agent.pb"), jsonRequest: readFile("\(testdata)/multi-agent.json"),
        jsonLines: readFile("\(testdata)/multi-agent.jsonl"), invalidIDs: readFile("\(testdata)/invalid-ids.json"))
    let files = FileManager.default
    for target in FuzzTarget.allCases {
        let folder = "\(directory)/\(target.rawValue)"
        do {
            try files.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for seed in try SeedCorpus.seeds(for: target, from: sources) {
                try Data(seed.bytes).write(to: URL(fileURLWithPath: "\(folder)/\(seed.name)"))
            }
            if let dictionary = SeedCorpus.dictionary(for: target) {
                try Data(dictionary.utf8).write(to: URL(fileURLWithPath: "\(directory)/\(target.rawValue).dict"))
            }
        } catch {
            fail("cannot write the \(target.rawValue) seeds: \(error)")
        }
    }
}

/// Runs `target` on every file named or inside a named directory; exits 1 on a violated invariant.
func replay(_ target: FuzzTarget, paths: [String]) -> Never {
    let context = FuzzContext()
    var files: [String] = []
    for path in paths {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { fail("no such file: \(path)") }
        if isDirectory.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files += names.sorted().map { "\(path)/\($0)" }
        } else {
            files.append(path)
        }
    }
    var violations = 0
    for file in files {
        do {
            switch try target.run(readFile(file), in: context) {
            case .accepted: print("\(file): accepted")
            case .rejected(let reason): print("\(file): rejected: \(reason.prefix(200))")
            }
        } catch {
            violations += 1
            print("\(file): INVARIANT VIOLATED: \(error)")
        }
    }
    exit(violations == 0 ? 0 : 1)
}

var arguments = CommandLine.arguments
if arguments.count == 4, arguments[1] == "--write-seeds" {
    writeSeeds(testdata: arguments[2], to: arguments[3])
    exit(0)
}

#if FUZZING

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

nonisolated(unsafe) var selectedTarget: FuzzTarget?
nonisolated(unsafe) let fuzzContext = FuzzContext()

/// libFuzzer's entry point: one input. A violated invariant aborts, so libFuzzer keeps the input as a crash.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let target = selectedTarget else { return 0 }
    let input = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        _ = try target.run(input, in: fuzzContext)
    } catch {
        FileHandle.standardError.write(Data("==agenttrace-fuzz== INVARIANT VIOLATED: \(error)\n".utf8))
        abort()
    }
    return 0
}

if arguments.count >= 2, let target = FuzzTarget(rawValue: arguments[1]) {
    selectedTarget = target
    setenv("AGENTTRACE_FUZZ_TARGET", target.rawValue, 1)
    arguments.remove(at: 1)
} else if let name = ProcessInfo.processInfo.environment["AGENTTRACE_FUZZ_TARGET"], let target = FuzzTarget(rawValue: name) {
    selectedTarget = target
} else {
    fail("name a target first\n\(usage)")
}
// libFuzzer keeps argv for the process's lifetime (it re-reads flags and re-executes itself), so these
// C strings are never freed.
var cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
var argc = CInt(arguments.count)
exit(cArguments.withUnsafeMutableBufferPointer { buffer in
    var argv = buffer.baseAddress!
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOneInput(data, size) }
})

#else

guard arguments.count >= 3, let target = FuzzTarget(rawValue: arguments[1]) else { fail("\n\(usage)") }
replay(target, paths: Array(arguments.dropFirst(2)))

#endif
