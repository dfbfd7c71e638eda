//! Renaming, deleting (with Undo at once) and the trash: each a change in
//! the asset's document, saved before it is shown and then synced. A
//! deletion closes the asset and offers Undo; the trash lists what was
//! deleted (here or on another device) until the server purges it, and
//! restores it. An asset another device deleted leaves the list with a
//! sentence saying so. This file knows nothing of the controller's other
//! concerns.

use std::collections::HashSet;

use core_sync::ids::DocId;
use core_sync::now_millis;

use super::error::{ControllerError, Result};
use super::protocol::ViewUpdate;
use super::workbench::Workbench;
use crate::format;
use crate::trash::{self, TrashVm};

fn parse(id: &str) -> Result<DocId> {
    id.parse()
        .map_err(|_| ControllerError::Refused(format!("{id:?} is not an asset id")))
}

impl Workbench {
    fn is_open(&self, id: &DocId) -> bool {
        self.open.as_ref().is_some_and(|o| &o.asset.id == id)
    }

    /// Renames asset `id` (open or not). The same title again changes
    /// nothing; an empty or overlong one is refused with the reason.
    pub async fn rename(&mut self, id: &str, title: &str) -> Result<()> {
        let id = parse(id)?;
        let title = title.to_owned();
        if self.is_open(&id) {
            self.edit(move |doc, _| Ok(doc.rename(&title, now_millis())?))
                .await?;
            let t = self.open.as_ref().map(|o| o.title.clone());
            if let Some(t) = t {
                self.view.apply(vec![ViewUpdate::Title(t)]);
            }
            return Ok(());
        }
        let mut asset = self.store.load(&id).await?;
        if asset.doc.rename(&title, now_millis())? {
            self.store.save(&mut asset).await?;
            self.nudge_sync();
        }
        let u = self.refresh_list().await;
        self.view.apply(u);
        Ok(())
    }

    /// Moves asset `id` (`None`: the open one) to the trash, closes it if
    /// open, and offers Undo.
    pub async fn delete(&mut self, id: Option<&str>) -> Result<()> {
        let id = match id {
            Some(s) => parse(s)?,
            None => self
                .open
                .as_ref()
                .ok_or(ControllerError::NoAsset)?
                .asset
                .id
                .clone(),
        };
        let device = core_sync::device_name();
        let title = if self.is_open(&id) {
            let title = self
                .edit(move |doc, _| {
                    doc.delete(&device, now_millis())?;
                    Ok(doc.summary()?.title)
                })
                .await?;
            self.open = None;
            self.compare = None;
            let composer = self.composer_update();
            self.view.apply(vec![
                ViewUpdate::NoAsset,
                ViewUpdate::Selected(String::new()),
                ViewUpdate::Compare(None),
                composer,
            ]);
            title
        } else {
            let mut asset = self.store.load(&id).await?;
            asset.doc.delete(&device, now_millis())?;
            self.store.save(&mut asset).await?;
            self.nudge_sync();
            let mut u = self.refresh_list().await;
            u.push(ViewUpdate::Selected(
                self.open
                    .as_ref()
                    .map(|o| o.asset.id.to_string())
                    .unwrap_or_default(),
            ));
            self.view.apply(u);
            asset.summary()?.title
        };
        self.trash.undo = Some(id);
        let mut u = vec![ViewUpdate::Undo(Some(trash::undo_text(&title)))];
        u.extend(self.trash_update().await);
        self.view.apply(u);
        Ok(())
    }

    /// Takes back the last deletion and opens the asset again.
    pub async fn undo(&mut self) -> Result<()> {
        let id = self
            .trash
            .undo
            .take()
            .ok_or_else(|| ControllerError::Refused("there is nothing to undo".into()))?;
        self.view.apply(vec![ViewUpdate::Undo(None)]);
        self.restore(&id.to_string()).await?;
        self.select(&id.to_string()).await
    }

    /// Takes asset `id` out of the trash.
    pub async fn restore(&mut self, id: &str) -> Result<()> {
        let id = parse(id)?;
        let mut asset = self.store.load(&id).await?;
        asset.doc.restore(now_millis())?;
        self.store.save(&mut asset).await?;
        self.nudge_sync();
        if self.trash.undo.as_ref() == Some(&id) {
            self.trash.undo = None;
            self.view.apply(vec![ViewUpdate::Undo(None)]);
        }
        let title = asset.summary()?.title;
        let mut u = self.refresh_list().await;
        u.extend(self.trash_update().await);
        if self.trash.open {
            u.push(ViewUpdate::Info(format!(
                "Restored “{}”.",
                format::headline(&title, 60)
            )));
        }
        self.view.apply(u);
        Ok(())
    }

    /// Opens or closes the trash.
    pub async fn show_trash(&mut self, open: bool) {
        self.trash.open = open;
        let u = self.trash_update().await;
        self.view.apply(u);
    }

    /// The trash sheet as it now is (nothing while it is closed).
    pub async fn trash_update(&mut self) -> Vec<ViewUpdate> {
        if !self.trash.open {
            return vec![ViewUpdate::Trash(TrashVm::default())];
        }
        match self.store.list_trash().await {
            Ok(t) => vec![ViewUpdate::Trash(TrashVm {
                open: true,
                rows: trash::rows(
                    &t,
                    self.trash.retention_days,
                    now_millis(),
                    format::local_offset(),
                ),
            })],
            Err(e) => vec![ViewUpdate::Notice(format!("Cannot list the trash: {e}"))],
        }
    }

    /// After a sync: assets that left the list because another device
    /// deleted them are named (and the open one closes); an open trash
    /// shows what it now holds.
    pub async fn deleted_elsewhere(&mut self, before: &HashSet<DocId>) -> Vec<ViewUpdate> {
        let now: HashSet<DocId> = self
            .assets
            .listings()
            .iter()
            .map(|l| l.id.clone())
            .collect();
        let gone: Vec<&DocId> = before.difference(&now).collect();
        if gone.is_empty() {
            // The trash may have changed all the same (a purge, a restore
            // elsewhere).
            return if self.trash.open {
                self.trash_update().await
            } else {
                Vec::new()
            };
        }
        let trash = self.store.list_trash().await.unwrap_or_default();
        let mut u = Vec::new();
        let said: Vec<String> = trash
            .iter()
            .filter(|t| gone.contains(&&t.id))
            .map(trash::deleted_elsewhere)
            .collect();
        if self
            .open
            .as_ref()
            .is_some_and(|o| gone.contains(&&o.asset.id))
        {
            self.open = None;
            self.compare = None;
            u.extend([
                ViewUpdate::NoAsset,
                ViewUpdate::Selected(String::new()),
                ViewUpdate::Compare(None),
                self.composer_update(),
            ]);
        }
        if !said.is_empty() {
            u.push(ViewUpdate::Info(said.join(" ")));
        }
        u.extend(self.trash_update().await);
        u
    }
}
