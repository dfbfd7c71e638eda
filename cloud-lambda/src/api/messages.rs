//! `GET /assets/{id}/messages` (the timeline, newest page first) and
//! `POST /assets/{id}/messages` (a note, or a tool request: one change in
//! the asset document through the server's one write path, whose job starts as a
//! synced request's does; devices see both through sync).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use core_sync::model::{MessageKind, MessageStatus, NewMessage};
use core_sync::now_millis;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::assets::{AspectRatio, ImageSize, params};
use super::views::{Message, MessagePage, Posted};
use super::{Json, User, asset_doc, page_limit, query_pairs, single, validate};
use crate::error::ApiError;
use crate::registry::Tool;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_messages, post_message))
}

/// A note, or a request for a tool to run on the asset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type")]
pub enum PostMessage {
    #[serde(rename = "note")]
    Note(NoteRequest),
    #[serde(rename = "edit")]
    Edit(EditRequest),
    #[serde(rename = "generate")]
    Generate(GenerateRequest),
    #[serde(rename = "remove-background")]
    RemoveBackground(RemoveBackgroundRequest),
    #[serde(rename = "upscale")]
    Upscale(UpscaleRequest),
}

/// A note in the timeline.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    #[schema(min_length = 1, max_length = 4000, pattern = "[^\\s\\u0085]")]
    pub text: String,
}

/// Edit an image with a prompt (the active version unless `inputVersionId`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EditRequest {
    #[schema(min_length = 1, max_length = 4000, pattern = "[^\\s\\u0085]")]
    pub prompt: String,
    pub model: Option<String>,
    pub aspect_ratio: Option<AspectRatio>,
    pub image_size: Option<ImageSize>,
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub input_version_id: Option<String>,
}

/// Generate a new image from a prompt (a new version of this asset).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerateRequest {
    #[schema(min_length = 1, max_length = 4000, pattern = "[^\\s\\u0085]")]
    pub prompt: String,
    pub model: Option<String>,
    pub aspect_ratio: Option<AspectRatio>,
    pub image_size: Option<ImageSize>,
}

/// Remove the background of an image.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RemoveBackgroundRequest {
    pub model: Option<String>,
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub input_version_id: Option<String>,
}

/// Upscale an image.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpscaleRequest {
    pub model: Option<String>,
    /// 2 to 4 (default 4).
    #[schema(value_type = Option<i32>, minimum = 2, maximum = 4)]
    pub scale: Option<f64>,
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub input_version_id: Option<String>,
}

/// The parts of a tool request, whatever the tool.
struct ToolAsk {
    tool: Tool,
    prompt: Option<String>,
    model: Option<String>,
    params: Option<serde_json::Value>,
    input: Option<String>,
}

impl PostMessage {
    fn tool(self) -> Result<ToolAsk, String> {
        Ok(match self {
            PostMessage::Note(n) => return Err(n.text),
            PostMessage::Edit(r) => ToolAsk {
                tool: Tool::Edit,
                prompt: Some(r.prompt),
                model: r.model,
                params: params(r.aspect_ratio, r.image_size, None),
                input: r.input_version_id,
            },
            PostMessage::Generate(r) => ToolAsk {
                tool: Tool::Generate,
                prompt: Some(r.prompt),
                model: r.model,
                params: params(r.aspect_ratio, r.image_size, None),
                input: None,
            },
            PostMessage::RemoveBackground(r) => ToolAsk {
                tool: Tool::RemoveBackground,
                prompt: None,
                model: r.model,
                params: None,
                input: r.input_version_id,
            },
            PostMessage::Upscale(r) => ToolAsk {
                tool: Tool::Upscale,
                prompt: None,
                model: r.model,
                params: params(None, None, r.scale.map(|s| s as u8)),
                input: r.input_version_id,
            },
        })
    }
}

/// Adds a note or a tool request to the asset's timeline; a tool request's
/// job starts at once (exactly once, under the spend limits).
#[utoipa::path(post, path = "/assets/{id}/messages", tag = "messages",
    params(super::AssetId),
    request_body = PostMessage,
    responses(
        (status = 202, description = "Written; a tool request's job has started (or was refused: then the message has failed with the reason)", body = Posted),
        (status = 404, description = "No such asset (or another user's)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "The asset has no image for this tool, or no such version", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn post_message(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    Json(body): Json<PostMessage>,
) -> Result<(StatusCode, Json<Posted>), ApiError> {
    query_pairs(query.as_deref(), &[])?;
    let id = super::doc_id(&id)?;
    let limits = &state.limits.config;
    if let PostMessage::Upscale(UpscaleRequest { scale: Some(s), .. }) = &body
        && !(*s == s.trunc() && (2.0..=4.0).contains(s))
    {
        return Err(ApiError::invalid(
            "bad_parameter",
            "scale must be 2, 3 or 4",
        ));
    }
    let message = match body.tool() {
        Err(note) => {
            validate::prompt("text", &note, limits)?;
            NewMessage::user(note)
        }
        Ok(ask) => {
            if let Some(p) = &ask.prompt {
                validate::prompt("prompt", p, limits)?;
            }
            let registry = validate::registry(&state)?;
            let model = validate::model(&registry, ask.tool, ask.model.as_deref())?;
            if ask.tool.needs_input() {
                check_input(&state, &user, &id, ask.input.as_deref()).await?;
            }
            NewMessage {
                kind: Some(MessageKind::ToolRequest),
                text: ask.prompt,
                tool: Some(ask.tool.as_str().into()),
                provider: Some(validate::provider(model)),
                model: Some(model.id.clone()),
                params: ask.params,
                input_version_ids: ask.input.into_iter().collect(),
                status: Some(MessageStatus::Queued),
            }
        }
    };
    // A queued tool request gets its operation inside the write path, as a
    // synced one does; the report reads both as they stand after it.
    let msg_id = asset_doc::write(&state, &user, &id, move |d| {
        d.append_message(message.clone(), now_millis())
    })
    .await?;
    let (message, operation) = asset_doc::report(&state, &user, &id, &msg_id).await?;
    Ok((StatusCode::ACCEPTED, Json(Posted { message, operation })))
}

/// A tool that works on an image needs one: the version named, or the
/// active one. Refused (409) before anything is written.
async fn check_input(
    state: &AppState,
    user: &str,
    id: &core_sync::DocId,
    version: Option<&str>,
) -> Result<(), ApiError> {
    let found = asset_doc::read(state, user, id, |d| {
        let reader = d.reader();
        match version {
            Some(v) => reader.version(v).ok().flatten().is_some(),
            None => reader
                .summary()
                .ok()
                .and_then(|s| s.active_version_id)
                .is_some(),
        }
    })
    .await?;
    let conflict = |code, detail: String| ApiError::Conflict { code, detail };
    match (found, version) {
        (true, _) => Ok(()),
        (false, Some(v)) => Err(conflict(
            "unknown_version",
            format!("asset {id} has no version {v}; GET /assets/{id} lists its versions"),
        )),
        (false, None) => Err(conflict(
            "no_image",
            format!(
                "asset {id} has no image yet for this tool to work on; add one or generate one first"
            ),
        )),
    }
}

/// Parameters of `GET /assets/{id}/messages`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListParams {
    /// Items per page (1 to 100; default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page (a page of older messages).
    #[param(pattern = "^[0-9]{1,9}$")]
    cursor: Option<String>,
}

/// The asset's timeline, newest page first.
#[utoipa::path(get, path = "/assets/{id}/messages", tag = "messages",
    params(super::AssetId, ListParams),
    responses(
        (status = 200, description = "One page of the timeline", body = MessagePage),
        (status = 404, description = "No such asset (or another user's)", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn list_messages(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<MessagePage>, ApiError> {
    let pairs = query_pairs(query.as_deref(), &["limit", "cursor"])?;
    let id = super::doc_id(&id)?;
    let limit = page_limit(&pairs)?;
    let before = match single(&pairs, "cursor")? {
        None => None,
        Some(c) => Some(c.parse::<usize>().ok().filter(|_| c.len() <= 9).ok_or_else(|| {
            ApiError::invalid(
                "bad_cursor",
                "cursor is not one this server gave out; pass a page's nextCursor unchanged",
            )
        })?),
    };
    let internal = |e: core_sync::model::ModelError| ApiError::Internal(format!("asset {id}: {e}"));
    let (items, start) = asset_doc::read(&state, &user, &id, |d| {
        let reader = d.reader();
        let n = reader.message_count().map_err(internal)? as usize;
        let end = before.map_or(n, |b| b.min(n));
        let start = end.saturating_sub(limit);
        let items: Vec<Message> = reader
            .timeline_range(start..end)
            .map_err(internal)?
            .into_iter()
            .map(Message::from)
            .collect();
        Ok::<_, ApiError>((items, start))
    })
    .await??;
    Ok(Json(MessagePage {
        items,
        next_cursor: (start > 0).then(|| start.to_string()),
    }))
}
