//! The OpenAPI 3.1 document of the whole HTTP surface, generated from the
//! code: every route is registered with `utoipa_axum::routes!` from its
//! handler's `#[utoipa::path]`, so the router and the document come from
//! one declaration ([`document`]). Served at `GET /openapi.json`; a copy is
//! committed as `cloud-lambda/openapi.json` (a test keeps it equal), which
//! the infrastructure reads to give every route an API Gateway route.
//!
//! Two things are added to what the attributes say: the error responses
//! every operation can give (problem details: 400, 408, 413, 415, 500, 503,
//! and 401 and 429 where a token is required), and the model ids each tool
//! takes, from the model registry (active models only: a retired one is
//! refused, naming its replacement).
//!
//! Also here: `GET /metrics` (Prometheus text, see `crate::metrics`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::validate;
use crate::error::ApiError;
use crate::registry::{Registry, Tool};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(metrics))
}

/// The request body of `POST /v1/sync` (`core_sync::sync::protocol`).
#[derive(ToSchema, serde::Serialize)]
#[schema(as = SyncRequest)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncRequestDoc {
    /// Everything in the user's feed up to here is applied.
    #[schema(minimum = 0)]
    feed_cursor: u64,
    /// Each document's changes; at most 500 documents with `resync`.
    #[serde(default)]
    #[schema(max_items = 500)]
    push: Vec<DocPushDoc>,
    /// Documents to send in full; at most 500 with `push`.
    #[serde(default)]
    #[schema(max_items = 500)]
    resync: Vec<DocIdDoc>,
    /// Long poll: hold an idle request up to this long.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 25000)]
    wait_ms: u64,
    /// The server epoch the cursor and the client's server heads belong
    /// to (0 or absent: none yet).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 9007199254740991_u64)]
    epoch: u64,
}

/// A document id: 32 lowercase hex characters.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = DocId, pattern = "^[0-9a-f]{32}$")]
#[allow(dead_code)]
pub struct DocIdDoc(String);

/// One document's changes the server lacks.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = DocPush)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocPushDoc {
    doc_id: DocIdDoc,
    /// Concatenated raw Automerge changes, base64.
    #[schema(content_encoding = "base64")]
    changes: String,
}

/// The response of `POST /v1/sync`.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = SyncResponse)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct SyncResponseDoc {
    feed_cursor: u64,
    docs: Vec<DocUpdateDoc>,
    pushed: Vec<PushOutcomeDoc>,
    more: bool,
    /// The user's epoch: the lineage of the data the cursor walks.
    #[schema(minimum = 1, maximum = 9007199254740991_u64)]
    epoch: u64,
    /// The data does not continue what the request's cursor describes
    /// (another epoch, or restored from an older copy): nothing else is
    /// in the answer; push everything again and pull from cursor 0 in
    /// `epoch`.
    #[serde(default)]
    start_over: bool,
}

#[derive(ToSchema, serde::Serialize)]
#[schema(as = DocUpdate)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct DocUpdateDoc {
    doc_id: DocIdDoc,
    /// Base64 Automerge chunks, in order.
    chunks: Vec<String>,
    /// Hex change hashes.
    server_heads: Vec<String>,
}

#[derive(ToSchema, serde::Serialize)]
#[schema(as = PushOutcome)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct PushOutcomeDoc {
    doc_id: DocIdDoc,
    status: PushStatusDoc,
    server_heads: Vec<String>,
}

#[derive(ToSchema, serde::Serialize)]
#[schema(as = PushStatus)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub enum PushStatusDoc {
    Accepted,
    MissingDeps,
}

/// The request body of `POST /upload-url` (`core_sync::sync::protocol`).
#[derive(ToSchema, serde::Serialize)]
#[schema(as = UploadUrlRequest)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UploadUrlRequestDoc {
    /// SHA-256 of the bytes to upload.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
    /// Their size: 1 to 67,108,864.
    #[schema(minimum = 1, maximum = 67108864)]
    bytes: u64,
    #[schema(pattern = "^image/(png|jpeg|webp)$")]
    content_type: String,
}

/// A short-lived URL for one image's bytes: make the request it describes,
/// with exactly its headers and no bearer token.
#[derive(ToSchema, serde::Serialize)]
#[schema(as = TransferUrl)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct TransferUrlDoc {
    /// Absolute, or a path on this server.
    url: String,
    /// `PUT` or `GET`.
    method: String,
    /// Headers the request must carry exactly, by lowercase name.
    headers: std::collections::BTreeMap<String, String>,
    /// Seconds since the Unix epoch.
    expires_at: u64,
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_json(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let registry = validate::registry(&state)?;
    Ok(axum::Json(document((*state.openapi).clone(), &registry)))
}

/// Counters since start (Prometheus text format).
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text exposition format", body = String,
        content_type = "text/plain")))]
async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::global().prometheus(),
    )
}

/// The document of the whole surface — `api`, as the Router's routes
/// describe themselves (`crate::app::openapi_router`) — with `registry`'s
/// models.
pub fn document(mut api: utoipa::openapi::OpenApi, registry: &Registry) -> Value {
    api.info.title = "Atelier cloud".into();
    api.info.version = env!("CARGO_PKG_VERSION").into();
    api.info.description = Some(
        "Atelier's HTTP API: the sync endpoint devices use, and the REST resources \
         (assets, their timelines, costs) over the same asset documents. Bearer JWTs \
         (Cognito access tokens; `atelier-cloud dev-token` on the embedded server). \
         Errors are RFC 9457 problem details with a stable `code`."
            .into(),
    );
    api.info.license = None;
    api.info.contact = None;
    let mut doc = serde_json::to_value(&api).expect("an OpenAPI document serialises");
    let components = doc["components"].as_object_mut().expect("components");
    components.insert(
        "securitySchemes".into(),
        json!({"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}),
    );
    let problem = serde_json::to_value(<crate::error::Problem as utoipa::PartialSchema>::schema())
        .expect("schema serialises");
    components["schemas"]
        .as_object_mut()
        .expect("schemas")
        .insert("Problem".into(), problem);
    // The sync protocol's counters are u64: any whole number up to 2^64 - 1
    // (utoipa's `int64` format would cap them at 2^63 - 1).
    for field in ["feedCursor", "waitMs"] {
        let prop = &mut doc["components"]["schemas"]["SyncRequest"]["properties"][field];
        if let Some(p) = prop.as_object_mut() {
            p.remove("format");
            if field == "feedCursor" {
                p.insert("maximum".into(), json!(u64::MAX));
            }
        }
    }
    add_errors(&mut doc);
    add_models(&mut doc, registry);
    // After the models: the variants take copies of their structs.
    for tagged in ["CreateAsset", "PostMessage"] {
        flatten_tagged(&mut doc, tagged);
    }
    doc
}

/// Makes each variant of the internally tagged enum `name` one closed
/// object: its struct's properties plus the tag. (As utoipa writes it, an
/// `allOf` of the closed struct and the tag, no object could match: the
/// struct's `additionalProperties: false` refuses the tag.)
fn flatten_tagged(doc: &mut Value, name: &str) {
    let schemas = doc["components"]["schemas"].clone();
    let Some(variants) = doc["components"]["schemas"][name]["oneOf"].as_array_mut() else {
        return;
    };
    for variant in variants {
        let Some(parts) = variant["allOf"].as_array() else {
            continue;
        };
        let mut merged = json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false});
        if let Some(d) = variant.get("description") {
            merged["description"] = d.clone();
        }
        for part in parts {
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
                None => part,
            };
            if let Some(props) = part["properties"].as_object() {
                for (k, v) in props {
                    merged["properties"][k] = v.clone();
                }
            }
            if let Some(req) = part["required"].as_array() {
                merged["required"]
                    .as_array_mut()
                    .expect("required")
                    .extend(req.iter().cloned());
            }
        }
        *variant = merged;
    }
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// The errors any operation can answer, as problems.
fn add_errors(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut() {
            let secured = op.get("security").is_some();
            let responses = op["responses"].as_object_mut().expect("responses");
            let mut add = |status: &str, what: &str| {
                responses.entry(status).or_insert_with(|| problem(what));
            };
            add(
                "400",
                "The request is malformed or refused; `code` and `detail` say why",
            );
            add("408", "The request took too long");
            add("413", "The body is too large");
            add(
                "415",
                "Unsupported Content-Type or Content-Encoding, or not an image",
            );
            add("500", "The server failed; retry");
            add(
                "503",
                "Busy or unavailable; retry after `Retry-After` seconds",
            );
            if secured {
                add("401", "No valid bearer token");
                add(
                    "429",
                    "Over the per-user request rate; retry after `Retry-After` seconds",
                );
            }
        }
    }
}

/// Each tool's `model` property takes the active models that can do it.
fn add_models(doc: &mut Value, registry: &Registry) {
    for (schema, tool) in [
        ("FromPrompt", Tool::Generate),
        ("GenerateRequest", Tool::Generate),
        ("EditRequest", Tool::Edit),
        ("RemoveBackgroundRequest", Tool::RemoveBackground),
        ("UpscaleRequest", Tool::Upscale),
    ] {
        let Some(model) = doc["components"]["schemas"][schema]["properties"].get_mut("model")
        else {
            continue;
        };
        let mut ids: Vec<Value> = validate::active(registry, tool)
            .into_iter()
            .map(Value::from)
            .collect();
        ids.push(Value::Null);
        *model = json!({
            "type": ["string", "null"],
            "enum": ids,
            "description": format!("A model that can {} (default: the first).", tool.as_str()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::ApiConfig;
    use crate::registry::BUILTIN;

    /// Every `pattern` in `v` with where it is; a parameter is named by its
    /// `name` (`…/parameters/model/schema/items`), not its index.
    fn patterns<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a str)>) {
        match v {
            Value::Object(o) => {
                if let Some(p) = o.get("pattern").and_then(Value::as_str) {
                    out.push((path.to_owned(), p));
                }
                for (k, child) in o {
                    patterns(child, &format!("{path}/{k}"), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let key = child["name"].as_str().map_or(i.to_string(), str::to_owned);
                    patterns(child, &format!("{path}/{key}"), out);
                }
            }
            _ => {}
        }
    }

    fn percent_encoded(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    /// The server's verdict on free text, by where the document puts it.
    fn server_check(path: &str) -> Option<fn(&str) -> bool> {
        if path.ends_with("/properties/prompt") || path.ends_with("/properties/text") {
            Some(|s| validate::prompt("text", s, &ApiConfig::default()).is_ok())
        } else if path.ends_with("/properties/title") {
            Some(|s| validate::title(s, &ApiConfig::default()).is_ok())
        } else if path.ends_with("/parameters/model/schema/items") {
            Some(|s| {
                let query = format!("model={}", percent_encoded(s));
                crate::api::costs::parse_range(Some(&query)).is_ok()
            })
        } else {
            None
        }
    }

    /// The document's patterns are ECMA-262 regexes (JSON Schema's
    /// dialect), read so by clients and by Schemathesis, and ECMAScript's
    /// `\s` is not Rust's (it lacks NEL, U+0085, and has the byte-order
    /// mark). Each free-text pattern must give the server's verdict on
    /// every character alone; since both judge a text by its characters
    /// (not blank if any one is not; a clean title if every one is), that
    /// makes them agree on whole texts too, and a few lists check the
    /// model filter's commas.
    #[test]
    fn free_text_patterns_accept_exactly_what_the_server_accepts() {
        let registry = Registry::parse(BUILTIN).unwrap();
        let doc = crate::app::openapi_document(&registry);
        let mut found = Vec::new();
        patterns(&doc, "", &mut found);
        let fields: Vec<_> = found
            .iter()
            .filter_map(|(path, p)| server_check(path).map(|check| (path, *p, check)))
            .collect();
        for kind in ["prompt", "text", "title", "parameters/model"] {
            assert!(
                fields.iter().any(|(path, ..)| path.contains(kind)),
                "no {kind} pattern in the document: {found:?}"
            );
        }
        let chars = (0..=0xFFFF)
            .chain([0x1_F600, 0x10_FFFF])
            .filter_map(char::from_u32);
        let texts: Vec<String> = chars
            .map(String::from)
            .chain(
                [
                    "a,b",
                    " a , b ",
                    "a,,b",
                    "a,",
                    ",a",
                    "\u{85}a\u{85}",
                    "a,\u{85}",
                    "a, \u{3000}b",
                ]
                .map(str::to_owned),
            )
            .collect();
        for (path, pattern, check) in fields {
            let re = regress::Regex::with_flags(pattern, "u").unwrap();
            let disagree: Vec<String> = texts
                .iter()
                .filter(|t| re.find(t).is_some() != check(t))
                .take(5)
                .map(|t| format!("{t:?} (document: {})", re.find(t).is_some()))
                .collect();
            assert!(
                disagree.is_empty(),
                "{path}: {pattern:?} and the server disagree on {disagree:?}"
            );
        }
    }
}
