import Foundation
import NIOCore
import NIOSSL
import NIOTLS
import Pipeline
import ServerSupport

/// `tls:` settings of a listener, named as the OpenTelemetry Collector's `configtls` names them.
public struct TLSServerConfiguration: Sendable, Equatable {
    /// `cert_file`: the server's certificate chain, PEM. Required.
    public var certFile: String
    /// `key_file`: the server's private key, PEM. Required.
    public var keyFile: String
    /// `client_ca_file`: when set, clients must present a certificate signed by one of these CAs (mTLS).
    /// Default none: no client certificate is asked for.
    public var clientCAFile: String?
    /// `min_version`: `1.2` (the default) or `1.3`.
    public var minVersion = "1.2"

    public init(certFile: String, keyFile: String, clientCAFile: String? = nil) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
    }

    /// Reads `tls:`, checking that every named file can be read.
    public init(section: ConfigSection) throws(ConfigurationError) {
        guard let cert = try section.optionalString("cert_file") else {
            throw ConfigurationError(key: section.keyPath("cert_file"), "required with tls: the server certificate (PEM)")
        }
        guard let key = try section.optionalString("key_file") else {
            throw ConfigurationError(key: section.keyPath("key_file"), "required with tls: the server private key (PEM)")
        }
        certFile = cert
        keyFile = key
        clientCAFile = try section.optionalString("client_ca_file")
        minVersion = try section.string("min_version", default: minVersion)
        guard ["1.2", "1.3"].contains(minVersion) else {
            throw ConfigurationError(key: section.keyPath("min_version"), "expected 1.2 or 1.3")
        }
        try section.finish()
        for (name, path) in [("cert_file", certFile), ("key_file", keyFile), ("client_ca_file", clientCAFile)] {
            guard let path else { continue }
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw ConfigurationError(key: section.keyPath(name), "cannot read \(path)")
            }
        }
    }
}

extension ConfigSection {
    /// `tls:` when present.
    public func tlsServer() throws(ConfigurationError) -> TLSServerConfiguration? {
        try section("tls").map { (tls) throws(ConfigurationError) in try TLSServerConfiguration(section: tls) }
    }
}

/// A listener's TLS context, built once at start-up: bad certificates fail there, not per connection.
public struct TLSServer: Sendable {
    private let context: NIOSSLContext

    /// Loads the certificate and key (and client CAs); `alpn` lists the protocols offered (`h2` for gRPC).
    public init(configuration: TLSServerConfiguration, alpn: [String]) throws {
        let chain = try NIOSSLCertificate.fromPEMFile(configuration.certFile).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: configuration.keyFile, format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        tls.minimumTLSVersion = configuration.minVersion == "1.3" ? .tlsv13 : .tlsv12
        tls.applicationProtocols = alpn
        if let clientCA = configuration.clientCAFile {
            tls.certificateVerification = .noHostnameVerification
            tls.trustRoots = .file(clientCA)
        }
        context = try NIOSSLContext(configuration: tls)
    }

    /// Adds the TLS handler at the bottom of each new connection's pipeline; failed handshakes are counted.
    public func configureTransport(events: ConnectionEvents) -> @Sendable (any Channel) throws -> Void {
        let context = self.context
        return { channel in
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
            try channel.pipeline.syncOperations.addHandler(TLSHandshakeWatcher(events: events))
        }
    }
}

/// Counts connections whose TLS handshake fails, then lets the error close them.
final class TLSHandshakeWatcher: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let events: ConnectionEvents
    private var handshakeDone = false

    init(events: ConnectionEvents) {
        self.events = events
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { handshakeDone = true }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !handshakeDone, error is NIOSSLError || error is BoringSSLError {
            handshakeDone = true  // count once
            events.closed(.tlsHandshake)
            context.close(promise: nil)
            return
        }
        context.fireErrorCaught(error)
    }
}
