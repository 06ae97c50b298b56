import CNghttp2
import NIOCore

/// A header field: lowercase name and value, as HTTP/2 carries them.
public typealias HTTP2Header = (name: String, value: String)

/// What an `HTTP2Session` learnt from the bytes it was given, in order. Results come back as data, so
/// nothing in the caller runs inside an nghttp2 callback.
public enum HTTP2Event {
    /// A complete header block: request headers (server), response headers or trailers (client).
    case headers(streamID: Int32, [HTTP2Header], endStream: Bool)
    /// Part of a stream's body.
    case data(streamID: Int32, [UInt8])
    /// The peer finished sending on the stream (END_STREAM on a DATA frame).
    case endStream(streamID: Int32)
    /// The stream is gone; `errorCode` is the HTTP/2 error code (0: NO_ERROR).
    case streamClosed(streamID: Int32, errorCode: UInt32)
    /// The peer sent GOAWAY.
    case goAway(lastStreamID: Int32, errorCode: UInt32)
}

/// HTTP/2 failures, mapped once from nghttp2's error codes at this boundary.
public struct HTTP2Error: Error, CustomStringConvertible, Sendable {
    /// nghttp2's error code (negative).
    public var code: Int32
    /// What went wrong.
    public var message: String
    public var file: String
    public var line: Int

    init(code: Int32, file: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = String(cString: nghttp2_strerror(code))
        self.file = file
        self.line = line
    }

    /// True when nghttp2 gave up on a peer flooding it (PINGs, SETTINGS, or frames it must answer).
    public var isFlood: Bool { code == NGHTTP2_ERR_FLOODED.rawValue }

    /// True when the peer did not start with the HTTP/2 connection preface (an HTTP/1 client, say).
    public var isBadPreface: Bool { code == NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue }

    public var description: String { "HTTP/2 error \(code): \(message)" }
}

/// Settings a session announces.
public struct HTTP2Settings: Sendable, Equatable {
    /// Streams the peer may open at once. Default 100.
    public var maxConcurrentStreams: UInt32 = 100
    /// Per-stream flow-control window. Default 1 MiB, so a 4 MiB request needs few round trips.
    public var initialWindowSize: UInt32 = 1 << 20
    /// Connection-level flow-control window. Default 16 MiB.
    public var connectionWindowSize: Int32 = 16 << 20
    /// Largest frame payload accepted. Default 16 KiB (the HTTP/2 default).
    public var maxFrameSize: UInt32 = 16_384
    /// Largest header list accepted, in bytes. Default 16 KiB.
    public var maxHeaderListSize: UInt32 = 16_384

    public init() {}
}

/// One HTTP/2 connection's protocol state, owned by exactly one `nghttp2_session`: bytes in through
/// `receive`, bytes out through `takeOutput`, responses submitted as values. Not thread-safe: a
/// connection's event loop owns it. Socket I/O stays with SwiftNIO.
public final class HTTP2Session {
    /// Which side of the connection this is.
    public enum Role: Sendable { case server, client }

    private var session: OpaquePointer?
    private var events: [HTTP2Event] = []
    private var headerBlocks: [Int32: (headers: [HTTP2Header], bytes: Int)] = [:]
    private var outgoing: [Int32: OutgoingBody] = [:]
    private var liveStreams: Set<Int32> = []
    /// Streams to reset once their response has been written out in full.
    private var resetsAfterResponse: [Int32: UInt32] = [:]
    /// Where `takeOutput` is putting bytes while nghttp2 runs `onSendData`; nil outside `takeOutput`.
    private var outputSink: ((UnsafeRawBufferPointer) -> Void)?
    /// Set by `onSendData`, so `takeOutput` knows a DATA frame went out.
    private var wroteDataFrame = false
    private let maxHeaderListSize: Int

    /// A response or request body being sent, in the parts it was handed over in (a gRPC prefix and its
    /// message, say, never joined), with the trailers that follow it. DATA frames are written from the
    /// parts where they are (`NGHTTP2_DATA_FLAG_NO_COPY`), so nghttp2 never copies the body.
    private final class OutgoingBody {
        let parts: [[UInt8]]
        /// Bytes not yet written: the part being written, and where in it.
        private var part = 0
        private var offset = 0
        private(set) var remaining: Int
        /// Set once nghttp2 has been told EOF; the body goes when its last frame has been written.
        var reachedEnd = false
        let trailers: [HTTP2Header]

        init(parts: [[UInt8]], trailers: [HTTP2Header]) {
            self.parts = parts
            self.remaining = parts.reduce(0) { $0 + $1.count }
            self.trailers = trailers
        }

        /// Hands the next `count` bytes to `sink`, one contiguous run at a time, without copying them.
        func write(_ count: Int, to sink: (UnsafeRawBufferPointer) -> Void) {
            var left = min(count, remaining)
            remaining -= left
            while left > 0 {
                let bytes = parts[part]
                let run = min(left, bytes.count - offset)
                bytes.withUnsafeBytes { sink(UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + run)])) }
                left -= run
                offset += run
                if offset == bytes.count {
                    part += 1
                    offset = 0
                }
            }
        }
    }

    /// Creates a session and queues the initial SETTINGS frame.
    public init(role: Role, settings: HTTP2Settings = HTTP2Settings()) throws(HTTP2Error) {
        maxHeaderListSize = Int(settings.maxHeaderListSize)
        var callbacks: OpaquePointer?
        guard nghttp2_session_callbacks_new(&callbacks) == 0, let callbacks else { throw HTTP2Error(code: NGHTTP2_ERR_NOMEM.rawValue) }
        defer { nghttp2_session_callbacks_del(callbacks) }
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, onBeginHeaders)
        nghttp2_session_callbacks_set_on_header_callback(callbacks, onHeader)
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, onFrameReceived)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, onDataChunk)
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, onStreamClose)
        nghttp2_session_callbacks_set_send_data_callback(callbacks, onSendData)

        var option: OpaquePointer?
        guard nghttp2_option_new(&option) == 0, let option else { throw HTTP2Error(code: NGHTTP2_ERR_NOMEM.rawValue) }
        defer { nghttp2_option_del(option) }
        nghttp2_option_set_max_send_header_block_length(option, 64 << 10)
        nghttp2_option_set_max_deflate_dynamic_table_size(option, 4096)

        let userData = Unmanaged.passUnretained(self).toOpaque()
        var created: OpaquePointer?
        let result = role == .server
            ? nghttp2_session_server_new2(&created, callbacks, userData, option)
            : nghttp2_session_client_new2(&created, callbacks, userData, option)
        guard result == 0, let created else { throw HTTP2Error(code: result) }
        session = created

        var entries = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: settings.maxConcurrentStreams),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: settings.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_FRAME_SIZE.rawValue), value: settings.maxFrameSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: settings.maxHeaderListSize),
        ]
        try check(nghttp2_submit_settings(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), &entries, entries.count))
        try check(nghttp2_session_set_local_window_size(created, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindowSize))
    }

    deinit {
        close()
    }

    /// Frees the nghttp2 session; later calls throw or do nothing.
    public func close() {
        if let session { nghttp2_session_del(session) }
        session = nil
        outgoing.removeAll()
        headerBlocks.removeAll()
    }

    /// Feeds bytes from the peer; returns what they meant. A protocol error from the peer throws
    /// (the caller then sends what `takeOutput` holds, normally a GOAWAY, and closes).
    public func receive(_ bytes: UnsafeRawBufferPointer) throws(HTTP2Error) -> [HTTP2Event] {
        guard let session else { throw HTTP2Error(code: NGHTTP2_ERR_INVALID_STATE.rawValue) }
        var offset = 0
        while offset < bytes.count {
            let consumed = nghttp2_session_mem_recv(session, bytes.baseAddress!.advanced(by: offset).assumingMemoryBound(to: UInt8.self),
                                                    bytes.count - offset)
            guard consumed >= 0 else {
                events.removeAll()
                throw HTTP2Error(code: Int32(consumed))
            }
            offset += consumed
        }
        defer { events.removeAll(keepingCapacity: true) }
        return events
    }

    /// Appends every frame nghttp2 wants to send to `output`; returns false when there was none.
    @discardableResult
    public func takeOutput(into output: inout [UInt8]) throws(HTTP2Error) -> Bool {
        try takeOutput { output.append(contentsOf: $0) }
    }

    /// Appends every frame nghttp2 wants to send to `output`; returns false when there was none.
    @discardableResult
    public func takeOutput(into output: inout ByteBuffer) throws(HTTP2Error) -> Bool {
        try takeOutput { output.writeBytes($0) }
    }

    /// Hands every frame nghttp2 wants to send to `sink`, in order, as runs of bytes valid only during
    /// the call: frames nghttp2 serialised itself, and DATA frames as their 9-byte header followed by
    /// the body straight from the parts it was submitted in.
    private func takeOutput(_ sink: (UnsafeRawBufferPointer) -> Void) throws(HTTP2Error) -> Bool {
        guard let session else { return false }
        let result: Result<Bool, HTTP2Error> = withoutActuallyEscaping(sink) { sink in
            outputSink = sink
            wroteDataFrame = false
            defer { outputSink = nil }
            var wrote = false
            while true {
                var pointer: UnsafePointer<UInt8>?
                let length = nghttp2_session_mem_send(session, &pointer)
                guard length >= 0 else { return .failure(HTTP2Error(code: Int32(length))) }
                if length > 0, let pointer {
                    sink(UnsafeRawBufferPointer(start: pointer, count: length))
                    wrote = true
                    continue
                }
                // Everything queued is written; resets that waited for their response can follow it now.
                let due = resetsAfterResponse.filter { outgoing[$0.key] == nil }
                guard !due.isEmpty else { return .success(wrote || wroteDataFrame) }
                for (streamID, errorCode) in due.sorted(by: { $0.key < $1.key }) {
                    resetsAfterResponse[streamID] = nil
                    if liveStreams.contains(streamID) {
                        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, errorCode)
                    }
                }
            }
        }
        return try result.get()
    }

    /// Writes and flushes every frame waiting to be sent on `context`'s connection; an nghttp2 failure
    /// closes the connection. Frames go straight into the buffer handed to the channel (a DATA frame's
    /// body is copied once, from where it was submitted); no session state is held while writing: a
    /// write can run the channel's read, and so this, again.
    func writeOutput(to context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 256)
        do {
            guard try takeOutput(into: &buffer) else { return }
        } catch {
            context.close(promise: nil)
            return
        }
        context.writeAndFlush(NIOAny(buffer), promise: nil)
    }

    /// Whether the session still wants to read or write; both false means the connection can close.
    public var isActive: Bool {
        guard let session else { return false }
        return nghttp2_session_want_read(session) != 0 || nghttp2_session_want_write(session) != 0
    }

    /// Streams open now (begun and not yet closed).
    public var openStreams: Int { liveStreams.count }

    /// Server: answers a stream with headers, an optional body and optional trailers.
    /// An empty body with no trailers ends the stream on the headers.
    public func respond(streamID: Int32, headers: [HTTP2Header], body: [UInt8] = [], trailers: [HTTP2Header] = []) throws(HTTP2Error) {
        try respond(streamID: streamID, headers: headers, bodyParts: body.isEmpty ? [] : [body], trailers: trailers)
    }

    /// Server: answers a stream with headers, a body sent as the concatenation of `bodyParts` (which
    /// are never joined in memory) and optional trailers.
    public func respond(streamID: Int32, headers: [HTTP2Header], bodyParts: [[UInt8]], trailers: [HTTP2Header] = []) throws(HTTP2Error) {
        guard let session else { throw HTTP2Error(code: NGHTTP2_ERR_INVALID_STATE.rawValue) }
        let result: Int32
        if bodyParts.allSatisfy(\.isEmpty) && trailers.isEmpty {
            result = Self.withNameValues(headers) { nghttp2_submit_response(session, streamID, $0, $1, nil) }
        } else {
            outgoing[streamID] = OutgoingBody(parts: bodyParts, trailers: trailers)
            var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: onReadBody)
            result = Self.withNameValues(headers) { nghttp2_submit_response(session, streamID, $0, $1, &provider) }
            if result != 0 { outgoing[streamID] = nil }
        }
        try check(result)
    }

    /// Client: opens a stream with headers and a body, then trailers if any; returns the stream id.
    public func request(headers: [HTTP2Header], body: [UInt8], trailers: [HTTP2Header] = []) throws(HTTP2Error) -> Int32 {
        try request(headers: headers, bodyParts: [body], trailers: trailers)
    }

    /// Client: opens a stream with headers and a body sent as the concatenation of `bodyParts` (which
    /// are never joined in memory), then trailers if any; returns the stream id.
    public func request(headers: [HTTP2Header], bodyParts: [[UInt8]], trailers: [HTTP2Header] = []) throws(HTTP2Error) -> Int32 {
        guard let session else { throw HTTP2Error(code: NGHTTP2_ERR_INVALID_STATE.rawValue) }
        var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: onReadBody)
        let streamID = Self.withNameValues(headers) { nghttp2_submit_request(session, nil, $0, $1, &provider, nil) }
        guard streamID > 0 else { throw HTTP2Error(code: streamID) }
        outgoing[streamID] = OutgoingBody(parts: bodyParts, trailers: trailers)
        liveStreams.insert(streamID)
        return streamID
    }

    /// Ends a stream abruptly with an HTTP/2 error code.
    public func resetStream(_ streamID: Int32, errorCode: UInt32) {
        guard let session else { return }
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, errorCode)
    }

    /// After an early response (the peer is still sending): once the response has been written in full,
    /// resets the stream with NO_ERROR so the peer stops sending the rest (RFC 9113 §8.1). Resetting at
    /// once would make nghttp2 drop the queued response.
    public func resetAfterResponse(_ streamID: Int32) {
        resetsAfterResponse[streamID] = 0
    }

    /// Graceful shutdown, step one: tells the peer to open no new streams (RFC 9113 §6.8).
    public func sendShutdownNotice() {
        guard let session else { return }
        _ = nghttp2_submit_shutdown_notice(session)
    }

    /// Ends the session for a connection error: GOAWAY with `errorCode`, unless nghttp2 has queued one.
    public func terminate(errorCode: UInt32) {
        guard let session else { return }
        _ = nghttp2_session_terminate_session(session, errorCode)
    }

    /// Graceful shutdown, step two: GOAWAY naming the last stream that will be processed.
    public func sendGoAway(errorCode: UInt32 = 0) {
        guard let session else { return }
        _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
                                  errorCode, nil, 0)
    }

    private func check(_ result: Int32, file: String = #fileID, line: Int = #line) throws(HTTP2Error) {
        guard result == 0 else { throw HTTP2Error(code: result, file: file, line: line) }
    }

    /// Lays `headers` out as nghttp2_nv values over one contiguous buffer (nghttp2 copies them).
    private static func withNameValues<Result>(_ headers: [HTTP2Header], _ body: (UnsafePointer<nghttp2_nv>, Int) -> Result) -> Result {
        var storage: [UInt8] = []
        var ranges: [(Int, Int, Int, Int)] = []
        for header in headers {
            let nameStart = storage.count
            storage.append(contentsOf: header.name.utf8)
            let valueStart = storage.count
            storage.append(contentsOf: header.value.utf8)
            ranges.append((nameStart, valueStart - nameStart, valueStart, storage.count - valueStart))
        }
        storage.append(0)  // never empty, so the base address exists
        return storage.withUnsafeMutableBufferPointer { buffer in
            let base = buffer.baseAddress!
            let nameValues = ranges.map { range in
                nghttp2_nv(name: base + range.0, value: base + range.2, namelen: range.1, valuelen: range.3,
                           flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return nameValues.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }

    // MARK: nghttp2 callbacks: they only record, the caller acts after `receive` returns.

    fileprivate static func from(_ userData: UnsafeMutableRawPointer?) -> HTTP2Session {
        Unmanaged<HTTP2Session>.fromOpaque(userData!).takeUnretainedValue()
    }

    fileprivate func beginHeaders(streamID: Int32) {
        headerBlocks[streamID] = ([], 0)
        liveStreams.insert(streamID)
    }

    /// Records one header; false when the block passes the advertised maximum (the stream is then reset).
    fileprivate func header(streamID: Int32, name: UnsafePointer<UInt8>, nameLength: Int, value: UnsafePointer<UInt8>, valueLength: Int) -> Bool {
        guard headerBlocks[streamID] != nil else { return true }
        // RFC 9113 §6.5.2: the size of a field is its name and value lengths plus 32.
        headerBlocks[streamID]!.bytes += nameLength + valueLength + 32
        guard headerBlocks[streamID]!.bytes <= maxHeaderListSize else {
            headerBlocks[streamID] = nil
            return false
        }
        headerBlocks[streamID]!.headers.append((
            String(decoding: UnsafeBufferPointer(start: name, count: nameLength), as: UTF8.self),
            String(decoding: UnsafeBufferPointer(start: value, count: valueLength), as: UTF8.self)))
        return true
    }

    fileprivate func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) {
        let header = frame.pointee.hd
        let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch Int(header.type) {
        case Int(NGHTTP2_HEADERS.rawValue):
            guard let block = headerBlocks.removeValue(forKey: header.stream_id) else { return }
            events.append(.headers(streamID: header.stream_id, block.headers, endStream: endStream))
        case Int(NGHTTP2_DATA.rawValue):
            if endStream { events.append(.endStream(streamID: header.stream_id)) }
        case Int(NGHTTP2_GOAWAY.rawValue):
            events.append(.goAway(lastStreamID: frame.pointee.goaway.last_stream_id, errorCode: frame.pointee.goaway.error_code))
        default:
            break
        }
    }

    fileprivate func dataChunk(streamID: Int32, _ bytes: UnsafeBufferPointer<UInt8>) {
        events.append(.data(streamID: streamID, Array(bytes)))
    }

    fileprivate func streamClosed(streamID: Int32, errorCode: UInt32) {
        outgoing[streamID] = nil
        headerBlocks[streamID] = nil
        resetsAfterResponse[streamID] = nil
        liveStreams.remove(streamID)
        events.append(.streamClosed(streamID: streamID, errorCode: errorCode))
    }

    /// Says how much of the body the next DATA frame carries, and asks nghttp2 to let `sendData` write
    /// it (`NGHTTP2_DATA_FLAG_NO_COPY`) rather than copying it into `buffer`. At the end of the body,
    /// submits the trailers, if any, so the stream ends on them.
    fileprivate func readBody(streamID: Int32, length: Int, flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let body = outgoing[streamID] else {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            return 0
        }
        let count = min(length, body.remaining)
        if count == body.remaining {
            body.reachedEnd = true
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
            if !body.trailers.isEmpty, let session {
                flags.pointee |= NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
                let result = Self.withNameValues(body.trailers) { nghttp2_submit_trailer(session, streamID, $0, $1) }
                if result != 0 { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
            }
        }
        if count > 0 {
            flags.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue
        } else if body.reachedEnd {
            outgoing[streamID] = nil
        }
        return count
    }

    /// Writes one DATA frame `readBody` sized, as nghttp2_send_data_callback asks: the 9-byte header,
    /// the pad length if padded, `length` body bytes from where they are, then the padding.
    fileprivate func sendData(streamID: Int32, header: UnsafePointer<UInt8>, length: Int, padding: Int) -> Int32 {
        guard let sink = outputSink, let body = outgoing[streamID], body.remaining >= length else {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
        }
        sink(UnsafeRawBufferPointer(start: header, count: 9))
        if padding > 0 {
            withUnsafeBytes(of: UInt8(padding - 1)) { sink($0) }
        }
        body.write(length, to: sink)
        if padding > 1 {
            Array(repeating: UInt8(0), count: padding - 1).withUnsafeBytes { sink($0) }
        }
        wroteDataFrame = true
        if body.reachedEnd && body.remaining == 0 { outgoing[streamID] = nil }
        return 0
    }
}

private let onBeginHeaders: nghttp2_on_begin_headers_callback = { _, frame, userData in
    guard let frame else { return 0 }
    HTTP2Session.from(userData).beginHeaders(streamID: frame.pointee.hd.stream_id)
    return 0
}

private let onHeader: nghttp2_on_header_callback = { _, frame, name, nameLength, value, valueLength, _, userData in
    guard let frame, let name, let value else { return 0 }
    let accepted = HTTP2Session.from(userData).header(streamID: frame.pointee.hd.stream_id, name: name, nameLength: nameLength,
                                                      value: value, valueLength: valueLength)
    // A temporal failure resets just this stream (RST_STREAM), as nghttp2 documents.
    return accepted ? 0 : NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue
}

private let onFrameReceived: nghttp2_on_frame_recv_callback = { _, frame, userData in
    guard let frame else { return 0 }
    HTTP2Session.from(userData).frameReceived(frame)
    return 0
}

private let onDataChunk: nghttp2_on_data_chunk_recv_callback = { _, _, streamID, data, length, userData in
    guard let data else { return 0 }
    HTTP2Session.from(userData).dataChunk(streamID: streamID, UnsafeBufferPointer(start: data, count: length))
    return 0
}

private let onStreamClose: nghttp2_on_stream_close_callback = { _, streamID, errorCode, userData in
    HTTP2Session.from(userData).streamClosed(streamID: streamID, errorCode: errorCode)
    return 0
}

private let onReadBody: nghttp2_data_source_read_callback = { _, streamID, _, length, flags, _, userData in
    guard let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    return HTTP2Session.from(userData).readBody(streamID: streamID, length: length, flags: flags)
}

private let onSendData: nghttp2_send_data_callback = { _, frame, header, length, _, userData in
    guard let frame, let header else { return NGHTTP2_ERR_CALLBACK_FAILURE.rawValue }
    return HTTP2Session.from(userData).sendData(streamID: frame.pointee.hd.stream_id, header: header, length: length,
                                                padding: Int(frame.pointee.data.padlen))
}
