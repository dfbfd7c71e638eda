//! `POST /assets` (from an uploaded image, or from a prompt and a model),
//! `GET /assets` (newest first, cursor pages, from the listing projection:
//! no document is loaded; the trash apart, `?trashed=true`) and
//! `GET /assets/{id}` (one document, read; an asset in the trash says when
//! it is purged).

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use core_sync::DocId;
use core_sync::model::{AssetDoc, BlobRef, MessageKind, MessageStatus, NewMessage, NewVersion};
use core_sync::now_millis;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{AssetDetail, AssetPage, AssetSummary, Created, Trash, Version};
use super::{Json, User, asset_doc, cost_csv, page_limit, query_pairs, single, validate};
use crate::error::ApiError;
use crate::images;
use crate::registry::Tool;
use crate::state::AppState;
use crate::storage::BlobKind;
use crate::storage::projection::{Listing, ListingCursor, ListingTrash};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_assets, create_asset))
        .routes(routes!(get_asset))
}

/// How to make a new asset.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "from")]
pub enum CreateAsset {
    /// From an image already uploaded with `PUT /v1/blobs/{sha256}`.
    #[serde(rename = "blob")]
    Blob(FromBlob),
    /// From a prompt: a new asset with a queued text-to-image request.
    #[serde(rename = "prompt")]
    Prompt(FromPrompt),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FromBlob {
    /// The uploaded image's SHA-256.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub title: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FromPrompt {
    #[schema(min_length = 1, max_length = 4000, pattern = "[^\\s\\u0085]")]
    pub prompt: String,
    /// A model that can generate (the default when absent); the document
    /// lists the active ones.
    pub model: Option<String>,
    pub aspect_ratio: Option<AspectRatio>,
    pub image_size: Option<ImageSize>,
    /// Defaults to the prompt's start.
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub title: Option<String>,
}

/// The output's aspect ratio.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub enum AspectRatio {
    #[serde(rename = "1:1")]
    Square,
    #[serde(rename = "2:3")]
    R2x3,
    #[serde(rename = "3:2")]
    R3x2,
    #[serde(rename = "3:4")]
    R3x4,
    #[serde(rename = "4:3")]
    R4x3,
    #[serde(rename = "4:5")]
    R4x5,
    #[serde(rename = "5:4")]
    R5x4,
    #[serde(rename = "9:16")]
    R9x16,
    #[serde(rename = "16:9")]
    R16x9,
    #[serde(rename = "21:9")]
    R21x9,
}

impl AspectRatio {
    pub fn as_str(self) -> &'static str {
        match self {
            AspectRatio::Square => "1:1",
            AspectRatio::R2x3 => "2:3",
            AspectRatio::R3x2 => "3:2",
            AspectRatio::R3x4 => "3:4",
            AspectRatio::R4x3 => "4:3",
            AspectRatio::R4x5 => "4:5",
            AspectRatio::R5x4 => "5:4",
            AspectRatio::R9x16 => "9:16",
            AspectRatio::R16x9 => "16:9",
            AspectRatio::R21x9 => "21:9",
        }
    }
}

/// The output's size class (Gemini 3 image models).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub enum ImageSize {
    #[serde(rename = "1K")]
    K1,
    #[serde(rename = "2K")]
    K2,
    #[serde(rename = "4K")]
    K4,
}

impl ImageSize {
    pub fn as_str(self) -> &'static str {
        match self {
            ImageSize::K1 => "1K",
            ImageSize::K2 => "2K",
            ImageSize::K4 => "4K",
        }
    }
}

/// Tool parameters as the document stores them.
pub fn params(
    aspect: Option<AspectRatio>,
    size: Option<ImageSize>,
    scale: Option<u8>,
) -> Option<serde_json::Value> {
    let mut p = serde_json::Map::new();
    if let Some(a) = aspect {
        p.insert("aspectRatio".into(), a.as_str().into());
    }
    if let Some(s) = size {
        p.insert("imageSize".into(), s.as_str().into());
    }
    if let Some(s) = scale {
        p.insert("scale".into(), s.into());
    }
    (!p.is_empty()).then_some(serde_json::Value::Object(p))
}

/// Creates an asset from an uploaded image or from a prompt.
#[utoipa::path(post, path = "/assets", tag = "assets",
    request_body = CreateAsset,
    responses(
        (status = 201, description = "Created; `Location` names it", body = Created,
            headers(("location" = String, description = "/assets/{id}"))),
        (status = 404, description = "No uploaded image with this SHA-256", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn create_asset(
    State(state): State<AppState>,
    User(user): User,
    Json(body): Json<CreateAsset>,
) -> Result<Response, ApiError> {
    let limits = &state.limits.config;
    let id = DocId::random();
    let now = now_millis();
    let created = match body {
        CreateAsset::Blob(b) => {
            if let Some(t) = &b.title {
                validate::title(t, limits)?;
            }
            crate::storage::validate_sha256(&b.sha256)
                .map_err(|e| ApiError::invalid("bad_sha256", e.to_string()))?;
            let bytes = state.blobs.get(&user, &b.sha256).await?.ok_or_else(|| {
                ApiError::Missing(format!(
                    "There is no uploaded image {}; upload it first with PUT /v1/blobs/{}.",
                    b.sha256, b.sha256
                ))
            })?;
            // The header's claims are checked before anything decodes it.
            let header = validate::image(&bytes, limits)?;
            let len = bytes.len() as u64;
            let (thumb, tw, th) = tokio::task::spawn_blocking(move || images::thumbnail(&bytes))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(|e| ApiError::invalid("bad_image", e.to_string()))?;
            let tsha = core_sync::blob::sha256_hex(&thumb);
            state
                .blobs
                .put_as(&user, &tsha, &thumb, BlobKind::Thumbnail)
                .await?;
            let mut doc = AssetDoc::create(b.title.as_deref().unwrap_or("Untitled"), now);
            doc.add_version(
                NewVersion {
                    blob: BlobRef {
                        sha256: b.sha256.clone(),
                        mime: header.mime.into(),
                        width: header.width,
                        height: header.height,
                        bytes: len,
                    },
                    thumbnail: Some(BlobRef {
                        sha256: tsha,
                        mime: "image/png".into(),
                        width: tw,
                        height: th,
                        bytes: thumb.len() as u64,
                    }),
                    parent_version_id: None,
                    created_by_message_id: None,
                },
                now,
            )
            .map_err(|e| ApiError::Internal(e.to_string()))?;
            asset_doc::create(&state, &user, &id, &mut doc).await?;
            Created {
                asset: detail(&id, &mut doc, state.trash_retention)?,
                message: None,
                operation: None,
            }
        }
        CreateAsset::Prompt(p) => {
            validate::prompt("prompt", &p.prompt, limits)?;
            if let Some(t) = &p.title {
                validate::title(t, limits)?;
            }
            let registry = validate::registry(&state)?;
            let model = validate::model(&registry, Tool::Generate, p.model.as_deref())?;
            let title = p.title.clone().unwrap_or_else(|| title_of(&p.prompt));
            let mut doc = AssetDoc::create(&title, now);
            let msg = doc
                .append_message(
                    NewMessage {
                        kind: Some(MessageKind::ToolRequest),
                        text: Some(p.prompt.clone()),
                        tool: Some(Tool::Generate.as_str().into()),
                        provider: Some(validate::provider(model)),
                        model: Some(model.id.clone()),
                        params: params(p.aspect_ratio, p.image_size, None),
                        input_version_ids: Vec::new(),
                        status: Some(MessageStatus::Queued),
                    },
                    now,
                )
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            // The write path starts the request's job (as for a device's push).
            asset_doc::create(&state, &user, &id, &mut doc).await?;
            let (message, operation) = asset_doc::report(&state, &user, &id, &msg).await?;
            Created {
                asset: asset_doc::read(&state, &user, &id, |d| {
                    detail(&id, d, state.trash_retention)
                })
                .await??,
                message: Some(message),
                operation,
            }
        }
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/assets/{id}"))],
        Json(created),
    )
        .into_response())
}

/// A title from a prompt: its first line, at most 60 characters.
fn title_of(prompt: &str) -> String {
    let line = prompt.trim().lines().next().unwrap_or("").trim();
    let mut t: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        t.push('…');
    }
    t
}

/// Parameters of `GET /assets` (for the document; parsed by hand so that
/// unknown ones are refused).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListParams {
    /// Items per page (1 to 100; default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page (of the same list: the trash's
    /// cursors page the trash).
    #[param(pattern = "^-?[0-9]{1,18}~[0-9a-f]{32}$")]
    cursor: Option<String>,
    /// `true` lists the trash instead: assets deleted and not yet purged,
    /// each with when it was deleted and when it will be purged.
    /// `false` (the default) leaves them out.
    trashed: Option<bool>,
}

/// Lists the user's assets, most recently changed first: those in the
/// trash are left out, unless `trashed=true` asks for the trash alone.
#[utoipa::path(get, path = "/assets", tag = "assets", params(ListParams),
    responses((status = 200, description = "One page of assets", body = AssetPage)),
    security(("bearer" = [])))]
async fn list_assets(
    State(state): State<AppState>,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<Json<AssetPage>, ApiError> {
    let pairs = query_pairs(query.as_deref(), &["limit", "cursor", "trashed"])?;
    let limit = page_limit(&pairs)?;
    let after = single(&pairs, "cursor")?.map(parse_cursor).transpose()?;
    let trashed = match single(&pairs, "trashed")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "bad_trashed",
                format!("trashed is {other:?}; use true or false"),
            ));
        }
    };
    // One more than asked tells whether another page follows.
    let mut rows: Vec<Listing> = state
        .store
        .projections()
        .list_assets(&user, trashed, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = more
        .then(|| rows.last().map(|l| format_cursor(&ListingCursor::from(l))))
        .flatten();
    Ok(Json(AssetPage {
        items: rows
            .into_iter()
            .map(|l| AssetSummary::from_listing(l, state.trash_retention))
            .collect(),
        next_cursor,
    }))
}

fn format_cursor(c: &ListingCursor) -> String {
    format!("{}~{}", c.updated_at, c.doc_id)
}

fn parse_cursor(s: &str) -> Result<ListingCursor, ApiError> {
    let bad = || {
        ApiError::invalid(
            "bad_cursor",
            "cursor is not one this server gave out; pass a page's nextCursor unchanged",
        )
    };
    let (t, d) = s.split_once('~').ok_or_else(bad)?;
    Ok(ListingCursor {
        updated_at: t.parse().map_err(|_| bad())?,
        doc_id: d.parse().map_err(|_| bad())?,
    })
}

/// One asset: its listing, versions and cost.
#[utoipa::path(get, path = "/assets/{id}", tag = "assets",
    params(super::AssetId),
    responses(
        (status = 200, description = "The asset", body = AssetDetail),
        (status = 404, description = "No such asset (or another user's)", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn get_asset(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<AssetDetail>, ApiError> {
    query_pairs(query.as_deref(), &[])?;
    let id = super::doc_id(&id)?;
    let detail = asset_doc::read(&state, &user, &id, |d| {
        detail(&id, d, state.trash_retention)
    })
    .await??;
    Ok(Json(detail))
}

/// The detail view of a loaded document (`retention`: the trash's, for
/// when an asset in it is purged).
pub fn detail(
    id: &DocId,
    doc: &mut AssetDoc,
    retention: std::time::Duration,
) -> Result<AssetDetail, ApiError> {
    let internal = |e: core_sync::model::ModelError| ApiError::Internal(format!("asset {id}: {e}"));
    let s = doc.summary().map_err(internal)?;
    let trash = s.deleted.as_ref().map(|d| {
        Trash::new(
            ListingTrash {
                deleted_at: d.at,
                retained_since: d.retained_since(),
            },
            retention,
        )
    });
    let versions = doc.versions().map_err(internal)?;
    let costs = doc.cost_events().map_err(internal)?;
    let nano: i128 = costs.iter().map(|e| i128::from(e.cost_nano_usd)).sum();
    Ok(AssetDetail {
        summary: AssetSummary {
            id: id.to_string(),
            title: s.title,
            cover: s.cover.map(Into::into),
            active_version_id: s.active_version_id,
            message_count: s.message_count,
            created_at: s.created_at,
            updated_at: s.updated_at,
            trash,
        },
        versions: versions.into_iter().map(Version::from).collect(),
        cost_usd: cost_csv::usd(nano),
        cost_events: costs.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let c = ListingCursor {
            updated_at: -12,
            doc_id: DocId::random(),
        };
        assert_eq!(parse_cursor(&format_cursor(&c)).unwrap(), c);
        for bad in [
            "",
            "12",
            "x~y",
            "12~ABC",
            "99999999999999999999~0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(parse_cursor(bad).unwrap_err().code(), "bad_cursor", "{bad}");
        }
    }

    #[test]
    fn titles_from_prompts_are_their_first_line_shortened() {
        assert_eq!(title_of("  A red shoe\non white"), "A red shoe");
        assert_eq!(title_of(&"x".repeat(61)).chars().count(), 61);
    }
}
