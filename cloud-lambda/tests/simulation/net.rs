//! The faulty network: [`Net`] decides, per request and from a per-device
//! seeded RNG, what happens to it ([`Fault`]): delivered, dropped, its
//! response lost, duplicated, answered 500, preceded by a replayed old
//! request, or the server crashing mid-request. [`FaultyTransport`] is one
//! device's view of it, the in-process Router behind those faults.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cloud_lambda::local::RouterTransport;
use core_sync::sync::client::{SyncError, Transport};
use core_sync::sync::protocol::{SyncRequest, SyncResponse};
use rand08::Rng;
use rand08::rngs::StdRng;

use crate::faulty_store::StoreFaults;
use crate::gate::Gate;

/// What the network did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Fault {
    Deliver,
    /// Never reaches the server.
    Drop,
    /// The server processes it; the response is lost.
    LoseResponse,
    /// Delivered twice; the client sees the second response.
    Duplicate,
    /// A 500 without processing.
    ServerError,
    /// An old request (of any device) arrives again just before this one,
    /// which is delivered; the old one's response goes nowhere.
    ReplayStale,
    /// The server dies after this many writes of the request, then restarts.
    CrashServer(u32),
    /// The device is offline.
    Offline,
}

pub(crate) struct NetState {
    /// The running server; `None` while it restarts.
    pub(crate) server: Option<RouterTransport>,
    /// One fault stream per device, so a device's schedule does not depend
    /// on how often the others sync.
    pub(crate) rngs: Vec<StdRng>,
    pub(crate) offline: Vec<bool>,
    pub(crate) healed: bool,
    pub(crate) step: u64,
    /// Every decision: (step, device, fault).
    pub(crate) log: Vec<(u64, usize, Fault)>,
    /// A request crashed the server: the scheduler restarts it.
    pub(crate) restart_requested: bool,
    /// The last requests that reached the server.
    pub(crate) sent: Vec<(SyncRequest, String)>,
    pub(crate) trace: bool,
}

pub(crate) struct Net {
    pub(crate) state: Mutex<NetState>,
    pub(crate) store_faults: Arc<Mutex<StoreFaults>>,
    pub(crate) gate: Arc<Gate>,
}

impl Net {
    fn decide(&self, dev: usize) -> (Fault, RouterTransport) {
        let mut st = self.state.lock().unwrap();
        let fault = if st.offline[dev] {
            Fault::Offline
        } else if st.healed {
            Fault::Deliver
        } else {
            let rng = &mut st.rngs[dev];
            match rng.gen_range(0..100) {
                0..55 => Fault::Deliver,
                55..65 => Fault::Drop,
                65..80 => Fault::LoseResponse,
                80..90 => Fault::Duplicate,
                90..95 => Fault::ServerError,
                95..98 => Fault::ReplayStale,
                _ => Fault::CrashServer(rng.gen_range(0..3)),
            }
        };
        let step = st.step;
        st.log.push((step, dev, fault));
        if st.trace {
            eprintln!("  step {step} d{dev}: network {fault:?}");
        }
        let server = st.server.clone().expect("the server is up between steps");
        (fault, server)
    }

    /// Remembers a request that reached the server, for `ReplayStale`.
    fn remember(&self, req: &SyncRequest, token: &str) {
        let mut st = self.state.lock().unwrap();
        if st.sent.len() == 32 {
            st.sent.remove(0);
        }
        st.sent.push((req.clone(), token.to_owned()));
    }

    /// An old request to send again, chosen by `dev`'s fault stream.
    fn stale(&self, dev: usize) -> Option<(SyncRequest, String)> {
        let mut st = self.state.lock().unwrap();
        if st.sent.is_empty() {
            return None;
        }
        let n = st.sent.len();
        let i = st.rngs[dev].gen_range(0..n);
        Some(st.sent[i].clone())
    }
}

/// A device's view of the network: the in-process Router behind the faults
/// [`Net`] decides.
pub(crate) struct FaultyTransport {
    pub(crate) dev: usize,
    pub(crate) net: Arc<Net>,
}

fn unreachable_error(what: &str) -> SyncError {
    SyncError::Server {
        status: 503,
        message: format!("simulated network: {what}"),
    }
}

#[async_trait]
impl Transport for FaultyTransport {
    async fn sync(
        &self,
        req: &SyncRequest,
        token: &str,
    ) -> Result<(SyncResponse, usize), SyncError> {
        // The network's decision and its memory of requests are shared by
        // every device: one passage.
        self.net.gate.pass().await;
        let (fault, server, stale) = {
            let (fault, server) = self.net.decide(self.dev);
            let stale = match fault {
                Fault::ReplayStale => self.net.stale(self.dev),
                _ => None,
            };
            if !matches!(fault, Fault::Offline | Fault::Drop | Fault::ServerError) {
                self.net.remember(req, token);
            }
            if let Fault::CrashServer(writes) = fault {
                self.net.store_faults.lock().unwrap().crash_in = Some(writes);
            }
            (fault, server, stale)
        };
        match fault {
            Fault::Deliver => server.sync(req, token).await,
            Fault::Offline => Err(unreachable_error("offline")),
            Fault::Drop => Err(unreachable_error("request dropped")),
            Fault::ServerError => Err(SyncError::Server {
                status: 500,
                message: "simulated: the server failed before reading the request".into(),
            }),
            Fault::LoseResponse => {
                let _ = server.sync(req, token).await;
                Err(SyncError::Server {
                    status: 504,
                    message: "simulated network: response lost".into(),
                })
            }
            Fault::Duplicate => {
                let _ = server.sync(req, token).await;
                server.sync(req, token).await
            }
            Fault::ReplayStale => {
                if let Some((old, old_token)) = stale {
                    let _ = server.sync(&old, &old_token).await;
                }
                server.sync(req, token).await
            }
            Fault::CrashServer(_) => {
                let _ = server.sync(req, token).await;
                {
                    // A request that made fewer writes than armed still ends
                    // in the crash: the armed crash never outlives it.
                    self.net.gate.pass().await;
                    let mut f = self.net.store_faults.lock().unwrap();
                    if f.crash_in.take().is_some() {
                        f.dead = true;
                    }
                }
                self.net.state.lock().unwrap().restart_requested = true;
                Err(SyncError::Server {
                    status: 502,
                    message: "simulated: the server crashed".into(),
                })
            }
        }
    }
}
