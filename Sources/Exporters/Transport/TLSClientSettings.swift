import Foundation
import NIOCore
import NIOSSL
import Pipeline

/// An exporter's `tls:` settings, named as the OpenTelemetry Collector's `configtls` client names them.
/// Present, the exporter connects with TLS; absent, gRPC exporters speak h2c and HTTP ones follow the
/// URL's scheme.
public struct TLSClientSettings: Sendable, Equatable {
    /// `ca_file`: CAs to trust instead of the system's. Default: the system's.
    public var caFile: String?
    /// `cert_file` and `key_file`: a client certificate for mTLS. Default none.
    public var certFile: String?
    public var keyFile: String?
    /// `insecure_skip_verify`: accept any server certificate. Default false; for tests only.
    public var insecureSkipVerify = false
    /// `server_name_override`: the name checked against the certificate and sent as SNI. Default: the endpoint's host.
    public var serverNameOverride: String?
    /// `insecure`: the Collector's switch for a plaintext gRPC connection ("whether to enable client transport
    /// security for the exporter's gRPC connection"); true means no TLS at all, so a pasted Collector block
    /// with `tls: {insecure: true}` connects as it did there. Default false.
    public var insecure = false

    public init() {}

    /// Reads `tls:`, checking that every named file can be read and that cert and key come together.
    public init(section: ConfigSection) throws(ConfigurationError) {
        caFile = try section.optionalString("ca_file")
        certFile = try section.optionalString("cert_file")
        keyFile = try section.optionalString("key_file")
        insecureSkipVerify = try section.bool("insecure_skip_verify", default: false)
        serverNameOverride = try section.optionalString("server_name_override")
        insecure = try section.bool("insecure", default: false)
        try section.finish()
        guard (certFile == nil) == (keyFile == nil) else {
            throw ConfigurationError(key: section.keyPath(certFile == nil ? "cert_file" : "key_file"), "cert_file and key_file go together")
        }
        for (name, path) in [("ca_file", caFile), ("cert_file", certFile), ("key_file", keyFile)] {
            guard let path else { continue }
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw ConfigurationError(key: section.keyPath(name), "cannot read \(path)")
            }
        }
    }

    /// SwiftNIO SSL's client configuration, offering `alpn`.
    public func configuration(alpn: [String]) throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = alpn
        if let caFile { tls.trustRoots = .file(caFile) }
        if let certFile, let keyFile {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certFile).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
        }
        if insecureSkipVerify { tls.certificateVerification = .none }
        return tls
    }

    /// Adds a TLS client handler (ALPN `h2`) to each new gRPC connection to `host`.
    func grpcTransport(host: String) throws -> @Sendable (any Channel) throws -> Void {
        let context = try NIOSSLContext(configuration: configuration(alpn: ["h2"]))
        let serverName = serverNameOverride ?? host
        // SNI must be a host name, never an address (RFC 6066 §3).
        let sni = serverName.first?.isNumber == true || serverName.contains(":") ? nil : serverName
        return { channel in
            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: sni))
        }
    }
}
