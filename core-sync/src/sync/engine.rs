//! The client sync engine: every decision of syncing — what to push, when
//! to poll, how to back off, what the status is — as deterministic code with
//! no IO. Time and randomness come in as arguments, so a test can drive many
//! devices through any interleaving and replay it from a seed.
//!
//! The adapter (`super::client`) does the IO: it asks [`Engine::plan`] what
//! to send, builds the request from the store, sends it, applies what comes
//! back durably, and reports with [`Engine::on_success`] or
//! [`Engine::on_failure`]. The cursor it persists is the one the engine
//! hands back only after everything it covers was applied.
//!
//! The cursor belongs to the server's epoch ([`Engine::epoch`]). When a
//! response says the server's data does not continue it
//! ([`Engine::must_start_over`]: restored from an older copy), the adapter
//! forgets what it knew of the server and the engine starts over
//! ([`Engine::start_over`]): cursor 0, every document pending.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::ids::DocId;
use crate::model::Millis;
use crate::sync::bounds::MAX_REQUEST_DOCS;
use crate::sync::protocol::{PushStatus, SyncResponse};

/// Polling and backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Poll interval while a provider job this device cares about runs.
    pub fast_poll: Duration,
    /// First idle poll interval; doubles while nothing changes...
    pub idle_poll_min: Duration,
    /// ...up to this.
    pub idle_poll_max: Duration,
    /// First retry delay after a failure; doubles per failure, with jitter...
    pub backoff_base: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// Most documents pushed in one request (never more than the
    /// protocol's [`MAX_REQUEST_DOCS`], resyncs included).
    pub max_push_docs: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            fast_poll: Duration::from_millis(250),
            idle_poll_min: Duration::from_secs(2),
            // A server that holds long polls answers when something changes
            // whatever this is; one that does not (Lambda, where a held
            // second is billed) is asked this often by an idle device: 60 s
            // keeps an idle device under $0.10 a month on AWS (ARCHITECTURE.md,
            // "What an idle device costs on AWS").
            idle_poll_max: Duration::from_secs(60),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            max_push_docs: 200,
        }
    }
}

/// What a UI shows about sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    pub state: SyncState,
    /// Documents with changes the server may lack.
    pub pending: usize,
    pub last_synced_at: Option<Millis>,
    pub last_error: Option<String>,
    /// Documents the server refused, with its reason: set aside (the others
    /// sync) and offered again once the refusal may have changed.
    pub refused: BTreeMap<DocId, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// The last attempt failed; retrying with backoff.
    Offline,
    /// A request is under way, or more work is queued.
    Syncing,
    /// Everything local is on the server and the last poll succeeded.
    Synced,
}

/// One request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub feed_cursor: u64,
    /// The epoch `feed_cursor` belongs to (0: none yet).
    pub epoch: u64,
    /// Documents whose changes to push (the adapter computes the bytes).
    pub push: Vec<DocId>,
    /// Documents to ask for in full.
    pub resync: Vec<DocId>,
    /// Generation of each pushed document when planned: a document edited
    /// again while the request was in flight stays pending.
    generations: Vec<u64>,
}

impl Plan {
    /// Pushes only the documents `keep` says (the others stay pending for
    /// a later request).
    pub fn retain_push(&mut self, keep: impl Fn(&DocId) -> bool) {
        let (push, generations) = self
            .push
            .drain(..)
            .zip(self.generations.drain(..))
            .filter(|(d, _)| keep(d))
            .unzip();
        self.push = push;
        self.generations = generations;
    }
}

/// What the adapter found while applying a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Documents that still miss dependencies after applying: ask in full.
    pub gaps: Vec<DocId>,
    /// Whether any applied or pushed document has a provider job queued or
    /// running (poll fast until it finishes).
    pub jobs_active: bool,
}

/// What a refused request teaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The one document the request pushed is set aside: the adapter
    /// records it durably.
    Doc(DocId),
    /// Several were pushed: the next requests push halves, to find the one
    /// refused while the others go through.
    Narrowed,
    /// Nothing was pushed: the request itself is refused (an ordinary
    /// failure).
    Request,
}

/// A document the server refused: why, and from when it is offered again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refused {
    reason: String,
    retry_at: Millis,
}

/// When to run next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// More to do right away (a paged response, pushes left).
    Now,
    After(Duration),
}

#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    feed_cursor: u64,
    /// The server's epoch the cursor belongs to (0: none heard yet).
    epoch: u64,
    /// Pending documents with their edit generation.
    pending: BTreeMap<DocId, u64>,
    resync: BTreeSet<DocId>,
    generation: u64,
    failures: u32,
    quiet_polls: u32,
    jobs_active: bool,
    more: bool,
    in_flight: bool,
    last_synced_at: Option<Millis>,
    last_error: Option<String>,
    refused: BTreeMap<DocId, Refused>,
    /// While looking for a refused document: most documents per request.
    narrow: Option<usize>,
}

impl Engine {
    /// An engine resuming from a persisted cursor and its epoch, with the
    /// documents the store says have unsynced changes.
    pub fn new(
        config: EngineConfig,
        feed_cursor: u64,
        epoch: u64,
        pending: impl IntoIterator<Item = DocId>,
    ) -> Self {
        let mut engine = Engine {
            config,
            feed_cursor,
            epoch,
            pending: BTreeMap::new(),
            resync: BTreeSet::new(),
            generation: 0,
            failures: 0,
            quiet_polls: 0,
            jobs_active: false,
            more: false,
            in_flight: false,
            last_synced_at: None,
            last_error: None,
            refused: BTreeMap::new(),
            narrow: None,
        };
        for doc in pending {
            engine.local_change(doc);
        }
        engine
    }

    pub fn feed_cursor(&self) -> u64 {
        self.feed_cursor
    }

    /// The server epoch the cursor belongs to (0: none heard yet).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether `resp` says the server's data does not continue what this
    /// client knows of it (the server says so, or names another epoch
    /// than the one the cursor belongs to). The adapter then forgets what
    /// it knew of the server and calls [`Self::start_over`] instead of
    /// [`Self::on_success`].
    pub fn must_start_over(&self, resp: &SyncResponse) -> bool {
        resp.start_over || (resp.epoch != 0 && self.epoch != 0 && resp.epoch != self.epoch)
    }

    /// Starts over in `epoch`: cursor 0, every document in `docs` pending
    /// (pushing one the server already has stores nothing), nothing asked
    /// in full. Returns when to run next: at once.
    pub fn start_over(
        &mut self,
        epoch: u64,
        docs: impl IntoIterator<Item = DocId>,
        now: Millis,
    ) -> Next {
        self.in_flight = false;
        self.failures = 0;
        self.last_error = None;
        self.last_synced_at = Some(now);
        self.epoch = epoch;
        self.feed_cursor = 0;
        self.resync.clear();
        self.more = false;
        for doc in docs {
            self.local_change(doc);
        }
        Next::Now
    }

    /// A document changed locally (and durably): it must be pushed.
    pub fn local_change(&mut self, doc: DocId) {
        self.generation += 1;
        self.pending.insert(doc, self.generation);
        self.quiet_polls = 0;
    }

    /// The document left the store (the server purged it): nothing of it
    /// is to be pushed or asked for any more.
    pub fn forget(&mut self, doc: &DocId) {
        self.pending.remove(doc);
        self.resync.remove(doc);
    }

    /// Whether there is work that should not wait for the next poll.
    pub fn has_work(&self) -> bool {
        self.pending.keys().any(|d| !self.refused.contains_key(d))
            || !self.resync.is_empty()
            || self.more
    }

    /// `doc` was refused by the server (`reason`); it is not pushed again
    /// before `retry_at` (restored from the store at start, or recorded
    /// after [`Engine::on_refused`]).
    pub fn set_refused(&mut self, doc: DocId, reason: String, retry_at: Millis) {
        self.refused.insert(doc, Refused { reason, retry_at });
    }

    /// The next request at time `now`: pending documents, except those set
    /// aside whose retry time has not come, and documents to resync; never
    /// more than [`MAX_REQUEST_DOCS`] together (the rest wait their turn).
    pub fn plan(&mut self, now: Millis) -> Plan {
        self.in_flight = true;
        self.refused.retain(|_, r| r.retry_at > now);
        let most = self
            .narrow
            .unwrap_or(self.config.max_push_docs)
            .min(self.config.max_push_docs)
            .clamp(1, MAX_REQUEST_DOCS);
        let refused = &self.refused;
        let (push, generations): (Vec<DocId>, Vec<u64>) = self
            .pending
            .iter()
            .filter(|(d, _)| !refused.contains_key(*d))
            .take(most)
            .map(|(d, g)| (d.clone(), *g))
            .unzip();
        let resync = self
            .resync
            .iter()
            .take(MAX_REQUEST_DOCS - push.len())
            .cloned()
            .collect();
        Plan {
            feed_cursor: self.feed_cursor,
            epoch: self.epoch,
            push,
            resync,
            generations,
        }
    }

    /// A request about to be sent (status shows `Syncing` meanwhile).
    pub fn mark_in_flight(&mut self) {
        self.in_flight = true;
    }

    /// The request of the last plan was given up before it reached the
    /// server's answer (an idle poll cut short); nothing changed.
    pub fn abandon(&mut self) {
        self.in_flight = false;
    }

    /// The request of `plan` succeeded and its response was applied
    /// durably; returns when to run next.
    pub fn on_success(
        &mut self,
        plan: &Plan,
        resp: &SyncResponse,
        applied: &Applied,
        now: Millis,
    ) -> Next {
        self.in_flight = false;
        self.failures = 0;
        self.last_error = None;
        self.last_synced_at = Some(now);
        self.narrow = None;
        for (doc, generation) in plan.push.iter().zip(&plan.generations) {
            let outcome = resp.pushed.iter().find(|o| &o.doc_id == doc);
            // A purged document is dropped by the adapter: nothing to push.
            let accepted = outcome
                .is_some_and(|o| matches!(o.status, PushStatus::Accepted | PushStatus::Purged));
            // Missing dependencies (or no answer): stays pending; the adapter
            // recomputes the push from the server heads it now knows.
            if accepted && self.pending.get(doc) == Some(generation) {
                self.pending.remove(doc);
            }
        }
        for doc in &plan.resync {
            if resp.docs.iter().any(|d| &d.doc_id == doc) {
                self.resync.remove(doc);
            }
        }
        self.resync.extend(applied.gaps.iter().cloned());
        // Never move the cursor backwards, whatever a server says (a
        // server whose data went back says so: `must_start_over`).
        self.feed_cursor = self.feed_cursor.max(resp.feed_cursor);
        if resp.epoch != 0 {
            self.epoch = resp.epoch;
        }
        self.more = resp.more;
        self.jobs_active = applied.jobs_active;
        if resp.docs.is_empty() && plan.push.is_empty() {
            self.quiet_polls = self.quiet_polls.saturating_add(1);
        } else {
            self.quiet_polls = 0;
        }
        if self.has_work() {
            Next::Now
        } else {
            Next::After(self.poll_interval())
        }
    }

    /// The server refused the request of `plan` (a 4xx that a retry of the
    /// same request would meet again). One pushed document: it is set aside
    /// until `now + retry_after` and the others go on; several: the next
    /// requests push half as many, until the refused one is alone. Nothing
    /// pushed: see [`Refusal::Request`] (call [`Engine::on_failure`]).
    pub fn on_refused(
        &mut self,
        plan: &Plan,
        reason: &str,
        now: Millis,
        retry_after: Millis,
    ) -> Refusal {
        self.in_flight = false;
        match plan.push.as_slice() {
            [] => Refusal::Request,
            [doc] => {
                self.narrow = None;
                self.set_refused(doc.clone(), reason.to_owned(), now + retry_after);
                Refusal::Doc(doc.clone())
            }
            many => {
                self.narrow = Some(many.len() / 2);
                Refusal::Narrowed
            }
        }
    }

    /// The request failed (network, 5xx, timeout). Returns the backoff
    /// delay: exponential with full jitter, from `jitter` in [0, 1).
    pub fn on_failure(&mut self, error: impl Into<String>, jitter: f64) -> Duration {
        self.in_flight = false;
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error.into());
        let exp = self
            .config
            .backoff_base
            .saturating_mul(1 << (self.failures - 1).min(20));
        let cap = exp.min(self.config.backoff_max);
        // Full jitter, but never less than a tenth of the step, so a burst of
        // failures cannot spin.
        cap.mul_f64(0.1 + 0.9 * jitter.clamp(0.0, 1.0))
    }

    /// The poll interval when idle: fast while jobs run, otherwise growing
    /// with each quiet poll.
    pub fn poll_interval(&self) -> Duration {
        if self.jobs_active {
            return self.config.fast_poll;
        }
        let grown = self
            .config
            .idle_poll_min
            .saturating_mul(1 << self.quiet_polls.min(16));
        grown.min(self.config.idle_poll_max)
    }

    pub fn status(&self) -> SyncStatus {
        let state = if self.failures > 0 {
            SyncState::Offline
        } else if self.in_flight || self.has_work() || self.last_synced_at.is_none() {
            SyncState::Syncing
        } else {
            SyncState::Synced
        };
        SyncStatus {
            state,
            pending: self.pending.len(),
            last_synced_at: self.last_synced_at,
            last_error: self.last_error.clone(),
            refused: self
                .refused
                .iter()
                .map(|(d, r)| (d.clone(), r.reason.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::protocol::{DocUpdate, PushOutcome};

    fn ok_response(plan: &Plan, cursor: u64) -> SyncResponse {
        SyncResponse {
            purged: Vec::new(),
            feed_cursor: cursor,
            docs: vec![],
            pushed: plan
                .push
                .iter()
                .map(|d| PushOutcome {
                    doc_id: d.clone(),
                    status: PushStatus::Accepted,
                    server_heads: vec![],
                })
                .collect(),
            more: false,
            epoch: 7,
            start_over: false,
        }
    }

    #[test]
    fn a_server_whose_data_went_back_makes_the_engine_start_over() {
        let (a, b, c) = (DocId::random(), DocId::random(), DocId::random());
        // A device that synced with epoch 7 up to cursor 40, one edit pending.
        let mut e = Engine::new(EngineConfig::default(), 40, 7, [a.clone()]);
        let plan = e.plan(0);
        assert_eq!((plan.feed_cursor, plan.epoch), (40, 7));
        let same = ok_response(&plan, 42);
        assert!(!e.must_start_over(&same));
        e.on_success(&plan, &same, &Applied::default(), 1_000);
        assert_eq!((e.feed_cursor(), e.epoch()), (42, 7));

        // The server says start over (or names another epoch): cursor 0 in
        // the new epoch, every document pending, asked again at once.
        e.local_change(b.clone());
        let plan = e.plan(0);
        let told = SyncResponse {
            epoch: 9,
            start_over: true,
            ..SyncResponse::default()
        };
        let other_epoch = SyncResponse {
            epoch: 9,
            ..ok_response(&plan, 50)
        };
        let from_an_old_server = SyncResponse {
            epoch: 0,
            ..ok_response(&plan, 50)
        };
        assert!(e.must_start_over(&told) && e.must_start_over(&other_epoch));
        assert!(!e.must_start_over(&from_an_old_server));
        let next = e.start_over(9, [a.clone(), b.clone(), c.clone()], 2_000);
        assert_eq!(next, Next::Now);
        assert_eq!((e.feed_cursor(), e.epoch(), e.status().pending), (0, 9, 3));
        let plan = e.plan(0);
        assert_eq!((plan.feed_cursor, plan.epoch), (0, 9));
        assert_eq!(plan.push, {
            let mut all = vec![a, b, c];
            all.sort();
            all
        });
        let mut resp = ok_response(&plan, 12);
        resp.epoch = 9;
        e.on_success(&plan, &resp, &Applied::default(), 3_000);
        assert_eq!((e.feed_cursor(), e.epoch(), e.status().pending), (12, 9, 0));
    }

    #[test]
    fn the_first_epoch_heard_is_adopted() {
        let mut e = Engine::new(EngineConfig::default(), 5, 0, []);
        let plan = e.plan(0);
        let resp = ok_response(&plan, 6);
        assert!(!e.must_start_over(&resp), "nothing to compare with");
        e.on_success(&plan, &resp, &Applied::default(), 0);
        assert_eq!((e.feed_cursor(), e.epoch()), (6, 7));
    }

    #[test]
    fn pushes_pending_docs_and_keeps_ones_edited_in_flight() {
        let (a, b) = (DocId::random(), DocId::random());
        let mut e = Engine::new(EngineConfig::default(), 0, 0, [a.clone(), b.clone()]);
        assert_eq!(e.status().pending, 2);
        let plan = e.plan(0);
        assert_eq!(plan.push.len(), 2);
        assert_eq!(e.status().state, SyncState::Syncing);
        e.local_change(b.clone()); // edited while the request flies
        let next = e.on_success(&plan, &ok_response(&plan, 5), &Applied::default(), 1000);
        assert_eq!(next, Next::Now);
        assert_eq!(e.status().pending, 1);
        let plan = e.plan(0);
        assert_eq!(plan.push, vec![b]);
        assert_eq!(
            e.on_success(&plan, &ok_response(&plan, 6), &Applied::default(), 2000),
            Next::After(Duration::from_secs(2))
        );
        assert_eq!(
            e.status(),
            SyncStatus {
                state: SyncState::Synced,
                pending: 0,
                last_synced_at: Some(2000),
                last_error: None,
                refused: BTreeMap::new(),
            }
        );
        assert_eq!(e.feed_cursor(), 6);
    }

    #[test]
    fn refused_documents_are_found_by_halving_and_set_aside_while_the_others_sync() {
        const HOUR: Millis = 3_600_000;
        // (documents pending, which the server refuses, most requests it may take)
        let cases: [(usize, &[usize], usize); 5] = [
            (1, &[0], 1),
            (8, &[5], 8),
            (8, &[0, 7], 12),
            (200, &[13], 24),
            (5, &[0, 1, 2, 3, 4], 12),
        ];
        for (n, bad, most) in cases {
            // In the engine's order (by id), so positions are the table's.
            let mut docs: Vec<DocId> = (0..n).map(|_| DocId::random()).collect();
            docs.sort();
            let refused: BTreeSet<&DocId> = bad.iter().map(|i| &docs[*i]).collect();
            let mut e = Engine::new(EngineConfig::default(), 0, 0, docs.iter().cloned());
            let mut requests = 0;
            let mut set_aside = BTreeSet::new();
            while e.has_work() {
                requests += 1;
                assert!(requests <= most, "{n} docs, {bad:?}: {requests} requests");
                let plan = e.plan(1_000);
                if plan.push.iter().any(|d| refused.contains(d)) {
                    match e.on_refused(&plan, "413 too large", 1_000, HOUR) {
                        Refusal::Doc(d) => assert!(set_aside.insert(d)),
                        Refusal::Narrowed => assert!(plan.push.len() > 1),
                        Refusal::Request => panic!("a push is never the request's fault"),
                    }
                } else {
                    e.on_success(&plan, &ok_response(&plan, 1), &Applied::default(), 1_000);
                }
            }
            assert_eq!(set_aside.iter().collect::<BTreeSet<_>>(), refused);
            let status = e.status();
            assert_eq!(status.pending, bad.len(), "refused ones stay pending");
            assert_eq!(status.refused.len(), bad.len());
            assert!(status.refused.values().all(|r| r == "413 too large"));
            // Offered again once the hour has passed, not before.
            assert!(e.plan(1_000 + HOUR - 1).push.is_empty());
            e.abandon();
            let again = e.plan(1_000 + HOUR);
            assert_eq!(
                again.push.len(),
                bad.len().min(EngineConfig::default().max_push_docs)
            );
            assert!(e.status().refused.is_empty());
        }
    }

    #[test]
    fn no_plan_names_more_documents_than_a_request_may_and_all_get_their_turn() {
        // (documents pending, documents to resync, max_push_docs configured)
        let cases = [
            (1_200, 0, usize::MAX),
            (1_200, 0, 200),
            (10, 900, usize::MAX),
            (700, 700, 600),
        ];
        for (pending, gaps, max_push_docs) in cases {
            let docs: Vec<DocId> = (0..pending).map(|_| DocId::random()).collect();
            let cfg = EngineConfig {
                max_push_docs,
                ..EngineConfig::default()
            };
            let mut e = Engine::new(cfg, 0, 0, docs.iter().cloned());
            let first = e.plan(0);
            let applied = Applied {
                gaps: (0..gaps).map(|_| DocId::random()).collect(),
                jobs_active: false,
            };
            e.on_success(&first, &ok_response(&first, 1), &applied, 0);
            let mut pushed: BTreeSet<DocId> = first.push.iter().cloned().collect();
            let mut resynced = 0;
            let mut requests = 1;
            while e.has_work() {
                requests += 1;
                assert!(requests < 100, "{pending}, {gaps}: no progress");
                let plan = e.plan(0);
                assert!(
                    plan.push.len() + plan.resync.len() <= MAX_REQUEST_DOCS,
                    "{pending}, {gaps}: {} + {}",
                    plan.push.len(),
                    plan.resync.len()
                );
                let mut resp = ok_response(&plan, 1);
                resp.docs = plan
                    .resync
                    .iter()
                    .map(|d| DocUpdate {
                        doc_id: d.clone(),
                        chunks: vec![],
                        server_heads: vec![],
                    })
                    .collect();
                resynced += plan.resync.len();
                pushed.extend(plan.push.iter().cloned());
                e.on_success(&plan, &resp, &Applied::default(), 0);
            }
            assert_eq!(pushed.len(), pending, "every document was pushed");
            assert_eq!(resynced, gaps, "every gap was resynced");
        }
    }

    #[test]
    fn missing_deps_keep_a_doc_pending_and_gaps_ask_for_resync() {
        let a = DocId::random();
        let mut e = Engine::new(EngineConfig::default(), 3, 0, [a.clone()]);
        let plan = e.plan(0);
        let mut resp = ok_response(&plan, 2); // a server answering an older cursor
        resp.pushed[0].status = PushStatus::MissingDeps;
        let applied = Applied {
            gaps: vec![a.clone()],
            jobs_active: false,
        };
        assert_eq!(e.on_success(&plan, &resp, &applied, 0), Next::Now);
        assert_eq!(e.feed_cursor(), 3, "cursor never moves back");
        let plan = e.plan(0);
        assert_eq!(plan.push, vec![a.clone()]);
        assert_eq!(plan.resync, vec![a.clone()]);
        let mut resp = ok_response(&plan, 4);
        resp.docs.push(DocUpdate {
            doc_id: a,
            chunks: vec![],
            server_heads: vec![],
        });
        e.on_success(&plan, &resp, &Applied::default(), 0);
        assert!(!e.has_work());
    }

    #[test]
    fn polls_fast_during_jobs_back_off_when_idle_and_when_offline() {
        let cfg = EngineConfig::default();
        let mut e = Engine::new(cfg, 0, 0, []);
        let mut delays = vec![];
        for _ in 0..6 {
            let plan = e.plan(0);
            match e.on_success(&plan, &ok_response(&plan, 0), &Applied::default(), 0) {
                Next::After(d) => delays.push(d.as_secs()),
                Next::Now => panic!("idle engine has no work"),
            }
        }
        assert_eq!(delays, [4, 8, 16, 32, 60, 60]);
        let plan = e.plan(0);
        let jobs = Applied {
            gaps: vec![],
            jobs_active: true,
        };
        assert_eq!(
            e.on_success(&plan, &ok_response(&plan, 0), &jobs, 0),
            Next::After(cfg.fast_poll)
        );

        let d1 = e.on_failure("connection refused", 0.5);
        let d2 = e.on_failure("connection refused", 0.5);
        assert!(d2 > d1);
        for _ in 0..30 {
            assert!(e.on_failure("down", 1.0) <= cfg.backoff_max);
        }
        assert!(e.on_failure("down", 0.0) >= cfg.backoff_max / 10);
        let s = e.status();
        assert_eq!(s.state, SyncState::Offline);
        assert_eq!(s.last_error.as_deref(), Some("down"));
    }
}
