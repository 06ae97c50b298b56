// swift-tools-version:6.1
import PackageDescription

/// AgentTrace: an OpenTelemetry trace collector for systems of AI agents.
///
/// Dependency direction, never reversed:
/// agenttrace -> AgentTraceServer -> {Receivers, Processors, Exporters} -> Pipeline -> TraceModel;
/// Receivers, Exporters -> {TraceWire, HTTP2} -> TraceModel; Receivers, HTTP2 -> ServerSupport.
/// Only TraceWire and HTTP2 import a C module. Every target declares each module it imports
/// (scripts/check-package-imports checks it).
let package = Package(
    name: "AgentTrace",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "agenttrace", targets: ["agenttrace"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.0.0"),
        .package(url: "https://github.com/adam-fowler/compress-nio.git", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.24.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.20.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.27.0"),
    ],
    targets: [
        // C libraries, each behind one tiny target.
        .systemLibrary(
            name: "CProtobufC",
            pkgConfig: "libprotobuf-c",
            providers: [.apt(["libprotobuf-c-dev"])]
        ),
        .systemLibrary(
            name: "CNghttp2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),
        // protoc-c output (generated/, include/*.pb-c.h; regenerate with scripts/generate-protos)
        // plus the hand-written per-request arena allocator (trace_arena.c).
        .target(
            name: "CTraceProto",
            dependencies: ["CProtobufC"]
        ),

        .target(name: "TraceModel"),
        // The one JSON writer: OTLP/JSON, Zipkin, alert payloads and the admin API's documents.
        .target(name: "JSONText"),
        .target(
            name: "TraceWire",
            dependencies: [
                "TraceModel", "JSONText", "CTraceProto", "CProtobufC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CompressNIO", package: "compress-nio"),
            ]
        ),
        // The server plumbing every listener shares (HTTP/1, HTTP/2, the admin API): binding and
        // quiescing, connection limits and why connections close, Duration <-> NIO time. No unsafe code.
        .target(
            name: "ServerSupport",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "HTTP2",
            dependencies: [
                "CNghttp2", "ServerSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "Pipeline",
            dependencies: [
                "TraceModel",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // YAML text to `ConfigValue`: only what loads configuration links Yams, not the pipeline.
        .target(
            name: "ConfigYAML",
            dependencies: ["Pipeline", .product(name: "Yams", package: "Yams")]
        ),
        .target(
            name: "Receivers",
            dependencies: [
                "Pipeline", "TraceModel", "TraceWire", "HTTP2", "ServerSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ]
        ),
        // Alerts and their delivery to webhooks, Slack and PagerDuty, for every processor that fires them.
        .target(
            name: "Alerting",
            dependencies: [
                "Pipeline", "JSONText", "TraceModel",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "Processors",
            dependencies: [
                "Pipeline", "ConfigYAML", "Alerting", "JSONText", "TraceModel",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(
            name: "ServiceGraph",
            dependencies: [
                "Pipeline", "TraceModel", "JSONText",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                // `cluster:` asks Prometheus for every replica's series.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "Exporters",
            dependencies: [
                "Pipeline", "TraceModel", "TraceWire", "HTTP2", "JSONText",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(
            name: "AgentTraceServer",
            dependencies: [
                "Pipeline", "ConfigYAML", "Receivers", "Processors", "Alerting", "Exporters", "ServiceGraph",
                "TraceModel", "TraceWire", "HTTP2", "ServerSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // `replay --endpoint` posts with it: URLSession would link libcurl into the binary.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            resources: [
                .embedInCode("Resources/default-config.yaml"),
                // the live view on the admin port (docs/live-view.md): hand-written, nothing third-party
                .embedInCode("Resources/ui/index.html"),
                .embedInCode("Resources/ui/app.js"),
                .embedInCode("Resources/ui/app.css"),
            ]
        ),
        .executableTarget(name: "decode-bench", dependencies: ["TraceWire"]),
        // One processor alone (anomaly_detection, service_graph, tail_sampling), for callgrind's instruction counts
        // (bench/callgrind-processor, bench/callgrind-tail-sampling).
        .executableTarget(name: "processor-bench", dependencies: [
            "Processors", "ServiceGraph", "Pipeline", "TraceModel", .product(name: "Logging", package: "swift-log"),
            "Exporters", "ConfigYAML",  // the tail_sampling modes: the collector's codec, policies from YAML
            "TraceWire",  // zipkin_json
        ]),
        // Fuzzing (docs/fuzzing.md). The targets are a library so a unit test replays the kept crash inputs
        // through the very functions the fuzzer calls; the one executable is a libFuzzer driver when
        // scripts/fuzz builds it (-sanitize=fuzzer,address -DFUZZING) and a plain file replayer otherwise,
        // so a normal `swift build` compiles and links it without the sanitizer runtime.
        .target(
            name: "FuzzTargets",
            dependencies: [
                "TraceModel", "TraceWire", "HTTP2",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(name: "agenttrace-fuzz", dependencies: ["FuzzTargets"]),
        .executableTarget(
            name: "agenttrace",
            dependencies: [
                "AgentTraceServer", "ServiceGraph", "Pipeline", "TraceWire", "HTTP2", "ServerSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "TraceModelTests", dependencies: ["TraceModel"]),
        .testTarget(name: "JSONTextTests", dependencies: ["JSONText"]),
        .testTarget(name: "TraceWireTests", dependencies: [
            "TraceWire", "TraceModel",
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "ServerSupportTests", dependencies: [
            "ServerSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "HTTP2Tests", dependencies: [
            "HTTP2", "ServerSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .testTarget(name: "FuzzTargetsTests", dependencies: ["FuzzTargets", "TraceWire"]),
        .testTarget(name: "PipelineTests", dependencies: [
            "Pipeline", "ConfigYAML", "TraceModel", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "ReceiversTests", dependencies: [
            "Receivers", "Pipeline", "ConfigYAML", "TraceModel", "TraceWire", "HTTP2", "ServerSupport", "HTTP1TestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // HTTP/1 handlers in an EmbeddedChannel, and their responses parsed, for the receiver and admin tests.
        .target(name: "HTTP1TestSupport", dependencies: [
            "Receivers",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ], path: "Tests/HTTP1TestSupport"),
        .testTarget(name: "ProcessorsTests", dependencies: [
            "Processors", "ConfigYAML", "Alerting", "Pipeline", "TraceModel", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "AlertingTests", dependencies: [
            "Alerting", "ConfigYAML", "Pipeline", "TraceModel", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "ServiceGraphTests", dependencies: ["ServiceGraph", "ConfigYAML", "Pipeline", "TraceModel", "JSONText", "TestSupport"]),
        .testTarget(name: "ExportersTests", dependencies: [
            "Exporters", "Pipeline", "ConfigYAML", "TraceModel", "TraceWire", "HTTP2", "TestSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        .testTarget(name: "AgentTraceServerTests", dependencies: [
            "AgentTraceServer", "ServiceGraph", "Pipeline", "Receivers", "TraceModel", "TraceWire", "ServerSupport", "TestSupport", "HTTP1TestSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOPosix", package: "swift-nio"),
            // reads the Kubernetes ConfigMap in deploy/k8s to validate the configuration it carries
            .product(name: "Yams", package: "Yams"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
