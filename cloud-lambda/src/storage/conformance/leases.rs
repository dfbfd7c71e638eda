//! Conformance cases for operation leases (`JobStore::take_lease` and
//! friends): what makes a job run once across processes sharing a store.

use core_sync::DocId;

use super::{Backend, new_user};
use crate::storage::StorageError;
use crate::storage::jobs::{Lease, OpStatus, Operation};

fn operation(user: &str, status: OpStatus) -> Operation {
    Operation {
        id: format!("op-{}", uuid::Uuid::new_v4()),
        user: user.to_owned(),
        doc_id: DocId::random(),
        status,
        provider_ref: Some("prediction-1".into()),
        attempts: 1,
        error: None,
        input: None,
        created_at: 1_000,
        updated_at: 1_000,
    }
}

pub(super) async fn a_lease_is_held_by_one_owner_until_it_expires(b: Backend) {
    let ops = &*b.ops;
    let (u, other) = (new_user(), new_user());
    let op = operation(&u, OpStatus::Running);
    assert_eq!(ops.create_operation(&op).await, Ok(true));
    assert_eq!(ops.lease(&u, &op.id).await, Ok(None));

    // A takes it and gets the operation as stored (its state to resume).
    let taken = ops.take_lease(&u, &op.id, "A", 100, 200).await.unwrap();
    assert_eq!(taken.as_ref(), Some(&op), "the stored operation comes back");
    let held = |owner: &str, expires_at: i64| {
        Some(Lease {
            owner: owner.into(),
            expires_at,
        })
    };
    assert_eq!(ops.lease(&u, &op.id).await, Ok(held("A", 200)));
    // While it is live, nobody else takes it; A may take it again (a
    // retried request).
    for now in [100, 199] {
        assert_eq!(ops.take_lease(&u, &op.id, "B", now, 500).await, Ok(None));
    }
    assert!(
        ops.take_lease(&u, &op.id, "A", 150, 210)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(ops.lease(&u, &op.id).await, Ok(held("A", 210)));
    // Renewed, it lasts longer.
    assert_eq!(ops.renew_lease(&u, &op.id, "A", 400).await, Ok(true));
    assert_eq!(ops.take_lease(&u, &op.id, "B", 300, 600).await, Ok(None));
    // Expired, it is taken over; the old owner can no longer renew nor
    // release it.
    assert!(
        ops.take_lease(&u, &op.id, "B", 400, 700)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(ops.renew_lease(&u, &op.id, "A", 900).await, Ok(false));
    ops.release_lease(&u, &op.id, "A").await.unwrap();
    assert_eq!(ops.lease(&u, &op.id).await, Ok(held("B", 700)));
    // Released, anyone takes it at once.
    ops.release_lease(&u, &op.id, "B").await.unwrap();
    assert_eq!(ops.lease(&u, &op.id).await, Ok(None));
    assert!(
        ops.take_lease(&u, &op.id, "C", 0, 50)
            .await
            .unwrap()
            .is_some()
    );

    // Another user's operation behaves as absent.
    assert_eq!(
        ops.take_lease(&other, &op.id, "D", 10_000, 20_000).await,
        Ok(None)
    );
    assert_eq!(ops.renew_lease(&other, &op.id, "C", 90).await, Ok(false));
    assert_eq!(ops.lease(&other, &op.id).await, Ok(None));
    assert_eq!(ops.take_lease(&u, "no-such-op", "A", 0, 1).await, Ok(None));
    assert!(matches!(
        ops.take_lease(&u, &op.id, "", 0, 1).await,
        Err(StorageError::Invalid(_))
    ));
    // Updates of the operation keep its lease.
    let mut running = op.clone();
    running.attempts = 2;
    ops.update_operation(&running).await.unwrap();
    assert_eq!(ops.lease(&u, &op.id).await, Ok(held("C", 50)));
}

pub(super) async fn finished_operations_have_no_lease_to_take(b: Backend) {
    let ops = &*b.ops;
    let u = new_user();
    for status in [OpStatus::Succeeded, OpStatus::Failed, OpStatus::Canceled] {
        let op = operation(&u, status);
        assert_eq!(ops.create_operation(&op).await, Ok(true));
        assert_eq!(ops.take_lease(&u, &op.id, "A", 0, 100).await, Ok(None));
    }
    // One that finishes while leased cannot be taken again.
    let mut op = operation(&u, OpStatus::Queued);
    assert_eq!(ops.create_operation(&op).await, Ok(true));
    assert!(
        ops.take_lease(&u, &op.id, "A", 0, 100)
            .await
            .unwrap()
            .is_some()
    );
    op.status = OpStatus::Succeeded;
    ops.update_operation(&op).await.unwrap();
    assert_eq!(
        ops.take_lease(&u, &op.id, "B", 1_000, 2_000).await,
        Ok(None)
    );
    assert_eq!(ops.take_lease(&u, &op.id, "A", 50, 2_000).await, Ok(None));
}

/// Owners racing for one free lease: exactly one wins.
pub(super) async fn racing_owners_get_one_lease(b: Backend) {
    let u = new_user();
    let op = operation(&u, OpStatus::Queued);
    assert_eq!(b.ops.create_operation(&op).await, Ok(true));
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let (ops, u, id) = (b.ops.clone(), u.clone(), op.id.clone());
            tokio::spawn(async move {
                ops.take_lease(&u, &id, &format!("runner-{i}"), 0, 60_000)
                    .await
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}
