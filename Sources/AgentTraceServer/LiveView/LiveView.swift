import Foundation
import NIOHTTP1

/// The live view in the browser (`GET /` on the admin port, docs/live-view.md): one page and its
/// hand-written script and style sheet under `/ui/`, compiled into the binary (`Resources/ui`, embedded
/// by SwiftPM), so `scripts/run`, an installed binary and the tests serve the same files with no
/// bundle to find at run time. Nothing third-party: no CDN, no library.
///
/// The page holds no collector data: its script reads the admin API's JSON routes with `fetch()`,
/// builds every element with `createElement`/`textContent` (never `innerHTML` with data), and the
/// answers forbid inline script (`content-security-policy`), so a span named `<img src=x onerror=…>`
/// is text.
enum LiveView {
    /// One file the view serves.
    struct Asset {
        var contentType: String
        var body: [UInt8]
    }

    /// The page's path.
    static let pagePath = "/"
    /// The prefix of the page's script and style sheet.
    static let assetPrefix = "/ui/"

    /// The files under `/ui/`, by name.
    static let assets: [String: Asset] = [
        "app.js": Asset(contentType: "text/javascript; charset=utf-8", body: PackageResources.app_js),
        "app.css": Asset(contentType: "text/css; charset=utf-8", body: PackageResources.app_css),
    ]

    /// Headers every answer of the view carries: scripts and styles from this origin only, no inline
    /// script, no framing, no sniffing, no referrer (a token in the page's address stays here).
    static let securityHeaders: HTTPHeaders = [
        "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-cache",
    ]

    /// Whether `path` is the view's (the page or a file under `/ui/`).
    static func serves(_ path: String) -> Bool {
        path == pagePath || path.hasPrefix(assetPrefix)
    }

    /// The page, its assets' addresses carrying `accessToken` (RFC 6750 §2.3's `access_token` query
    /// parameter) when the page was opened with one, or nil for an unknown file under `/ui/`.
    static func asset(_ path: String, accessToken: String?) -> Asset? {
        if path == pagePath {
            let query = accessToken.map { "?access_token=" + percentEncoded($0) } ?? ""
            let page = String(decoding: PackageResources.index_html, as: UTF8.self)
                .replacingOccurrences(of: "{{asset-query}}", with: query)
            return Asset(contentType: "text/html; charset=utf-8", body: Array(page.utf8))
        }
        guard path.hasPrefix(assetPrefix) else { return nil }
        return assets[String(path.dropFirst(assetPrefix.count))]
    }

    /// RFC 3986 unreserved characters kept, every other byte `%XX`: safe inside an HTML attribute and a URL.
    static func percentEncoded(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".unicodeScalars)
                out.unicodeScalars.append("%")
                out.unicodeScalars.append(hex[Int(byte >> 4)])
                out.unicodeScalars.append(hex[Int(byte & 15)])
            }
        }
        return out
    }
}
