import CProtobufC

/// Facts about the linked libprotobuf-c.
public enum ProtobufCLibrary {
    /// The version string of the libprotobuf-c linked at run time, such as `1.4.1`.
    public static var version: String {
        guard let text = protobuf_c_version() else { return "unknown" }
        return String(cString: text)
    }
}
