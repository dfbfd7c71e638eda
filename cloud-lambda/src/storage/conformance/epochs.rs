//! Conformance cases for the user's feed epoch (`DocStore::epoch`,
//! `DocStore::renew_epoch`): stable until renewed, renewed once however
//! many callers race, per user.

use core_sync::DocId;

use super::{Backend, new_user};
use crate::storage::MAX_EPOCH;

pub(super) async fn an_epoch_holds_until_renewed_once(b: Backend) {
    let docs = &*b.docs;
    let (u, other) = (new_user(), new_user());
    // Made on first use, before any document, and kept by appends.
    let first = docs.epoch(&u, 0).await.unwrap();
    assert!((1..=MAX_EPOCH).contains(&first), "{first}");
    let d = DocId::random();
    docs.append(&u, &d, 0, b"x", &[]).await.unwrap();
    assert_eq!(docs.epoch(&u, 0).await.unwrap(), first);
    assert_eq!(docs.epoch(&u, first).await.unwrap(), first);
    assert_eq!(
        docs.epoch(&u, first ^ 1).await.unwrap(),
        first,
        "a wrong guess reads"
    );
    // A user whose first call is an append gets one too.
    let o = DocId::random();
    docs.append(&other, &o, 0, b"y", &[]).await.unwrap();
    let theirs = docs.epoch(&other, 0).await.unwrap();
    assert!((1..=MAX_EPOCH).contains(&theirs));

    // Racing renewals from the same epoch make one new epoch.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (docs, u) = (b.docs.clone(), u.clone());
            tokio::spawn(async move { docs.renew_epoch(&u, first).await.unwrap() })
        })
        .collect();
    let mut renewed = Vec::new();
    for t in tasks {
        renewed.push(t.await.unwrap());
    }
    let second = renewed[0];
    assert_ne!(second, first);
    assert!(renewed.iter().all(|e| *e == second), "{renewed:?}");
    assert_eq!(docs.epoch(&u, second).await.unwrap(), second);
    assert_eq!(
        docs.epoch(&u, first).await.unwrap(),
        second,
        "the old one is gone"
    );
    // Renewing from an epoch that is not current changes nothing.
    assert_eq!(docs.renew_epoch(&u, first).await.unwrap(), second);
    // Other users keep theirs; the data stays.
    assert_eq!(docs.epoch(&other, 0).await.unwrap(), theirs);
    assert_eq!(docs.user_head(&u).await.unwrap(), 1);
    assert_eq!(docs.read_all(&u, &d).await.unwrap().len(), 1);
}
