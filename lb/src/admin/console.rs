//! The operator console: one page (`GET /`), its script and its style, built into the binary
//! (no CDN, no build step), and the headers that keep it, and the rest of the admin API, safe
//! in a browser.
//!
//! The page reads what scripts read: `/status`, `/peers` and `/events`; its actions are the
//! API's mutations, sent with the bearer token the operator types once per tab (kept in the
//! tab's session storage, never in a cookie or a URL). Without a token it is read-only.

use hyper::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderMap, HeaderValue, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};

use super::{Reply, typed};

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const STYLE: &str = include_str!("console/console.css");

/// Only this origin's script, style and requests; no inline script or style, no eval, no
/// frames, no plugins, no forms posted anywhere.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The console's files: path → (body, content type).
pub(super) fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some((PAGE, "text/html; charset=utf-8")),
        "/console.js" => Some((SCRIPT, "text/javascript; charset=utf-8")),
        "/console.css" => Some((STYLE, "text/css; charset=utf-8")),
        _ => None,
    }
}

/// Answers a console file (`path` is one [`asset`] knows).
pub(super) fn serve(path: &str) -> Reply {
    let (body, content_type) = asset(path).unwrap_or(("", "text/plain; charset=utf-8"));
    typed(body, content_type)
}

/// Adds the safety headers to an answer of the admin listener.
pub(super) fn secure(headers: &mut HeaderMap) {
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page may hold no inline script or style (the policy would block it): its script
    /// and style come from files of this origin.
    #[test]
    fn the_page_has_no_inline_script_or_style_and_names_its_files() {
        let page = PAGE.to_ascii_lowercase();
        assert!(page.contains("<script src=\"/console.js\""), "script file");
        assert!(page.contains("href=\"/console.css\""), "style file");
        assert_eq!(page.matches("<script").count(), 1);
        assert!(!page.contains("<style"), "no style element");
        assert!(!page.contains(" style="), "no style attribute");
        // No inline handler (onclick=…): an attribute whose name starts with "on".
        let handler = page.match_indices(" on").any(|(at, _)| {
            let rest = &page[at + 3..];
            let name = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            name.len() < rest.len() && name.starts_with('=')
        });
        assert!(!handler, "no inline event handler");
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no third party"
        );
        for file in [SCRIPT, STYLE] {
            assert!(!file.contains("http://") && !file.contains("https://"));
        }
        for banned in [
            "eval(",
            "new Function",
            "innerHTML",
            "document.write",
            "localStorage",
        ] {
            assert!(!SCRIPT.contains(banned), "{banned}");
        }
    }

    #[test]
    fn the_policy_allows_this_origin_only_and_no_framing() {
        let mut headers = HeaderMap::new();
        secure(&mut headers);
        let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"));
        assert!(!csp.contains("unsafe"), "no unsafe-inline, no unsafe-eval");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(headers[X_FRAME_OPTIONS], "DENY");
        assert_eq!(asset("/").unwrap().1, "text/html; charset=utf-8");
        assert_eq!(asset("/nope"), None);
    }
}
