import NIOCore

/// Where an HTTP/2 peer is in its byte stream, from the frame headers alone: whether it is in the middle
/// of the preface, of a frame or of a header block. A peer that stays "in the middle" too long is
/// trickling bytes (slowloris). Pure state, fed the same bytes as the session.
public struct HTTP2InputTracker: Sendable {
    private var prefaceLeft = 24
    private var frameHeader: [UInt8] = []
    private var payloadLeft = 0
    private var payloadType: UInt8 = 0
    /// A HEADERS or CONTINUATION frame without END_HEADERS was the last complete frame.
    public private(set) var inHeaderBlock = false

    public init() {}

    /// True while a preface, frame or header block has begun and not finished (or nothing came yet).
    public var isMidUnit: Bool { prefaceLeft > 0 || !frameHeader.isEmpty || payloadLeft > 0 || inHeaderBlock }

    /// Follows `bytes`, the next bytes from the peer.
    public mutating func consume(_ bytes: ByteBuffer) {
        var view = bytes.readableBytesView[...]
        while !view.isEmpty {
            if prefaceLeft > 0 {
                let take = min(prefaceLeft, view.count)
                prefaceLeft -= take
                view = view.dropFirst(take)
            } else if payloadLeft > 0 {
                let take = min(payloadLeft, view.count)
                payloadLeft -= take
                view = view.dropFirst(take)
            } else {
                let take = min(9 - frameHeader.count, view.count)
                frameHeader.append(contentsOf: view.prefix(take))
                view = view.dropFirst(take)
                guard frameHeader.count == 9 else { break }
                payloadLeft = Int(frameHeader[0]) << 16 | Int(frameHeader[1]) << 8 | Int(frameHeader[2])
                payloadType = frameHeader[3]
                let endHeaders = frameHeader[4] & 0x4 != 0
                // HEADERS (1) and PUSH_PROMISE (5) open a block, CONTINUATION (9) carries it on.
                if payloadType == 1 || payloadType == 5 || payloadType == 9 { inHeaderBlock = !endHeaders }
                frameHeader.removeAll(keepingCapacity: true)
            }
        }
    }
}
