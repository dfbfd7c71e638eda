//! Conformance cases for provider operations: created once, keeping
//! their input, updated only by their owner; and webhook deliveries
//! counted once.

use core_sync::DocId;
use core_sync::blob::sha256_hex;

use super::{Backend, new_user};
use crate::storage::StorageError;
use crate::storage::jobs::{InputRecord, InputRoute, OpStatus, Operation};

pub(super) async fn operations_are_created_once_and_keep_their_input(b: Backend) {
    let ops = &*b.ops;
    let (a, bob) = (new_user(), new_user());
    let id = format!("op-{}", uuid::Uuid::new_v4());
    let mut op = Operation {
        id: id.clone(),
        user: a.clone(),
        doc_id: DocId::random(),
        status: OpStatus::Queued,
        provider_ref: None,
        attempts: 0,
        error: None,
        input: None,
        created_at: 1_000,
        updated_at: 1_000,
    };
    assert_eq!(ops.create_operation(&op).await, Ok(true));
    assert_eq!(ops.create_operation(&op).await, Ok(false), "created once");
    assert_eq!(ops.get_operation(&a, &id).await, Ok(Some(op.clone())));
    assert_eq!(ops.get_operation(&bob, &id).await, Ok(None), "per user");

    // Every way an input travels is kept, field for field.
    let file = InputRecord {
        route: InputRoute::ReplicateFile,
        sha256: sha256_hex(b"input"),
        bytes: 3_145_728,
        file_id: Some("cneqzikepnug6xezperrr4z55o".into()),
        url: Some("https://api.replicate.com/v1/files/cneqzikepnug6xezperrr4z55o".into()),
        expires_at: Some(86_401_000),
        deleted: false,
    };
    let records = [
        InputRecord {
            route: InputRoute::Inline,
            file_id: None,
            url: None,
            expires_at: None,
            bytes: 2_000,
            ..file.clone()
        },
        InputRecord {
            route: InputRoute::Presigned,
            file_id: None,
            url: Some("https://bucket.s3.amazonaws.com/u/sha?X-Amz-Signature=abc".into()),
            ..file.clone()
        },
        InputRecord {
            route: InputRoute::GeminiFile,
            file_id: Some("files/abc-123".into()),
            url: Some("https://generativelanguage.googleapis.com/v1beta/files/abc-123".into()),
            ..file.clone()
        },
        InputRecord {
            deleted: true,
            ..file.clone()
        },
        file,
    ];
    for (i, record) in records.into_iter().enumerate() {
        op.status = OpStatus::Running;
        op.provider_ref = Some(format!("pred-{id}"));
        op.attempts = i as u32 + 1;
        op.input = Some(record);
        op.updated_at = 2_000 + i as i64;
        ops.update_operation(&op).await.unwrap();
        assert_eq!(ops.get_operation(&a, &id).await, Ok(Some(op.clone())));
    }
    assert_eq!(
        ops.find_by_provider_ref(&format!("pred-{id}")).await,
        Ok(Some(op.clone()))
    );
    let unfinished = ops.unfinished().await.unwrap();
    assert_eq!(unfinished.iter().filter(|o| o.id == id).count(), 1);
    assert_eq!(unfinished.iter().find(|o| o.id == id), Some(&op));

    // Another user cannot touch it; finishing it keeps the input.
    let mut theirs = op.clone();
    theirs.user = bob.clone();
    assert_eq!(
        ops.update_operation(&theirs).await,
        Err(StorageError::NotFound)
    );
    op.status = OpStatus::Succeeded;
    ops.update_operation(&op).await.unwrap();
    assert_eq!(ops.get_operation(&a, &id).await, Ok(Some(op.clone())));
    assert!(!ops.unfinished().await.unwrap().iter().any(|o| o.id == id));
}

pub(super) async fn webhook_deliveries_count_once(b: Backend) {
    let ops = &*b.ops;
    let (first, second) = (
        format!("msg_{}", uuid::Uuid::new_v4()),
        format!("msg_{}", uuid::Uuid::new_v4()),
    );
    assert_eq!(ops.first_delivery(&first, 1_000).await, Ok(true));
    assert_eq!(ops.first_delivery(&first, 1_001).await, Ok(false));
    assert_eq!(ops.first_delivery(&second, 1_001).await, Ok(true));
    for bad in [String::new(), "x".repeat(257)] {
        assert!(matches!(
            ops.first_delivery(&bad, 1_000).await,
            Err(StorageError::Invalid(_))
        ));
    }
    let unknown = format!("pred-{}", uuid::Uuid::new_v4());
    assert_eq!(ops.find_by_provider_ref(&unknown).await, Ok(None));
}
