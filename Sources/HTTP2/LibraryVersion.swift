import CNghttp2

/// Facts about the linked libnghttp2.
public enum NGHTTP2Library {
    /// The version string of the libnghttp2 linked at run time, such as `1.52.0`.
    public static var version: String {
        guard let info = nghttp2_version(0), let text = info.pointee.version_str else { return "unknown" }
        return String(cString: text)
    }
}
