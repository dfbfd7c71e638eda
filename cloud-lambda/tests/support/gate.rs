//! A deterministic scheduler for simulated devices that sync at the same
//! time. During a concurrent phase only one device's task runs at a time:
//! it holds the baton until its next *passage* — every step into the shared
//! world (a network decision, a server storage operation) — and there hands
//! it on. The next holder is picked by a seeded RNG among the devices
//! waiting at the gate, once every device still running waits there. The
//! interleaving of concurrent rounds (which push wins a race, what a feed
//! read sees mid-push) then depends on the seed alone, not on thread timing
//! (SQLite's worker threads, the tokio scheduler), and a seed replays.
//!
//! A device can also *crash* at a passage: it is let go of without the
//! baton, and its task learns it through the receiver `begin` gave it, so
//! the round is abandoned at exactly that point, as a killed process would.
//!
//! Outside a concurrent phase (or outside a device's task) passages are free.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rand08::Rng;
use rand08::rngs::StdRng;
use tokio::sync::oneshot;

tokio::task_local! {
    /// The simulated device whose task this is.
    pub static DEVICE: usize;
}

pub struct Gate {
    inner: Mutex<Inner>,
}

struct Inner {
    rng: StdRng,
    /// A concurrent phase is under way.
    on: bool,
    /// Devices whose task still runs.
    live: BTreeSet<usize>,
    /// Devices at the gate, each with the way to hand it the baton.
    waiting: BTreeMap<usize, oneshot::Sender<()>>,
    /// The device whose task runs now.
    holder: Option<usize>,
    /// Passages left before a device crashes (for devices set to crash).
    crash_after: BTreeMap<usize, u32>,
    /// How a crashing device's task is told.
    crash: BTreeMap<usize, oneshot::Sender<()>>,
}

impl Gate {
    pub fn new(rng: StdRng) -> Arc<Gate> {
        Arc::new(Gate {
            inner: Mutex::new(Inner {
                rng,
                on: false,
                live: BTreeSet::new(),
                waiting: BTreeMap::new(),
                holder: None,
                crash_after: BTreeMap::new(),
                crash: BTreeMap::new(),
            }),
        })
    }

    /// Starts a concurrent phase of `devices`, each with the passages after
    /// which it crashes (if it does). Returns each device's crash signal.
    /// Each device's task starts with a passage (to get the baton).
    pub fn begin(
        &self,
        devices: &[(usize, Option<u32>)],
    ) -> BTreeMap<usize, oneshot::Receiver<()>> {
        let mut g = self.inner.lock().unwrap();
        assert!(!g.on && g.live.is_empty(), "one concurrent phase at a time");
        g.on = true;
        let mut signals = BTreeMap::new();
        for &(dev, crash_after) in devices {
            g.live.insert(dev);
            let (tx, rx) = oneshot::channel();
            g.crash.insert(dev, tx);
            signals.insert(dev, rx);
            if let Some(n) = crash_after {
                g.crash_after.insert(dev, n);
            }
        }
        signals
    }

    /// Device `dev`'s task is done: it hands the baton on for good.
    pub fn leave(&self, dev: usize) {
        let mut g = self.inner.lock().unwrap();
        if g.holder == Some(dev) {
            g.holder = None;
        }
        g.live.remove(&dev);
        g.crash.remove(&dev);
        g.crash_after.remove(&dev);
        g.schedule();
    }

    /// Ends the phase (every device has left or crashed).
    pub fn end(&self) {
        let mut g = self.inner.lock().unwrap();
        assert!(g.live.is_empty() && g.waiting.is_empty() && g.holder.is_none());
        g.on = false;
        g.crash.clear();
        g.crash_after.clear();
    }

    /// Hands the baton on and waits for it to come back (at once outside a
    /// concurrent phase). A device chosen to crash here never gets it back:
    /// its task is told, and drops the round, this future with it.
    pub async fn pass(&self) {
        let Ok(dev) = DEVICE.try_with(|d| *d) else {
            return;
        };
        let turn = {
            let mut g = self.inner.lock().unwrap();
            if !g.on {
                return;
            }
            if g.holder == Some(dev) {
                g.holder = None;
            }
            let (tx, rx) = oneshot::channel();
            g.waiting.insert(dev, tx);
            g.schedule();
            rx
        };
        if turn.await.is_err() {
            // Crashed: the task stops polling us.
            std::future::pending::<()>().await;
        }
    }
}

impl Inner {
    /// Hands the baton to one waiting device once every live device waits.
    fn schedule(&mut self) {
        loop {
            if !self.on
                || self.holder.is_some()
                || self.waiting.is_empty()
                || self.waiting.len() < self.live.len()
            {
                return;
            }
            let at_gate: Vec<usize> = self.waiting.keys().copied().collect();
            let dev = at_gate[self.rng.gen_range(0..at_gate.len())];
            let turn = self.waiting.remove(&dev).expect("waiting");
            match self.crash_after.get_mut(&dev) {
                Some(0) => {
                    self.crash_after.remove(&dev);
                    self.live.remove(&dev);
                    drop(turn);
                    if let Some(tell) = self.crash.remove(&dev) {
                        let _ = tell.send(());
                    }
                    continue;
                }
                Some(n) => *n -= 1,
                None => {}
            }
            self.holder = Some(dev);
            let _ = turn.send(());
            return;
        }
    }
}
