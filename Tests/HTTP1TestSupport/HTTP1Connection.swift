import Foundation
import NIOCore
import NIOEmbedded
import Receivers

/// One parsed HTTP/1.1 response (RFC 9112: status line, header fields, then `content-length` bytes).
public struct ParsedResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    /// The first value of the header field `name` (lower case).
    public func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }

    /// Every complete response in `bytes`, in order.
    public static func all(in bytes: [UInt8]) -> [ParsedResponse] {
        var responses: [ParsedResponse] = []
        var rest = bytes[...]
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        while let end = rest.firstRange(of: separator) {
            let head = String(decoding: rest[rest.startIndex..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
            guard let statusLine = head.first, let status = Int(statusLine.split(separator: " ")[1]) else { break }
            let headers = head.dropFirst().compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            }
            var response = ParsedResponse(status: status, headers: headers, body: [])
            let length = response.header("content-length").flatMap(Int.init) ?? 0
            let bodyStart = end.upperBound
            guard rest.distance(from: bodyStart, to: rest.endIndex) >= length else { break }
            response.body = Array(rest[bodyStart..<rest.index(bodyStart, offsetBy: length)])
            responses.append(response)
            rest = rest[rest.index(bodyStart, offsetBy: length)...]
        }
        return responses
    }
}

/// `HTTP1RequestHandler` behind the same pipeline `HTTP1Server` builds, in an `EmbeddedChannel`.
public struct HTTP1Connection {
    /// The channel the handlers run in.
    public let channel: EmbeddedChannel

    /// A connected channel with `HTTP1Server.configureConnection`'s handlers in front of `responder`.
    public init(responder: any HTTP1Responder) throws {
        channel = EmbeddedChannel()
        try HTTP1Server.configureConnection(channel, responder: responder)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 4318)).wait()
    }

    /// Sends raw bytes; returns every response written so far.
    public func send(_ bytes: [UInt8]) throws -> [ParsedResponse] {
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        return try responses()
    }

    /// The responses written so far.
    public func responses() throws -> [ParsedResponse] {
        var out: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out += buffer.readableBytesView }
        return ParsedResponse.all(in: out)
    }

    /// A `GET` (or `method`) request for `target` with extra header lines such as `authorization: Bearer x`.
    public static func get(_ target: String, method: String = "GET", headers: [String] = []) -> [UInt8] {
        Array("\(method) \(target) HTTP/1.1\r\nHost: localhost\r\n\(headers.map { $0 + "\r\n" }.joined())\r\n".utf8)
    }

    /// A `POST /v1/traces` request with `body`.
    public static func post(_ body: [UInt8], type: String = "application/x-protobuf", contentLength: Int? = nil) -> [UInt8] {
        Array("POST /v1/traces HTTP/1.1\r\nHost: localhost\r\nContent-Type: \(type)\r\nContent-Length: \(contentLength ?? body.count)\r\n\r\n".utf8) + body
    }
}

