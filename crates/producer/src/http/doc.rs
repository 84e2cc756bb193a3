//! `GET /openapi.json`: the API described as OpenAPI 3.1, generated from the handlers'
//! annotations and the wire types of [`crate::openapi`] (utoipa).

use axum::Json;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::openapi::{
    ErrorBody, HealthBody, NotifyRequest, OrderRequest, OrderView, SubmitReply, WebhookReply,
};

/// The bearer token scheme the `security` of each handler names.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "paywatch",
        description = "Watches payments at providers that must be polled, and tells the people who need to know. Orders submitted here go through the same Redis Function as every other door (docs/enqueue-from-any-language.md)."
    ),
    paths(
        super::orders::create_order,
        super::orders::get_order,
        crate::events::order_events,
        super::health::healthz,
        super::health::ready,
        crate::webhooks::cashless,
        crate::webhooks::handcash,
        crate::admin::http::queues,
        crate::admin::http::dead_letters,
        crate::admin::http::dead_letter,
        crate::admin::http::retry,
        crate::admin::http::purge,
        crate::admin::http::order,
        crate::admin::http::health,
        openapi_json,
    ),
    components(schemas(
        OrderRequest,
        NotifyRequest,
        SubmitReply,
        OrderView,
        ErrorBody,
        HealthBody,
        WebhookReply,
        crate::admin::model::QueuesReply,
        crate::admin::model::DeadLetterPage,
        crate::admin::model::DeadLetterDetail,
        crate::admin::model::ActionRequest,
        crate::admin::model::ActionReport,
        crate::admin::model::OrderReport,
        crate::admin::health::model::HealthReport,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
