//! `GET /board`: the operator's web board, plain HTML, CSS and JavaScript compiled into the
//! binary (no build step, nothing from a CDN).
//!
//! The page itself holds nothing secret and needs no token; it asks the operator for one, keeps
//! it in the tab's sessionStorage and sends it as `Authorization: Bearer` to `/v1/admin/*`, which
//! is where the data is. A strict Content-Security-Policy allows scripts, styles and requests to
//! this origin only (no inline script, no `eval`, no form submissions, no framing), so even a
//! rendering mistake could not run injected script; and the script renders with `textContent`
//! only.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page.
const HTML: &str = include_str!("board/board.html");
/// Its script.
const JS: &str = include_str!("board/board.js");
/// Its styles.
const CSS: &str = include_str!("board/board.css");

/// The board's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The board's routes (public: the data behind them needs the token).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/board",
            get(|| async { asset(HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/board/board.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/board/board.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style_and_renders_no_html() {
        // The CSP forbids inline code; the page would silently break with any.
        assert!(
            !HTML.contains("<script>") && !HTML.contains("style="),
            "{HTML}"
        );
        for handler in ["onclick=", "onload=", "onsubmit=", "javascript:"] {
            assert!(!HTML.contains(handler), "inline handler {handler}");
        }
        // Attacker-controlled text reaches the page through textContent only.
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!JS.contains(sink), "board.js uses {sink}");
        }
        // The token input has no name: no form submission can carry it.
        assert!(HTML.contains(r#"<input id="token" type="password""#));
        assert!(!HTML.contains(r#"name="token""#));
    }
}
