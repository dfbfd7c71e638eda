//! The REST API: one module per resource, each with its own `router()`,
//! merged here. Handlers are thin: they authenticate ([`User`]), validate
//! ([`validate`]), and read the projections or read and write the asset
//! document through the one write path (`crate::write::DocWriter`) with the
//! model's typed writes; they never touch a backend directly.
//!
//! - [`assets`]: `POST /assets`, `GET /assets`, `GET /assets/{id}`.
//! - [`messages`]: `GET` and `POST /assets/{id}/messages`.
//! - [`costs`]: `GET /costs` and `GET /costs.csv` (rows by [`cost_csv`]).
//! - [`openapi`]: the OpenAPI 3.1 document of the whole surface, served
//!   at `GET /openapi.json`; `GET /metrics`.
//! - [`observe`]: request logs (request id, user, route, status, latency)
//!   and metrics for every route.
//!
//! Every route is registered through `utoipa_axum`'s `routes!`, which takes
//! the path and method from the handler's `#[utoipa::path]`: the router and
//! the document are built from the same declaration.

pub mod asset_doc;
pub mod assets;
pub mod cost_csv;
pub mod costs;
pub mod messages;
pub mod observe;
pub mod openapi;
pub mod validate;
pub mod views;

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::state::AppState;

/// The REST resources' routes and their part of the document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(assets::router())
        .merge(messages::router())
        .merge(costs::router())
        .merge(openapi::router())
}

/// The authenticated user (the token's `sub`), after the per-user rate
/// limit: the first extractor of every authenticated handler.
pub struct User(pub String);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.user(&parts.headers).await.map(User)
    }
}

/// `axum::Json` whose rejections are problems (unknown fields named).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

/// The `{id}` of an asset's routes (for the document; see [`doc_id`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AssetId {
    /// The asset's id.
    #[param(pattern = "^[0-9a-f]{32}$")]
    id: String,
}

/// A path segment naming a document: 32 lowercase hex characters.
pub fn doc_id(id: &str) -> Result<core_sync::DocId, ApiError> {
    id.parse().map_err(|_| {
        ApiError::invalid(
            "bad_id",
            format!(
                "{:?} is not an asset id (32 lowercase hex characters)",
                id.chars().take(80).collect::<String>()
            ),
        )
    })
}

/// Query parameters as name/value pairs, refusing names not in `known`
/// (so a typo is an error, not a silently ignored filter).
pub fn query_pairs(query: Option<&str>, known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs: Vec<(String, String)> = match query {
        None | Some("") => Vec::new(),
        Some(q) => serde_urlencoded_pairs(q)?,
    };
    if let Some((name, _)) = pairs.iter().find(|(n, _)| !known.contains(&n.as_str())) {
        return Err(ApiError::invalid(
            "unknown_parameter",
            format!(
                "unknown query parameter {:?}; this route takes {}",
                name.chars().take(80).collect::<String>(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    Ok(pairs)
}

fn serde_urlencoded_pairs(q: &str) -> Result<Vec<(String, String)>, ApiError> {
    let query: axum::extract::Query<Vec<(String, String)>> = axum::extract::Query::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| ApiError::BadRequest("the query string is not valid".into()))?,
    )?;
    Ok(query.0)
}

/// The one value of parameter `name`, refusing it given twice.
pub fn single<'a>(pairs: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = pairs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::invalid(
            "repeated_parameter",
            format!("query parameter {name} is given more than once"),
        ));
    }
    Ok(first)
}

/// Page size: `limit` in `1..=MAX_PAGE`, [`DEFAULT_PAGE`] when absent.
pub fn page_limit(pairs: &[(String, String)]) -> Result<usize, ApiError> {
    match single(pairs, "limit")? {
        None => Ok(DEFAULT_PAGE),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "bad_limit",
                format!("limit must be a whole number from 1 to {MAX_PAGE}, not {v:?}"),
            )),
        },
    }
}

/// Items per page unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 50;
/// Most items per page.
pub const MAX_PAGE: usize = 100;
