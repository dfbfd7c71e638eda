//! The simulated world: [`Sim`] holds the seeded scheduler's RNG, the
//! server (restartable, cleanly or as a crash, optionally losing its latest
//! commits) and the devices (each a `SyncClient` over its own `Store`,
//! restartable from disk), the document labels and the messages each
//! device acknowledged. Its submodules add the rest on top of it (this
//! module never calls into them): [`workload`] the local edits, [`check`]
//! healing and the convergence checks, and [`run`] the scheduler loop and
//! one whole run, which uses the other two.

pub(crate) mod check;
pub(crate) mod run;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_lambda::app::{AppState, router};
use cloud_lambda::local::RouterTransport;
use cloud_lambda::storage::embedded::EmbeddedStore;
use core_sync::DocId;
use core_sync::store::{CompactionPolicy, Store, StoreOptions};
use core_sync::sync::client::SyncClient;
use core_sync::sync::engine::EngineConfig;
use rand08::Rng;
use rand08::rngs::StdRng;

use crate::faulty_store::{FaultyDocStore, StoreFaults};
use crate::gate::Gate;
use crate::net::{FaultyTransport, Net, NetState};
use crate::setup::{EPOCH_MILLIS, SimConfig, USER, issuer, rng_for, trace_enabled};

struct Device {
    dir: PathBuf,
    client: Option<SyncClient>,
    offline_until: u64,
    next_text: u64,
    next_doc: u64,
    options: StoreOptions,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Stats {
    edits: u64,
    rounds: u64,
    failed_rounds: u64,
    pub(crate) device_restarts: u64,
    pub(crate) server_restarts: u64,
    server_rollbacks: u64,
    crashes_mid_round: u64,
    offline_periods: u64,
}

struct Sim {
    cfg: SimConfig,
    rng: StdRng,
    /// Everything on disk: the server's directory and one per device.
    dir: tempfile::TempDir,
    server_dir: PathBuf,
    token: String,
    net: Arc<Net>,
    server_store: Option<EmbeddedStore>,
    devices: Vec<Device>,
    /// Every document ever created, by a stable label ("a{device}.{n}").
    labels: BTreeMap<DocId, String>,
    /// Label -> every message text saved locally into that document.
    acknowledged: BTreeMap<String, BTreeSet<String>>,
    step: u64,
    stats: Stats,
    trace: bool,
}

impl Sim {
    async fn new(cfg: SimConfig) -> Sim {
        eprintln!(
            "simulation seed: {} ({} devices, {} steps; SIM_SEED=<seed> reproduces)",
            cfg.seed, cfg.devices, cfg.steps
        );
        let trace = trace_enabled();
        let dir = tempfile::tempdir().unwrap();
        let server_dir = dir.path().join("server");
        let store_faults = Arc::new(Mutex::new(StoreFaults {
            rng: rng_for(cfg.seed, 1),
            enabled: true,
            crash_in: None,
            dead: false,
            injected: 0,
            compactions: 0,
        }));
        let net = Arc::new(Net {
            state: Mutex::new(NetState {
                server: None,
                rngs: (0..cfg.devices)
                    .map(|d| rng_for(cfg.seed, 100 + d as u64))
                    .collect(),
                offline: vec![false; cfg.devices],
                healed: false,
                step: 0,
                log: Vec::new(),
                restart_requested: false,
                sent: Vec::new(),
                trace,
            }),
            store_faults,
            gate: Gate::new(rng_for(cfg.seed, 2)),
        });
        let token = issuer().mint(USER, Duration::from_secs(24 * 3600));
        let mut sim = Sim {
            cfg,
            rng: rng_for(cfg.seed, 0),
            server_dir,
            token,
            net,
            server_store: None,
            devices: Vec::new(),
            labels: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            step: 0,
            stats: Stats::default(),
            trace,
            dir,
        };
        sim.start_server().await;
        for d in 0..cfg.devices {
            // Odd devices compact their local store eagerly, so local
            // snapshots take part too.
            let options = StoreOptions {
                compaction: if d % 2 == 1 {
                    CompactionPolicy {
                        min_incremental_bytes: 1024,
                        ratio_percent: 30,
                        max_chunks: u64::MAX,
                    }
                } else {
                    CompactionPolicy::default()
                },
                ..StoreOptions::default()
            };
            let dir = sim.dir.path().join(format!("device-{d}"));
            sim.devices.push(Device {
                dir,
                client: None,
                offline_until: 0,
                next_text: 0,
                next_doc: 0,
                options,
            });
            sim.open_device(d).await;
        }
        sim
    }

    fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            max_push_docs: self.cfg.max_push_docs,
            ..EngineConfig::default()
        }
    }

    fn now(&self) -> i64 {
        EPOCH_MILLIS + self.step as i64 * 1000
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("step {}: {}", self.step, what());
        }
    }

    async fn start_server(&mut self) {
        let store = EmbeddedStore::open(&self.server_dir).await.unwrap();
        let faulty = FaultyDocStore {
            inner: store.clone(),
            faults: self.net.store_faults.clone(),
            gate: self.net.gate.clone(),
        };
        let blobs = Arc::new(
            cloud_lambda::storage::embedded::EmbeddedBlobs::open(&self.server_dir).unwrap(),
        );
        let state = AppState::new(
            Arc::new(faulty),
            blobs,
            Arc::new(store.clone()),
            issuer().verifier(),
            None,
        );
        self.net.state.lock().unwrap().server = Some(RouterTransport::new(router(state)));
        self.server_store = Some(store);
    }

    /// Stops the server (cleanly: connections closed; or as a crash: just
    /// dropped) and starts a new one on the same directory.
    async fn restart_server(&mut self, clean: bool) {
        self.trace(|| format!("server restart (clean: {clean})"));
        self.stats.server_restarts += 1;
        let old = self.net.state.lock().unwrap().server.take();
        drop(old);
        let store = self.server_store.take().expect("server running");
        if clean {
            store.close().await;
            if self.cfg.rollback {
                self.save_or_restore_server_db();
            }
        } else {
            drop(store);
        }
        {
            let mut f = self.net.store_faults.lock().unwrap();
            f.dead = false;
            f.crash_in = None;
        }
        self.start_server().await;
    }

    fn save_or_restore_server_db(&mut self) {
        let saved = self.dir.path().join("server-saved");
        let (from, to) = if saved.exists() && self.rng.gen_bool(0.5) {
            self.trace(|| "server loses its latest commits".into());
            self.stats.server_rollbacks += 1;
            (saved.clone(), self.server_dir.clone())
        } else {
            (self.server_dir.clone(), saved.clone())
        };
        std::fs::create_dir_all(&to).unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let name = format!("{}{suffix}", cloud_lambda::storage::embedded::DB_FILE);
            let _ = std::fs::remove_file(to.join(&name));
            if from.join(&name).exists() {
                std::fs::copy(from.join(&name), to.join(&name)).unwrap();
            }
        }
    }

    async fn open_device(&mut self, d: usize) {
        let dev = &self.devices[d];
        let store = Store::open(&dev.dir, dev.options.clone()).await.unwrap();
        let transport = FaultyTransport {
            dev: d,
            net: self.net.clone(),
        };
        let client = SyncClient::with_transport(
            store,
            Box::new(transport),
            self.token.clone(),
            self.engine_config(),
        )
        .await
        .unwrap();
        self.devices[d].client = Some(client);
    }

    /// Drops the device's client and store (closing them cleanly or not)
    /// and opens them again from disk.
    async fn restart_device(&mut self, d: usize, clean: bool) {
        self.trace(|| format!("d{d}: restart (clean: {clean})"));
        self.stats.device_restarts += 1;
        let client = self.devices[d].client.take().expect("device running");
        let store = client.store().clone();
        drop(client);
        if clean {
            store.close().await;
        } else {
            drop(store);
        }
        self.open_device(d).await;
    }

    fn client(&mut self, d: usize) -> &mut SyncClient {
        self.devices[d].client.as_mut().expect("device running")
    }

    fn label(&self, id: &DocId) -> String {
        self.labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("seed {}: unknown document {id}", self.cfg.seed))
    }

    /// The device's documents, in label order (ids are random; labels are
    /// not, so choices made from this list replay).
    async fn docs_of(&mut self, d: usize) -> Vec<DocId> {
        let ids = self.client(d).store().ids().await.unwrap();
        let mut labelled: Vec<(String, DocId)> =
            ids.into_iter().map(|id| (self.label(&id), id)).collect();
        labelled.sort();
        labelled.into_iter().map(|(_, id)| id).collect()
    }
}
