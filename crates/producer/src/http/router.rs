//! The API's routes: every handler, the credentials each needs, the body limit, the JSON 404 and
//! the panic belt. The top of the crate's HTTP layer: nothing below it imports it.

use axum::Router;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use super::reply::error;
use super::state::Api;
use super::{doc, health, orders};
use crate::Producer;
use crate::auth::ApiAuth;

/// The largest order body accepted; the submit function allows 64 KiB.
pub const MAX_BODY: usize = 64 * 1024;

/// The API's routes over a [`Producer`], provider webhooks included.
pub fn router(
    producer: Producer,
    handcash_app_secret: Option<paywatch_core::Secret>,
    auth: ApiAuth,
) -> Router {
    let webhooks = crate::webhooks::router(crate::webhooks::WebhookState {
        producer: producer.clone(),
        handcash_app_secret,
    });
    let admin = crate::admin::Admin::new(producer.clone());
    let api = Api {
        producer,
        auth,
        admin,
        streams: super::state::OpenStreams::default(),
    };
    let orders = Router::new()
        .route(
            "/v1/orders",
            post(orders::create_order).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)),
        )
        .route("/v1/orders/{order_id}", get(orders::get_order))
        .merge(crate::admin::http::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            api.auth.clone(),
            crate::auth::require_token,
        ));
    Router::new()
        .merge(orders)
        // Checks its own credentials: a token, or the order's signature for browsers.
        .route(
            "/v1/orders/{order_id}/events",
            get(crate::events::order_events),
        )
        .route("/healthz", get(health::healthz))
        .route("/openapi.json", get(doc::openapi_json))
        .route("/readyz", get(health::ready))
        .with_state(api)
        .merge(webhooks)
        // The page is public; everything it shows comes from /v1/admin/* with the token.
        .merge(crate::board::routes())
        .fallback(not_found)
        // A belt, not the fix: no handler should panic, but if one does the client still gets
        // JSON, the panic is counted, and the connection is not simply dropped.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
}

/// Any path no route serves (`GET /v1`, a typo): a JSON 404 like every other refusal.
async fn not_found(uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
        None,
    )
}

/// What a request whose handler panicked gets: a JSON 500, counted and logged (the panic's own
/// message is logged, never sent: it may quote data).
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    tracing::error!(panic = message, "an API handler panicked");
    ::metrics::counter!(crate::metrics::HANDLER_PANICS_TOTAL).increment(1);
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// One plain HTTP/1.1 GET over a socket: the raw answer.
    async fn get_raw(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        answer
    }

    async fn boom() -> Response {
        panic!("a panic quoting data: s3cret")
    }

    /// Counts `paywatch_producer_handler_panics_total`; every other metric goes nowhere.
    #[derive(Debug, Default)]
    struct PanicCount(std::sync::atomic::AtomicU64);

    impl ::metrics::CounterFn for PanicCount {
        fn increment(&self, value: u64) {
            self.0
                .fetch_add(value, std::sync::atomic::Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[derive(Debug)]
    struct Recorder(std::sync::Arc<PanicCount>);

    impl ::metrics::Recorder for Recorder {
        fn describe_counter(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: ::metrics::KeyName,
            _: Option<::metrics::Unit>,
            _: ::metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Counter {
            if key.name() == crate::metrics::HANDLER_PANICS_TOTAL {
                ::metrics::Counter::from_arc(self.0.clone())
            } else {
                ::metrics::Counter::noop()
            }
        }
        fn register_gauge(
            &self,
            _: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Gauge {
            ::metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            _: &::metrics::Key,
            _: &::metrics::Metadata<'_>,
        ) -> ::metrics::Histogram {
            ::metrics::Histogram::noop()
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_and_an_unknown_path_answer_json() {
        // The one test of this crate that installs a recorder: the process's, for the server task.
        let panics = std::sync::Arc::new(PanicCount::default());
        ::metrics::set_global_recorder(Recorder(panics.clone())).expect("the only recorder");
        let app = Router::new()
            .route("/boom", get(boom))
            .fallback(not_found)
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        for (path, status, body) in [
            ("/boom", "500", r#"{"error":"internal error"}"#),
            ("/v1", "404", r#"{"error":"no such endpoint: /v1"}"#),
        ] {
            let answer = get_raw(addr, path).await;
            assert!(
                answer.starts_with(&format!("HTTP/1.1 {status}")),
                "{answer}"
            );
            assert!(
                answer.contains("content-type: application/json"),
                "{answer}"
            );
            assert!(answer.ends_with(body), "{answer}");
            assert!(!answer.contains("s3cret"), "{answer}");
        }
        assert_eq!(
            panics.0.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "the panic is counted, the 404 is not"
        );
    }
}
