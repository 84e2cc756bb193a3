//! What the API's handlers share: [`Api`], the router's state.

use crate::Producer;
use crate::auth::ApiAuth;

/// What the API's handlers share.
#[derive(Debug, Clone)]
pub struct Api {
    /// Orders.
    pub producer: Producer,
    /// Credentials.
    pub auth: ApiAuth,
    /// The operator's view (`/v1/admin/*`).
    pub admin: crate::admin::Admin,
    /// The events streams open per order.
    pub streams: crate::events::OpenStreams,
}
