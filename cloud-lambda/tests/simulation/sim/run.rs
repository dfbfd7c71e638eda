//! The scheduler: one seeded loop that picks, step by step, a device and an
//! action (a local edit, a sync round or a burst of them, all devices
//! syncing at once, going offline, a device or server restart), and
//! [`simulate`], one whole run from set-up to the convergence checks.

use core_sync::sync::client::{SyncError, SyncReport};
use core_sync::sync::engine::Next;
use rand08::Rng;

use super::Sim;
use super::check::Outcome;
use crate::gate::DEVICE;
use crate::setup::SimConfig;

/// One run. Ids and actor ids come from the seed (the run stays on this
/// thread: `#[tokio::test]` runs on one), so a seed replays byte for byte.
pub(crate) async fn simulate(cfg: SimConfig) -> Outcome {
    core_sync::ids::seed_ids_on_this_thread(Some(cfg.seed));
    let mut sim = Sim::new(cfg).await;
    sim.run().await;
    let outcome = sim.heal_and_verify().await;
    core_sync::ids::seed_ids_on_this_thread(None);
    outcome
}

impl Sim {
    async fn run(&mut self) {
        for _ in 0..self.cfg.steps {
            self.step += 1;
            self.net.state.lock().unwrap().step = self.step;
            for d in 0..self.devices.len() {
                if self.devices[d].offline_until == self.step {
                    self.trace(|| format!("d{d}: back online"));
                    self.net.state.lock().unwrap().offline[d] = false;
                }
            }
            let d = self.rng.gen_range(0..self.devices.len());
            match self.rng.gen_range(0..100) {
                0..38 => self.local_edit(d).await,
                38..72 => self.sync(d, 1).await,
                72..82 if self.cfg.concurrent => self.sync_concurrently().await,
                72..82 => self.sync(d, 6).await,
                82..87 => self.go_offline(d),
                87..92 => {
                    let clean = self.rng.gen_bool(0.5);
                    self.restart_device(d, clean).await;
                }
                92..94 => {
                    let clean = self.rng.gen_bool(0.5);
                    self.restart_server(clean).await;
                }
                94..99 if self.cfg.concurrent => self.sync_concurrently().await,
                _ => self.trace(|| "idle".into()),
            }
        }
    }

    fn go_offline(&mut self, d: usize) {
        let until = self.step + self.rng.gen_range(5..40);
        self.trace(|| format!("d{d}: offline until step {until}"));
        self.stats.offline_periods += 1;
        self.devices[d].offline_until = until;
        self.net.state.lock().unwrap().offline[d] = true;
    }

    /// Every device runs up to four rounds at the same time: their requests
    /// interleave at the server (conditional appends race, feeds are read
    /// while other pushes land). Some devices crash mid-round: the round is
    /// abandoned at whatever await point a short timer finds it, and the
    /// device restarts from what its store holds.
    async fn sync_concurrently(&mut self) {
        self.trace(|| "all devices sync concurrently".into());
        // Which devices crash, and after how many passages through the gate.
        let plan: Vec<(usize, Option<u32>)> = (0..self.devices.len())
            .map(|d| (d, self.rng.gen_bool(0.15).then(|| self.rng.gen_range(0..8))))
            .collect();
        let gate = self.net.gate.clone();
        let mut crash_signals = gate.begin(&plan);
        let mut tasks = tokio::task::JoinSet::new();
        for d in 0..self.devices.len() {
            let mut client = self.devices[d].client.take().expect("device running");
            let mut crash = crash_signals.remove(&d).expect("a crash signal per device");
            let gate = gate.clone();
            tasks.spawn(DEVICE.scope(d, async move {
                let mut errors = Vec::new();
                let mut rounds = 0;
                let work = async {
                    // Nothing happens before the device has the baton.
                    gate.pass().await;
                    let mut report = SyncReport::default();
                    for _ in 0..4 {
                        rounds += 1;
                        match client.round(&mut report).await {
                            Ok(Next::Now) => continue,
                            Ok(Next::After(_)) => break,
                            Err(e) => {
                                client.failed(&e);
                                errors.push(e);
                                break;
                            }
                        }
                    }
                };
                // A crash drops the round wherever the gate stopped it.
                let crashed = tokio::select! {
                    biased;
                    _ = &mut crash => true,
                    () = work => false,
                };
                if !crashed {
                    gate.leave(d);
                }
                (d, client, rounds, errors, crashed)
            }));
        }
        let mut crashed_devices = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (d, client, rounds, errors, crashed) = joined.expect("a sync task panicked");
            self.devices[d].client = Some(client);
            self.stats.rounds += rounds;
            for e in errors {
                self.check_round_error(d, &e);
            }
            if crashed {
                crashed_devices.push(d);
            }
        }
        gate.end();
        crashed_devices.sort();
        for d in crashed_devices {
            self.trace(|| format!("d{d}: crashed mid-round"));
            self.stats.crashes_mid_round += 1;
            self.restart_device(d, false).await;
        }
        let restart = std::mem::take(&mut self.net.state.lock().unwrap().restart_requested);
        if restart {
            self.restart_server(false).await;
        }
    }

    /// Round errors are expected, but only the transient kind the faults
    /// produce: anything else is a bug.
    fn check_round_error(&mut self, d: usize, e: &SyncError) {
        self.stats.failed_rounds += 1;
        self.trace(|| format!("d{d}: round failed: {e}"));
        assert!(
            matches!(e, SyncError::Server { status, .. } if *status >= 500),
            "seed {}, step {}: device {d} got an error no fault explains: {e}",
            self.cfg.seed,
            self.step
        );
    }

    /// Up to `max` rounds while the engine says there is more to do. Errors
    /// are expected, but only the transient kind the faults produce.
    async fn sync(&mut self, d: usize, max: usize) {
        for _ in 0..max {
            self.stats.rounds += 1;
            let mut report = SyncReport::default();
            let result = self.client(d).round(&mut report).await;
            let restart = std::mem::take(&mut self.net.state.lock().unwrap().restart_requested);
            if restart {
                self.restart_server(false).await;
            }
            match result {
                Ok(next) => {
                    self.trace(|| format!("d{d}: round ok {report:?} next {next:?}"));
                    if next != Next::Now {
                        return;
                    }
                }
                Err(e) => {
                    self.check_round_error(d, &e);
                    self.client(d).failed(&e);
                    return;
                }
            }
        }
    }
}
