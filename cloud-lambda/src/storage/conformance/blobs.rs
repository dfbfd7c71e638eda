//! Conformance cases for blobs: verified against their hash and kept per
//! user.

use core_sync::blob::sha256_hex;

use super::{Backend, new_user};
use crate::storage::StorageError;

pub(super) async fn blobs_are_verified_and_per_user(b: Backend) {
    let blobs = &*b.blobs;
    let (a, bob) = (new_user(), new_user());
    let bytes = b"\x89PNG not really".to_vec();
    let sha = sha256_hex(&bytes);

    assert_eq!(blobs.exists(&a, &sha).await, Ok(false));
    assert_eq!(blobs.get(&a, &sha).await, Ok(None));
    blobs.put(&a, &sha, &bytes).await.unwrap();
    assert_eq!(blobs.exists(&a, &sha).await, Ok(true));
    assert_eq!(blobs.get(&a, &sha).await, Ok(Some(bytes.clone())));
    // Storing it again is harmless.
    blobs.put(&a, &sha, &bytes).await.unwrap();
    assert_eq!(blobs.get(&a, &sha).await, Ok(Some(bytes.clone())));

    // Bytes that do not hash to the name are refused; nothing is stored.
    let other = b"other bytes".to_vec();
    let other_sha = sha256_hex(&other);
    assert!(matches!(
        blobs.put(&a, &other_sha, &bytes).await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(blobs.exists(&a, &other_sha).await, Ok(false));
    assert!(matches!(
        blobs.put(&a, &sha, &other).await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(blobs.get(&a, &sha).await, Ok(Some(bytes.clone())));

    // Malformed names.
    for bad in ["", "../../etc/passwd", &sha[..63], &sha.to_uppercase()] {
        assert!(
            matches!(
                blobs.put(&a, bad, &bytes).await,
                Err(StorageError::Invalid(_))
            ),
            "{bad:?}"
        );
        assert!(matches!(
            blobs.get(&a, bad).await,
            Err(StorageError::Invalid(_))
        ));
        assert!(matches!(
            blobs.exists(&a, bad).await,
            Err(StorageError::Invalid(_))
        ));
    }

    // Another user sees none of A's blobs, and stores its own copy.
    assert_eq!(blobs.exists(&bob, &sha).await, Ok(false));
    assert_eq!(blobs.get(&bob, &sha).await, Ok(None));
    blobs.put(&bob, &other_sha, &other).await.unwrap();
    assert_eq!(blobs.exists(&a, &other_sha).await, Ok(false));
    assert_eq!(blobs.get(&bob, &other_sha).await, Ok(Some(other)));

    // The empty blob is a blob.
    let empty = sha256_hex(b"");
    blobs.put(&a, &empty, b"").await.unwrap();
    assert_eq!(blobs.get(&a, &empty).await, Ok(Some(vec![])));
}
