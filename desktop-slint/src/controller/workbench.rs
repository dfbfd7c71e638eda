//! The assets and the open asset as the user works on them: the list and
//! search, opening (newest page first), edits saved before they are shown
//! (send, roll back, retry, cancel), images arriving as new assets or
//! versions, the composer's choices, and where an image key is shown. The
//! controller owns one and routes events to it; this file knows nothing of
//! the controller, dialogs or the dashboard.

use std::sync::Arc;

use cloud_lambda::registry::Tool;
use core_sync::ids::DocId;
use core_sync::model::{AssetDoc, MessageKind, MessageStatus, MessageUpdate, NewMessage};
use core_sync::now_millis;
use core_sync::store::LocalAsset;

use super::assets::AssetList;
use super::error::{ControllerError, Result};
use super::imports::{self, IncomingImage};
use super::ports::{AssetStore, SyncLink};
use super::protocol::{RowRefs, Screen, View, ViewUpdate};
use super::timeline::{Env, OpenAsset};
use crate::format;
use crate::tools::{ComposerVm, Draft, Tools};
use crate::viewmodel::{self, IncomingVm};

pub struct Workbench {
    pub store: Arc<dyn AssetStore>,
    pub tools: Tools,
    pub(super) view: Arc<dyn View>,
    pub link: Option<Arc<dyn SyncLink>>,
    pub assets: AssetList,
    pub open: Option<OpenAsset>,
    pub tool: Tool,
    pub model_index: usize,
    /// Images waiting for the user's word on what they become.
    incoming: Vec<IncomingImage>,
    pub compare: Option<viewmodel::CompareVm>,
    /// An asset opened since [`Self::take_opened`] (the asset view shows).
    opened: bool,
    /// The documents of assets open lately, newest first: opening one again
    /// applies what changed since instead of loading it whole.
    recent: Vec<LocalAsset>,
    /// The trash sheet and the Undo bar.
    pub trash: crate::trash::TrashState,
}

/// Documents kept of assets open lately.
const RECENT: usize = 3;

impl Workbench {
    pub fn new(store: Arc<dyn AssetStore>, tools: Tools, view: Arc<dyn View>) -> Workbench {
        Workbench {
            store,
            tools,
            view,
            link: None,
            assets: AssetList::default(),
            open: None,
            tool: Tool::Edit,
            model_index: 0,
            incoming: Vec::new(),
            compare: None,
            opened: false,
            recent: Vec::new(),
            trash: Default::default(),
        }
    }

    /// Whether an asset opened since the last call.
    pub fn take_opened(&mut self) -> bool {
        std::mem::take(&mut self.opened)
    }

    /// Forgets the images waiting for an answer.
    pub fn drop_incoming(&mut self) {
        self.incoming.clear();
    }

    // ------------------------------------------------------------ asset list

    pub async fn refresh_list(&mut self) -> Vec<ViewUpdate> {
        match self.store.list().await {
            Ok(l) => {
                self.assets.set_listings(l);
                self.list_updates()
            }
            Err(e) => vec![ViewUpdate::Notice(format!("Cannot list assets: {e}"))],
        }
    }

    pub fn list_updates(&mut self) -> Vec<ViewUpdate> {
        self.assets.updates(now_millis(), format::local_offset())
    }

    // ------------------------------------------------------------ the open asset

    pub async fn select(&mut self, id: &str) -> Result<()> {
        let id: DocId = id
            .parse()
            .map_err(|_| ControllerError::Refused(format!("{id:?} is not an asset id")))?;
        let started = std::time::Instant::now();
        let cached = self
            .recent
            .iter()
            .position(|a| a.id == id)
            .map(|i| self.recent.remove(i));
        let asset = match cached {
            // Opened lately: only what others stored since is applied.
            Some(mut a) => {
                self.store.refresh(&mut a).await?;
                a
            }
            None => self.store.load(&id).await?,
        };
        let loaded = started.elapsed();
        self.open_asset(asset);
        tracing::debug!(doc = %id, ?loaded, total = ?started.elapsed(), "asset opened");
        Ok(())
    }

    pub fn open_asset(&mut self, asset: LocalAsset) {
        if let Some(old) = self.open.take()
            && old.asset.id != asset.id
        {
            self.recent.insert(0, old.asset);
            self.recent.truncate(RECENT);
        }
        let id = asset.id.to_string();
        self.compare = None;
        self.opened = true;
        let (now, offset) = (now_millis(), format::local_offset());
        let mut updates = vec![
            ViewUpdate::Selected(id),
            ViewUpdate::Screen(Screen::Asset),
            ViewUpdate::Compare(None),
        ];
        let opened = OpenAsset::open(
            asset,
            &Env {
                tools: &self.tools,
                now,
                offset,
            },
        );
        match opened {
            Ok((open, timeline)) => {
                updates.push(timeline);
                self.open = Some(open);
                updates.push(self.composer_update());
                self.view.apply(updates);
                // Versions and the inspector after the first screen.
                let env = Env {
                    tools: &self.tools,
                    now,
                    offset,
                };
                let more = self.open.as_mut().map(|o| o.complete(&env));
                match more {
                    Some(Ok(u)) => self.view.apply(u),
                    Some(Err(e)) => self.view.apply(vec![ViewUpdate::Notice(format!(
                        "Cannot show its versions: {e}"
                    ))]),
                    None => {}
                }
            }
            Err(e) => {
                updates.push(ViewUpdate::Notice(format!("Cannot show this asset: {e}")));
                self.view.apply(updates);
            }
        }
    }

    pub fn load_earlier(&mut self) -> Result<()> {
        let env = Env {
            tools: &self.tools,
            now: now_millis(),
            offset: format::local_offset(),
        };
        if let Some(open) = self.open.as_mut()
            && let Some(u) = open.load_earlier(&env)?
        {
            self.view.apply(vec![u]);
        }
        Ok(())
    }

    /// Shows what changed in the open asset: from the store when another
    /// writer (the sync client) changed it, else from its own edits.
    pub async fn refresh_open(&mut self, from_store: bool) -> Vec<ViewUpdate> {
        let Some(open) = self.open.as_mut() else {
            return Vec::new();
        };
        if from_store && let Err(e) = self.store.refresh(&mut open.asset).await {
            return vec![ViewUpdate::Notice(format!("Cannot reload the asset: {e}"))];
        }
        let had_image = open.active_version.is_some();
        let env = Env {
            tools: &self.tools,
            now: now_millis(),
            offset: format::local_offset(),
        };
        let mut updates = match open.apply_changes(&env) {
            Ok(u) => u,
            Err(e) => vec![ViewUpdate::Notice(format!("Cannot show this asset: {e}"))],
        };
        if had_image != open.active_version.is_some() {
            updates.push(self.composer_update());
        }
        updates
    }

    /// Applies `change` to the open asset, saves it, and shows the result.
    pub async fn edit<T>(
        &mut self,
        change: impl FnOnce(&mut AssetDoc, Option<&str>) -> Result<T>,
    ) -> Result<T> {
        let open = self.open.as_mut().ok_or(ControllerError::NoAsset)?;
        let out = change(&mut open.asset.doc, open.active_version.as_deref())?;
        if let Err(e) = self.store.save(&mut open.asset).await {
            // Not stored: do not show it either. Back to what the store has.
            if let Ok(a) = self.store.load(&open.asset.id).await {
                self.open_asset(a);
            }
            return Err(e.into());
        }
        self.nudge_sync();
        let mut updates = self.refresh_open(false).await;
        updates.extend(self.refresh_list().await);
        self.view.apply(updates);
        Ok(out)
    }

    pub async fn send(&mut self, prompt: String, aspect: String, scale: String) -> Result<()> {
        let draft = Draft {
            tool: self.tool,
            model_index: self.model_index,
            prompt,
            aspect,
            scale,
        };
        let tools = self.tools.clone();
        self.edit(move |doc, active| {
            let msg = tools
                .request(&draft, active)
                .map_err(ControllerError::Refused)?;
            Ok(doc.append_message(msg, now_millis())?)
        })
        .await
        .map(|_| ())
    }

    pub async fn rollback(&mut self, version: &str) -> Result<()> {
        let version = version.to_owned();
        self.edit(move |doc, _| Ok(doc.set_active_version(&version, now_millis())?))
            .await
            .map(|_| ())
    }

    /// Sends a failed (or canceled) request again, as a new request.
    pub async fn retry(&mut self, message: &str) -> Result<()> {
        let message = message.to_owned();
        self.edit(move |doc, _| {
            let old = doc.message(&message)?;
            if old.kind != MessageKind::ToolRequest {
                return Err(ControllerError::Refused(
                    "only tool requests can be retried".into(),
                ));
            }
            let again = NewMessage {
                input_version_ids: old.input_version_ids,
                params: old.params,
                ..NewMessage::tool_request(
                    old.tool.unwrap_or_default(),
                    old.provider.unwrap_or_default(),
                    old.model.unwrap_or_default(),
                    old.text.unwrap_or_default(),
                )
            };
            Ok(doc.append_message(again, now_millis())?)
        })
        .await
        .map(|_| ())
    }

    /// Stops a queued or running request: the server's job sees the status
    /// at its next check, cancels the provider's work and records what was
    /// spent.
    pub async fn cancel(&mut self, message: &str) -> Result<()> {
        let message = message.to_owned();
        self.edit(move |doc, _| {
            let m = doc.message(&message)?;
            match m.status {
                Some(MessageStatus::Queued | MessageStatus::Running) => {}
                _ => {
                    return Err(ControllerError::Refused(
                        "only queued or running requests can be canceled".into(),
                    ));
                }
            }
            Ok(doc.update_message(
                &message,
                MessageUpdate {
                    status: Some(MessageStatus::Canceled),
                    ..Default::default()
                },
                now_millis(),
            )?)
        })
        .await
    }

    /// Checked images arrived: with an asset open, ask what they become;
    /// otherwise each becomes an asset.
    pub async fn on_incoming(&mut self, results: Vec<Result<IncomingImage>>, ask: bool) {
        let mut errors = Vec::new();
        let mut images = Vec::new();
        for r in results {
            match r {
                Ok(i) => images.push(i),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            self.view.apply(vec![ViewUpdate::Notice(errors.join("; "))]);
        }
        if images.is_empty() {
            return;
        }
        if ask && let Some(open) = &self.open {
            let what = match images.as_slice() {
                [one] => one.describe(),
                many => format!("{} images", many.len()),
            };
            let vm = IncomingVm {
                what,
                asset: open.title.clone(),
            };
            self.incoming = images;
            self.view.apply(vec![ViewUpdate::Incoming(Some(vm))]);
            return;
        }
        for img in images {
            if let Err(e) = self.create_asset(&img).await {
                self.view.apply(vec![ViewUpdate::Notice(e.to_string())]);
            }
        }
    }

    pub async fn take_incoming(&mut self, as_version: bool) -> Result<()> {
        let images = std::mem::take(&mut self.incoming);
        self.view.apply(vec![ViewUpdate::Incoming(None)]);
        for img in images {
            if as_version && self.open.is_some() {
                let now = now_millis();
                let blobs = imports::store_blobs(self.store.as_ref(), &img, now).await?;
                self.edit(move |doc, active| {
                    imports::add_version(doc, &img, blobs, active.map(str::to_owned), now)
                })
                .await?;
            } else {
                self.create_asset(&img).await?;
            }
        }
        Ok(())
    }

    /// A new asset from a checked image; it opens.
    pub async fn create_asset(&mut self, img: &IncomingImage) -> Result<DocId> {
        let now = now_millis();
        let blobs = imports::store_blobs(self.store.as_ref(), img, now).await?;
        let doc = imports::new_asset(img, blobs, now)?;
        self.insert_and_open(doc).await
    }

    /// Creates an asset from a prompt: a queued text-to-image request.
    pub async fn new_from_prompt(
        &mut self,
        prompt: &str,
        model_index: usize,
        aspect: &str,
    ) -> Result<()> {
        let draft = Draft {
            tool: Tool::Generate,
            model_index,
            prompt: prompt.to_owned(),
            aspect: aspect.to_owned(),
            scale: String::new(),
        };
        let msg = self
            .tools
            .request(&draft, None)
            .map_err(ControllerError::Refused)?;
        let now = now_millis();
        let mut doc = AssetDoc::create(&format::headline(prompt, 60), now);
        doc.append_message(msg, now)?;
        self.insert_and_open(doc).await.map(|_| ())
    }

    pub async fn insert_and_open(&mut self, doc: AssetDoc) -> Result<DocId> {
        let asset = self.store.insert(DocId::random(), doc).await?;
        let id = asset.id.clone();
        self.nudge_sync();
        self.assets.clear_query();
        let updates = self.refresh_list().await;
        self.view.apply(updates);
        self.open_asset(asset);
        Ok(id)
    }

    /// The open asset and one of its versions (`None`: the active one)
    /// with its position.
    pub fn version_of(
        &self,
        version: Option<&str>,
    ) -> Result<(&OpenAsset, usize, &core_sync::model::VersionView)> {
        let open = self.open.as_ref().ok_or(ControllerError::NoAsset)?;
        let (i, v) = open
            .version(version)
            .ok_or_else(|| ControllerError::Refused("this asset has no image yet".into()))?;
        Ok((open, i, v))
    }

    /// `version` (or the one before the active one) against the active one.
    pub fn compare(&mut self, version: Option<&str>) -> Result<viewmodel::CompareVm> {
        let open = self.open.as_ref().ok_or(ControllerError::NoAsset)?;
        let vm = open.compare(version).ok_or_else(|| {
            ControllerError::Refused("compare needs two versions of this asset".into())
        })?;
        self.compare = Some(vm.clone());
        Ok(vm)
    }

    // ------------------------------------------------------------ composer

    pub fn composer_update(&mut self) -> ViewUpdate {
        let has_image = self
            .open
            .as_ref()
            .is_some_and(|o| o.active_version.is_some());
        let vm: ComposerVm = self.tools.composer(self.tool, self.model_index, has_image);
        self.model_index = vm.model_index;
        ViewUpdate::Composer(vm)
    }

    pub fn nudge_sync(&self) {
        if let Some(l) = &self.link {
            l.nudge();
        }
    }

    /// Where `key` is shown.
    pub fn refs(&self, key: &str) -> RowRefs {
        RowRefs {
            assets: self.assets.rows_with(key),
            messages: self
                .open
                .as_ref()
                .map(|o| o.rows_with(key))
                .unwrap_or_default(),
            versions: self
                .open
                .as_ref()
                .map(|o| o.versions_with(key))
                .unwrap_or_default(),
        }
    }
}
