//! The end of a run: heal the network and the server, sync every device
//! until idle, and check convergence (the same documents and heads on every
//! device and on the server, every acknowledged message exactly once,
//! nothing pending on disk, listings agreeing with documents, a late joiner
//! identical). Returns the [`Outcome`] a replay of the seed must reproduce.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ChangeHash;
use cloud_lambda::auth::LocalIssuer;
use cloud_lambda::storage::DocStore;
use core_sync::model::MessageKind;
use core_sync::store::StoreOptions;

use super::{Device, Sim, Stats};
use crate::net::Fault;
use crate::setup::{USER, rng_for};

/// What a run produced that must be the same in every run of its seed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Document label -> its sorted heads: the same bytes in every run.
    pub(crate) heads: BTreeMap<String, Vec<ChangeHash>>,
    pub(crate) faults: Vec<(u64, usize, Fault)>,
    pub(crate) stats: Stats,
    pub(crate) store_faults: u64,
    pub(crate) server_compactions: u64,
    /// Document label -> its sorted message texts (user and tool requests).
    pub(crate) texts: BTreeMap<String, Vec<String>>,
    /// Document label -> number of messages (system ones included).
    pub(crate) message_counts: BTreeMap<String, usize>,
}

/// Sorted heads, message texts and listing of one document on one device.
#[derive(Debug, PartialEq)]
struct DocState {
    heads: Vec<ChangeHash>,
    texts: Vec<String>,
    message_count: usize,
    title: String,
}

impl Sim {
    /// Heals the network and the server, syncs every device until idle twice
    /// around, and checks that everything converged. Returns what a replay
    /// must reproduce.
    pub(super) async fn heal_and_verify(&mut self) -> Outcome {
        let seed = self.cfg.seed;
        {
            let mut st = self.net.state.lock().unwrap();
            st.healed = true;
            st.step = self.cfg.steps + 1;
            st.offline.iter_mut().for_each(|o| *o = false);
        }
        let dead = {
            let mut f = self.net.store_faults.lock().unwrap();
            f.enabled = false;
            f.crash_in = None;
            f.dead
        };
        // A crash left the server down: healing starts it again.
        if dead {
            self.restart_server(false).await;
        }
        for pass in 0..2 {
            for d in 0..self.devices.len() {
                let report = self.client(d).sync_until_idle().await.unwrap_or_else(|e| {
                    panic!("seed {seed}: device {d} failed to sync on a healed network: {e}")
                });
                self.trace(|| format!("heal pass {pass} d{d}: {report:?}"));
            }
        }
        // Quiescence: one more pass moves nothing.
        for d in 0..self.devices.len() {
            let report = self.client(d).sync_until_idle().await.unwrap();
            assert_eq!(
                (report.pushed_docs, report.pulled_docs),
                (0, 0),
                "seed {seed}: device {d} still had work after two healed passes: {report:?}"
            );
        }

        let expected: BTreeMap<String, Vec<String>> = self
            .acknowledged
            .iter()
            .map(|(l, t)| (l.clone(), t.iter().cloned().collect()))
            .collect();
        let reference = self.device_state(0).await;
        let labels: BTreeSet<&String> = reference.keys().collect();
        let all_labels: BTreeSet<&String> = self.labels.values().collect();
        assert_eq!(
            labels, all_labels,
            "seed {seed}: device 0 lacks documents that were created"
        );
        for (label, state) in &reference {
            let want = expected.get(label).cloned().unwrap_or_default();
            assert_eq!(
                state.texts, want,
                "seed {seed}: document {label} does not hold exactly the acknowledged messages"
            );
        }
        for d in 1..self.devices.len() {
            let state = self.device_state(d).await;
            assert_eq!(
                state.keys().collect::<Vec<_>>(),
                reference.keys().collect::<Vec<_>>(),
                "seed {seed}: devices 0 and {d} hold different documents"
            );
            for (label, s) in &state {
                assert_eq!(
                    s, &reference[label],
                    "seed {seed}: document {label} differs between devices 0 and {d}"
                );
            }
        }
        for d in 0..self.devices.len() {
            let status = self.client(d).status();
            assert_eq!(
                status.pending, 0,
                "seed {seed}: device {d} still has pending documents: {status:?}"
            );
        }

        // The server holds the same heads.
        let server = self.server_store.clone().expect("server running");
        let user = LocalIssuer::user_id(USER);
        for (id, label) in &self.labels {
            let head = server
                .head(&user, id)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("seed {seed}: the server lacks document {label}"));
            let mut heads = head.heads.clone();
            heads.sort();
            assert_eq!(
                heads, reference[label].heads,
                "seed {seed}: the server's recorded heads of {label} differ from the devices'"
            );
            // And its log and snapshot hold exactly that document.
            let bytes: Vec<u8> = server
                .read_all(&user, id)
                .await
                .unwrap()
                .into_iter()
                .flat_map(|c| c.bytes)
                .collect();
            let mut doc = automerge::AutoCommit::load(&bytes).unwrap_or_else(|e| {
                panic!("seed {seed}: the server's copy of {label} does not load: {e}")
            });
            let mut heads = doc.get_heads();
            heads.sort();
            assert_eq!(
                heads, reference[label].heads,
                "seed {seed}: the server's stored chunks of {label} differ from the devices'"
            );
        }

        // What is on disk agrees: after a restart nothing is pending.
        for d in 0..self.devices.len() {
            self.restart_device(d, true).await;
            let pending = self.client(d).store().pending_sync().await.unwrap();
            assert!(
                pending.is_empty(),
                "seed {seed}: device {d}'s store says {} documents are unsynced after convergence",
                pending.len()
            );
            assert_eq!(self.client(d).status().pending, 0);
        }

        // A device joining now gets everything, snapshots included.
        let late = self.devices.len();
        self.net.state.lock().unwrap().offline.push(false);
        self.net
            .state
            .lock()
            .unwrap()
            .rngs
            .push(rng_for(seed, 100 + late as u64));
        self.devices.push(Device {
            dir: self.dir.path().join("device-late"),
            client: None,
            offline_until: 0,
            next_text: 0,
            next_doc: 0,
            options: StoreOptions::default(),
        });
        self.open_device(late).await;
        self.client(late).sync_until_idle().await.unwrap();
        let state = self.device_state(late).await;
        assert_eq!(
            state, reference,
            "seed {seed}: a device joining late does not match the others"
        );

        let mut faults = self.net.state.lock().unwrap().log.clone();
        // The healing passes' decisions are all `Deliver`; keep only the run's.
        faults.retain(|(step, _, _)| *step <= self.cfg.steps);
        let summary = {
            let f = self.net.store_faults.lock().unwrap();
            let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
            for (_, _, fault) in &faults {
                let name = format!("{fault:?}");
                let name = name.split('(').next().unwrap_or_default().to_owned();
                *by_kind.entry(name).or_default() += 1;
            }
            format!(
                "{:?}; network {by_kind:?}; store faults {}, server compactions {}; {} documents, {} messages",
                self.stats,
                f.injected,
                f.compactions,
                reference.len(),
                expected.values().map(Vec::len).sum::<usize>()
            )
        };
        eprintln!("seed {seed}: converged. {summary}");
        let (store_faults, server_compactions) = {
            let f = self.net.store_faults.lock().unwrap();
            (f.injected, f.compactions)
        };
        Outcome {
            heads: reference
                .iter()
                .map(|(l, s)| (l.clone(), s.heads.clone()))
                .collect(),
            faults,
            stats: self.stats.clone(),
            store_faults,
            server_compactions,
            texts: reference
                .iter()
                .map(|(l, s)| (l.clone(), s.texts.clone()))
                .collect(),
            message_counts: reference
                .iter()
                .map(|(l, s)| (l.clone(), s.message_count))
                .collect(),
        }
    }

    /// Every document of device `d` by label, with the checks that concern
    /// one copy: unique message ids, a listing row matching the document.
    async fn device_state(&mut self, d: usize) -> BTreeMap<String, DocState> {
        let seed = self.cfg.seed;
        let store = self.client(d).store().clone();
        let listing = store.list().await.unwrap();
        let mut out = BTreeMap::new();
        for row in listing {
            let label = self.label(&row.id);
            let mut asset = store.load(&row.id).await.unwrap();
            let mut heads = asset.doc.heads();
            heads.sort();
            let messages = asset.doc.messages().unwrap();
            let ids: BTreeSet<&str> = messages.iter().map(|m| m.id.as_str()).collect();
            assert_eq!(
                ids.len(),
                messages.len(),
                "seed {seed}: device {d}, {label}: a message appears twice"
            );
            let mut texts: Vec<String> = messages
                .iter()
                .filter(|m| matches!(m.kind, MessageKind::User | MessageKind::ToolRequest))
                .filter_map(|m| m.text.clone())
                .collect();
            texts.sort();
            let summary = asset.doc.summary().unwrap();
            assert_eq!(
                (&row.title, row.message_count, row.updated_at),
                (&summary.title, summary.message_count, summary.updated_at),
                "seed {seed}: device {d}, {label}: the listing row disagrees with the document"
            );
            assert_eq!(summary.message_count as usize, messages.len());
            out.insert(
                label,
                DocState {
                    heads,
                    texts,
                    message_count: messages.len(),
                    title: summary.title,
                },
            );
        }
        out
    }
}
