//! What devices do between syncs: one local edit (a message, a title, a
//! version, a rollback, a job queued or updated, a cost) or a new asset,
//! chosen by the seed, saved, remembered as acknowledged when it holds a
//! message text, and announced to the sync engine.

use core_sync::blob::sha256_hex;
use core_sync::model::{
    BlobRef, MessageStatus, MessageUpdate, NewCostEvent, NewMessage, NewVersion,
};
use core_sync::{AssetDoc, DocId};
use rand08::Rng;

use super::Sim;

impl Sim {
    /// One local edit on device `d`, saved (acknowledged) and announced to
    /// the engine.
    pub(super) async fn local_edit(&mut self, d: usize) {
        let now = self.now();
        let docs = self.docs_of(d).await;
        let kind = self.rng.gen_range(0..100);
        if docs.is_empty() || kind < 4 {
            return self.create_asset(d).await;
        }
        // Most edits go to one hot document, so the server compacts it.
        let id = if self.rng.gen_bool(0.75) {
            docs[0].clone()
        } else {
            docs[self.rng.gen_range(0..docs.len())].clone()
        };
        let label = self.label(&id);
        let text = format!("d{d}-n{}", self.devices[d].next_text);
        let seed = self.cfg.seed;
        let mut asset = self.client(d).store().load(&id).await.unwrap();
        let mut saved_text = None;
        let what = match kind {
            4..50 => {
                asset
                    .doc
                    .append_message(NewMessage::user(text.clone()), now)
                    .unwrap();
                saved_text = Some(text);
                "message"
            }
            50..60 => {
                asset.doc.set_title(&format!("title {text}"), now).unwrap();
                "title"
            }
            60..70 => {
                let active = asset.doc.summary().unwrap().active_version_id;
                let sha = sha256_hex(text.as_bytes());
                let blob = BlobRef {
                    sha256: sha,
                    mime: "image/png".into(),
                    width: 64,
                    height: 64,
                    bytes: 1234,
                };
                asset
                    .doc
                    .add_version(
                        NewVersion {
                            blob,
                            thumbnail: None,
                            parent_version_id: active,
                            created_by_message_id: None,
                        },
                        now,
                    )
                    .unwrap();
                "version"
            }
            70..77 => {
                // Version ids are random: choose by blob hash, which is not.
                let mut versions = asset.doc.versions().unwrap();
                versions.sort_by(|a, b| a.blob.sha256.cmp(&b.blob.sha256));
                if versions.is_empty() {
                    "rollback (no versions)"
                } else {
                    let v = &versions[self.rng.gen_range(0..versions.len())];
                    asset.doc.set_active_version(&v.id, now).unwrap();
                    "rollback"
                }
            }
            77..87 => {
                let msg = NewMessage::tool_request("edit", "sim", "sim-model", text.clone());
                asset.doc.append_message(msg, now).unwrap();
                saved_text = Some(text);
                "job"
            }
            87..94 => {
                // Message ids and list order are random: choose by text.
                let mut jobs: Vec<(String, String)> = asset
                    .doc
                    .messages()
                    .unwrap()
                    .into_iter()
                    .filter(|m| m.status.is_some_and(|s| !s.is_terminal()))
                    .map(|m| (m.text.unwrap_or_default(), m.id))
                    .collect();
                jobs.sort();
                if jobs.is_empty() {
                    "job update (no open jobs)"
                } else {
                    let (_, job) = &jobs[self.rng.gen_range(0..jobs.len())];
                    let status = [
                        MessageStatus::Running,
                        MessageStatus::Succeeded,
                        MessageStatus::Failed,
                    ][self.rng.gen_range(0..3)];
                    let update = MessageUpdate {
                        status: Some(status),
                        progress: Some(0.5),
                        ..MessageUpdate::default()
                    };
                    asset.doc.update_message(job, update, now).unwrap();
                    "job update"
                }
            }
            _ => {
                let ev = NewCostEvent {
                    provider: "sim".into(),
                    model: "sim-model".into(),
                    units: 1.0,
                    unit: "image".into(),
                    cost_nano_usd: 40_000_000,
                    message_id: None,
                };
                asset.doc.record_cost(ev, now).unwrap();
                "cost"
            }
        };
        self.devices[d].next_text += 1;
        self.client(d)
            .store()
            .save(&mut asset)
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: saving an edit failed: {e}"));
        self.trace(|| format!("d{d}: {what} on {label} ({:?})", saved_text));
        if let Some(t) = saved_text {
            self.acknowledged.entry(label).or_default().insert(t);
        }
        self.client(d).local_change(id);
        self.stats.edits += 1;
    }

    async fn create_asset(&mut self, d: usize) {
        let now = self.now();
        let label = format!("a{d}.{}", self.devices[d].next_doc);
        let text = format!("d{d}-n{}", self.devices[d].next_text);
        self.devices[d].next_doc += 1;
        self.devices[d].next_text += 1;
        let store = self.client(d).store().clone();
        // Document ids derive from the seed: the engine orders pending
        // documents by id, and random ids would make that order (which
        // documents share a request) differ between runs of one seed.
        let id: DocId = sha256_hex(format!("{}/{label}", self.cfg.seed).as_bytes())[..32]
            .parse()
            .unwrap();
        let doc = AssetDoc::create(&format!("asset {label}"), now);
        let mut asset = store.insert(id, doc).await.unwrap();
        self.labels.insert(asset.id.clone(), label.clone());
        asset
            .doc
            .append_message(NewMessage::user(text.clone()), now)
            .unwrap();
        store.save(&mut asset).await.unwrap();
        self.trace(|| format!("d{d}: created {label} with {text}"));
        self.acknowledged.entry(label).or_default().insert(text);
        self.client(d).local_change(asset.id.clone());
        self.stats.edits += 1;
    }
}
