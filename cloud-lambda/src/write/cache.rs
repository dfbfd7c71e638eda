//! Documents kept warm: loaded asset documents by (user, document), each
//! with the log position it reflects, in a least-recently-used cache bounded
//! in bytes. A copy is only ever written through a conditional append on its
//! own position, so a cached copy can be missed or behind, never wrongly
//! trusted: a write on a copy that fell behind loses the append race and
//! catches up first.
//!
//! A writer *takes* the copy out (no lock is held while it talks to
//! storage) and *puts* it back when done; a second writer of the same
//! document meanwhile finds none and loads its own, and of two copies put
//! back the one further along the log is kept.
//!
//! A log position means nothing across data that went back (a restore, or
//! an emulator that kept nothing): when the sync endpoint tells a device to
//! start over it forgets the user's copies ([`DocCache::forget_user`]), so
//! a push of changes a stale copy holds is stored again, not taken for a
//! retry.

use std::collections::HashMap;
use std::sync::Mutex;

use core_sync::DocId;
use core_sync::model::AssetDoc;

use super::core::LogSizes;

/// A document as the log holds it up to `last_useq`.
pub struct Warm {
    pub doc: AssetDoc,
    pub last_useq: u64,
    pub sizes: LogSizes,
}

impl Warm {
    /// What the copy is charged against the budget: its stored bytes, a
    /// stand-in for its memory (an Automerge document in memory is a small
    /// multiple of its compressed size).
    fn weight(&self) -> u64 {
        self.sizes.total().max(1)
    }
}

type Key = (String, DocId);

struct Entry {
    warm: Warm,
    weight: u64,
    used: u64,
}

/// The cache. Cheap to share.
pub struct DocCache {
    budget: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    total: u64,
    tick: u64,
}

impl DocCache {
    /// A cache holding at most `budget_bytes` of documents (0 turns it off:
    /// every write loads).
    pub fn new(budget_bytes: u64) -> DocCache {
        DocCache {
            budget: budget_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Takes the warm copy of `(user, doc)` out of the cache, if there is one.
    pub fn take(&self, user: &str, doc: &DocId) -> Option<Warm> {
        let mut inner = self.inner.lock().expect("cache lock");
        let e = inner.entries.remove(&(user.to_owned(), doc.clone()))?;
        inner.total -= e.weight;
        Some(e.warm)
    }

    /// Puts a copy (back) in, unless one further along the log is there
    /// already, and evicts the least recently used documents over the budget.
    pub fn put(&self, user: &str, doc: &DocId, warm: Warm) {
        let weight = warm.weight();
        if weight > self.budget {
            return;
        }
        let mut inner = self.inner.lock().expect("cache lock");
        inner.tick += 1;
        let used = inner.tick;
        let key = (user.to_owned(), doc.clone());
        if let Some(old) = inner.entries.get(&key) {
            if old.warm.last_useq >= warm.last_useq {
                return;
            }
            let old = inner.entries.remove(&key).expect("present");
            inner.total -= old.weight;
        }
        inner.entries.insert(key, Entry { warm, weight, used });
        inner.total += weight;
        while inner.total > self.budget {
            let Some(victim) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            let e = inner.entries.remove(&victim).expect("present");
            inner.total -= e.weight;
        }
    }

    /// Forgets every copy of `user`'s documents (a copy taken out
    /// meanwhile may still come back: it is as a concurrent writer's).
    pub fn forget_user(&self, user: &str) {
        let mut inner = self.inner.lock().expect("cache lock");
        let mut freed = 0;
        inner.entries.retain(|(u, _), e| {
            let keep = u != user;
            if !keep {
                freed += e.weight;
            }
            keep
        });
        inner.total -= freed;
    }

    /// Bytes charged now (for tests and metrics).
    pub fn weight(&self) -> u64 {
        self.inner.lock().expect("cache lock").total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warm(bytes: usize, last_useq: u64) -> Warm {
        Warm {
            doc: AssetDoc::create("t", 1),
            last_useq,
            sizes: LogSizes::compacted(bytes),
        }
    }

    #[test]
    fn keeps_the_budget_by_evicting_the_least_recently_used() {
        let cache = DocCache::new(250);
        let ids: Vec<DocId> = (0..3).map(|_| DocId::random()).collect();
        for id in &ids {
            cache.put("u", id, warm(100, 1));
        }
        assert_eq!(cache.weight(), 200, "the first was evicted to make room");
        assert!(cache.take("u", &ids[0]).is_none());
        // Using the second (taking it and putting it back) makes the third
        // the oldest.
        let second = cache.take("u", &ids[1]).unwrap();
        cache.put("u", &ids[1], second);
        cache.put("u", &ids[0], warm(100, 1));
        assert!(cache.take("u", &ids[2]).is_none());
        assert!(cache.take("u", &ids[1]).is_some());
    }

    #[test]
    fn forgetting_a_user_drops_only_their_copies() {
        let cache = DocCache::new(1000);
        let (a, b) = (DocId::random(), DocId::random());
        cache.put("u", &a, warm(10, 1));
        cache.put("u", &b, warm(20, 1));
        cache.put("v", &a, warm(30, 1));
        cache.forget_user("u");
        assert_eq!(cache.weight(), 30);
        assert!(cache.take("u", &a).is_none() && cache.take("u", &b).is_none());
        assert!(cache.take("v", &a).is_some());
    }

    #[test]
    fn a_document_larger_than_the_budget_is_not_kept() {
        let cache = DocCache::new(50);
        let id = DocId::random();
        cache.put("u", &id, warm(100, 1));
        assert_eq!(cache.weight(), 0);
        assert!(cache.take("u", &id).is_none());
    }

    #[test]
    fn of_two_copies_the_one_further_along_the_log_stays() {
        let cache = DocCache::new(1000);
        let id = DocId::random();
        cache.put("u", &id, warm(10, 5));
        cache.put("u", &id, warm(10, 3));
        assert_eq!(cache.take("u", &id).unwrap().last_useq, 5);
        cache.put("u", &id, warm(10, 3));
        cache.put("u", &id, warm(10, 7));
        assert_eq!(cache.take("u", &id).unwrap().last_useq, 7);
        assert_eq!(cache.weight(), 0);
    }
}
