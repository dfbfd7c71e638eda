//! The trash over REST, on both backends: `GET /assets` leaves assets in
//! the trash out, `GET /assets?trashed=true` lists them with when they
//! were deleted and when they will be purged, and a restore brings an
//! asset back to the list. The deletion itself is a device's, synced.

#[path = "support/rest.rs"]
mod rest;

use core_sync::now_millis;
use rest::{Backend, Options, device, world};

const DAY_MS: i64 = 86_400_000;

/// The ids of one page of `path`, as `user` sees it.
async fn ids_of(w: &rest::World, user: &rest::User, path: &str) -> Vec<String> {
    w.get(user, path).await.json(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn ids(w: &rest::World, path: &str) -> Vec<String> {
    ids_of(w, &w.alice, path).await
}

#[tokio::test]
async fn the_trash_is_listed_apart_on_the_embedded_backend() {
    the_trash_is_listed_apart(Backend::Embedded).await;
}

#[tokio::test]
async fn the_trash_is_listed_apart_on_the_aws_backend() {
    the_trash_is_listed_apart(Backend::Aws).await;
}

async fn the_trash_is_listed_apart(backend: Backend) {
    let w = world(Options {
        backend,
        ..Options::default()
    })
    .await;
    let mut made = Vec::new();
    for t in ["one", "two", "three"] {
        made.push(w.asset_with_image(&w.alice, t).await);
    }
    let mut d = device(&w, &w.alice).await;
    d.sync.sync_until_idle().await.unwrap();
    // The device deletes two of them.
    let deleted_at = now_millis();
    for id in &made[..2] {
        let id: core_sync::DocId = id.parse().unwrap();
        let mut a = d.store.load(&id).await.unwrap();
        a.doc.delete("laptop", deleted_at).unwrap();
        d.store.save(&mut a).await.unwrap();
        d.sync.local_change(id);
    }
    d.sync.sync_until_idle().await.unwrap();

    let live = w.get(&w.alice, "/assets").await.json(200);
    assert_eq!(live["items"].as_array().unwrap().len(), 1);
    assert_eq!(live["items"][0]["id"], made[2].as_str());
    assert!(live["items"][0]["trash"].is_null());
    assert_eq!(
        ids(&w, "/assets?trashed=false").await,
        vec![made[2].clone()]
    );

    // The trash, paged like the list: when each went, when it goes for good.
    let first = w
        .get(&w.alice, "/assets?trashed=true&limit=1")
        .await
        .json(200);
    let cursor = first["nextCursor"].as_str().unwrap().to_owned();
    let second = w
        .get(
            &w.alice,
            &format!("/assets?trashed=true&limit=1&cursor={cursor}"),
        )
        .await
        .json(200);
    assert!(second["nextCursor"].is_null());
    let mut trashed = Vec::new();
    for item in [&first["items"][0], &second["items"][0]] {
        assert_eq!(item["trash"]["deletedAt"], deleted_at);
        assert_eq!(item["trash"]["purgeAt"], deleted_at + 30 * DAY_MS);
        trashed.push(item["id"].as_str().unwrap().to_owned());
    }
    trashed.sort();
    let mut expected = made[..2].to_vec();
    expected.sort();
    assert_eq!(trashed, expected);
    // The asset itself says so too; Bob sees none of it.
    let one = w
        .get(&w.alice, &format!("/assets/{}", made[0]))
        .await
        .json(200);
    assert_eq!(one["trash"]["purgeAt"], deleted_at + 30 * DAY_MS);
    assert!(ids_of(&w, &w.bob, "/assets?trashed=true").await.is_empty());

    // Restored: back in the list, out of the trash.
    let id: core_sync::DocId = made[0].parse().unwrap();
    let mut a = d.store.load(&id).await.unwrap();
    a.doc.restore(now_millis()).unwrap();
    d.store.save(&mut a).await.unwrap();
    d.sync.local_change(id);
    d.sync.sync_until_idle().await.unwrap();
    let mut live = ids(&w, "/assets").await;
    live.sort();
    let mut expected = vec![made[0].clone(), made[2].clone()];
    expected.sort();
    assert_eq!(live, expected);
    assert_eq!(ids(&w, "/assets?trashed=true").await, vec![made[1].clone()]);

    for (q, code) in [
        ("trashed=yes", "bad_trashed"),
        ("trashed=true&trashed=false", "repeated_parameter"),
    ] {
        w.get(&w.alice, &format!("/assets?{q}"))
            .await
            .problem(400, code);
    }
}
