//! Conformance cases for the projections (`storage::projection`), reached
//! through `DocStore::projections`, so every backend that passes the
//! suite serves the REST API's listings and cost rollups the same way; and
//! for the count the jobs-per-hour limit reads (`JobStore::count_started_since`).

use core_sync::DocId;
use core_sync::model::BlobRef;

use super::{Backend, new_user};
use crate::storage::StorageError;
use crate::storage::jobs::{OpStatus, Operation};
use crate::storage::projection::{
    CostCursor, CostEvent, CostGroup, CostRange, DAY_MS, Listing, ListingCursor,
};

fn listing(doc: &DocId, title: &str, updated_at: i64, useq: u64) -> Listing {
    Listing {
        doc_id: doc.clone(),
        title: title.into(),
        cover: Some(BlobRef {
            sha256: "ab".repeat(32),
            mime: "image/png".into(),
            width: 256,
            height: 128,
            bytes: 900,
        }),
        active_version_id: Some("v1".into()),
        message_count: 3,
        cost_event_count: 1,
        created_at: 10,
        updated_at,
        useq,
        trash: None,
    }
}

fn event(doc: &DocId, id: &str, ts: i64, provider: &str, model: &str, nano: i64) -> CostEvent {
    CostEvent {
        event_id: id.into(),
        doc_id: doc.clone(),
        ts,
        provider: provider.into(),
        model: model.into(),
        units: 1290.0,
        unit: "tokens".into(),
        cost_nano_usd: nano,
        message_id: Some(format!("m-{id}")),
    }
}

pub(super) async fn listings_page_newest_first(b: Backend) {
    let p = b.docs.projections();
    let u = new_user();
    assert_eq!(p.list_assets(&u, false, None, 10).await.unwrap(), vec![]);
    // Two share an update time: they are ordered by id.
    let mut docs: Vec<DocId> = (0..5).map(|_| DocId::random()).collect();
    docs[1..3].sort();
    let times = [50, 40, 40, 30, 20];
    for (d, t) in docs.iter().zip(times) {
        p.put_listing(&u, &listing(d, &format!("t{t}"), t, 1))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after: Option<ListingCursor> = None;
    loop {
        let page = p.list_assets(&u, false, after.as_ref(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(ListingCursor::from);
        seen.extend(page.into_iter().map(|l| l.doc_id));
    }
    assert_eq!(seen, docs);
    assert_eq!(p.list_assets(&u, false, None, 0).await.unwrap(), vec![]);
    let got = p.get_listing(&u, &docs[0]).await.unwrap().unwrap();
    assert_eq!(
        got,
        listing(&docs[0], "t50", 50, 1),
        "every field round-trips"
    );
}

pub(super) async fn an_older_listing_never_replaces_a_newer_one(b: Backend) {
    let p = b.docs.projections();
    let (u, d) = (new_user(), DocId::random());
    p.put_listing(&u, &listing(&d, "five", 5, 5)).await.unwrap();
    for (title, useq) in [("three", 3), ("five again", 5)] {
        p.put_listing(&u, &listing(&d, title, 9, useq))
            .await
            .unwrap();
        assert_eq!(p.get_listing(&u, &d).await.unwrap().unwrap().title, "five");
    }
    p.put_listing(&u, &listing(&d, "six", 6, 6)).await.unwrap();
    assert_eq!(p.get_listing(&u, &d).await.unwrap().unwrap().title, "six");
}

pub(super) async fn projections_are_per_user(b: Backend) {
    let p = b.docs.projections();
    let (alice, bob, d) = (new_user(), new_user(), DocId::random());
    p.put_listing(&alice, &listing(&d, "alice's", 5, 5))
        .await
        .unwrap();
    p.put_cost_events(&alice, &d, &[event(&d, "e1", 100, "google", "g", 7)])
        .await
        .unwrap();
    assert_eq!(p.get_listing(&bob, &d).await.unwrap(), None);
    assert_eq!(p.list_assets(&bob, false, None, 10).await.unwrap(), vec![]);
    // Bob's put for Alice's document changes nothing.
    p.put_listing(&bob, &listing(&d, "bob's", 9, 9))
        .await
        .unwrap();
    assert_eq!(
        p.get_listing(&alice, &d).await.unwrap().unwrap().title,
        "alice's"
    );
    assert_eq!(p.get_listing(&bob, &d).await.unwrap(), None);
    let all = CostRange::default();
    assert_eq!(p.cost_groups(&bob, &all).await.unwrap(), vec![]);
    assert_eq!(p.cost_events(&bob, &all, None, 10).await.unwrap(), vec![]);
    assert_eq!(p.cost_groups(&alice, &all).await.unwrap().len(), 1);
    // An event claiming another document is refused whole.
    let other = DocId::random();
    assert!(matches!(
        p.put_cost_events(
            &alice,
            &d,
            &[
                event(&d, "e2", 1, "g", "g", 1),
                event(&other, "e3", 1, "g", "g", 1)
            ]
        )
        .await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(
        p.cost_events(&alice, &all, None, 10).await.unwrap().len(),
        1
    );
}

pub(super) async fn cost_groups_add_up_exactly(b: Backend) {
    let p = b.docs.projections();
    let (u, d1, d2) = (new_user(), DocId::random(), DocId::random());
    let day = 20_782 * DAY_MS; // 2026-11-25
    let big = i64::MAX - 1;
    let events1 = [
        event(&d1, "a", day + 1, "google", "gemini", 38_700_000),
        event(&d1, "b", day + DAY_MS - 1, "google", "gemini", 1),
        event(&d1, "c", day + DAY_MS, "replicate", "esrgan", 2_250_000),
        event(&d1, "d", -1, "google", "gemini", 5),
    ];
    let events2 = [
        event(&d2, "a", day + 5, "google", "gemini", big),
        event(&d2, "b", day + 6, "google", "gemini", big),
    ];
    p.put_cost_events(&u, &d1, &events1).await.unwrap();
    // Recorded once: a second put changes nothing.
    p.put_cost_events(&u, &d1, &events1[..2]).await.unwrap();
    p.put_cost_events(&u, &d2, &events2).await.unwrap();
    let g = |day: i64, provider: &str, model: &str, nano: i128, events: u64| CostGroup {
        day,
        provider: provider.into(),
        model: model.into(),
        nano_usd: nano,
        events,
    };
    let all = p.cost_groups(&u, &CostRange::default()).await.unwrap();
    assert_eq!(
        all,
        vec![
            g(-1, "google", "gemini", 5, 1),
            g(20_782, "google", "gemini", 38_700_001 + 2 * big as i128, 4),
            g(20_783, "replicate", "esrgan", 2_250_000, 1),
        ]
    );
    let range = CostRange {
        from: Some(day + 1),
        to: Some(day + DAY_MS),
        models: vec!["gemini".into(), "nothing".into()],
    };
    let first_day = p.cost_groups(&u, &range).await.unwrap();
    assert_eq!(
        first_day,
        vec![g(
            20_782,
            "google",
            "gemini",
            38_700_001 + 2 * big as i128,
            4
        )]
    );
    let range = CostRange {
        from: Some(day + 2),
        to: Some(day + DAY_MS),
        models: vec!["esrgan".into()],
    };
    assert_eq!(p.cost_groups(&u, &range).await.unwrap(), vec![]);
}

pub(super) async fn cost_event_pages_are_ordered_and_complete(b: Backend) {
    let p = b.docs.projections();
    let u = new_user();
    let docs = [DocId::random(), DocId::random()];
    let mut expected = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        p.put_listing(&u, &listing(d, &format!("asset {i}"), 1, 1))
            .await
            .unwrap();
        let events: Vec<CostEvent> = (0..13)
            .map(|k| {
                let model = if k % 2 == 0 { "even" } else { "odd" };
                event(d, &format!("e{k:02}"), k / 3, "google", model, k)
            })
            .collect();
        p.put_cost_events(&u, d, &events).await.unwrap();
        expected.extend(events.into_iter().map(|e| (e, format!("asset {i}"))));
    }
    expected.sort_by(|a, b| {
        (a.0.ts, &a.0.doc_id, &a.0.event_id).cmp(&(b.0.ts, &b.0.doc_id, &b.0.event_id))
    });
    for range in [
        CostRange::default(),
        CostRange {
            from: Some(1),
            to: Some(4),
            models: vec!["odd".into()],
        },
    ] {
        let want: Vec<_> = expected.iter().filter(|(e, _)| range.contains(e)).collect();
        let mut got = Vec::new();
        let mut after: Option<CostCursor> = None;
        loop {
            let page = p.cost_events(&u, &range, after.as_ref(), 7).await.unwrap();
            assert!(page.len() <= 7);
            if page.is_empty() {
                break;
            }
            after = page.last().map(|r| CostCursor::from(&r.event));
            got.extend(page);
        }
        assert_eq!(got.len(), want.len());
        for (row, (e, title)) in got.iter().zip(want) {
            assert_eq!((&row.event, &row.asset_title), (e, title));
        }
    }
}

pub(super) async fn jobs_started_in_a_window_are_counted(b: Backend) {
    let ops = &*b.ops;
    let (u, other) = (new_user(), new_user());
    let op = |user: &str, n: i64, status: OpStatus, attempts: u32| Operation {
        id: format!("op-{}", uuid::Uuid::new_v4()),
        user: user.to_owned(),
        doc_id: DocId::random(),
        status,
        provider_ref: None,
        attempts,
        error: None,
        input: None,
        created_at: n,
        updated_at: n,
    };
    for o in [
        op(&u, 100, OpStatus::Succeeded, 1),
        op(&u, 200, OpStatus::Queued, 0),
        op(&u, 300, OpStatus::Running, 2),
        // Refused before any attempt: not a job that ran.
        op(&u, 400, OpStatus::Failed, 0),
        op(&u, 500, OpStatus::Failed, 3),
        op(&other, 600, OpStatus::Queued, 0),
    ] {
        assert_eq!(ops.create_operation(&o).await, Ok(true));
    }
    assert_eq!(ops.count_started_since(&u, 0).await, Ok(4));
    assert_eq!(ops.count_started_since(&u, 200).await, Ok(3), "inclusive");
    assert_eq!(ops.count_started_since(&u, 501).await, Ok(0));
    assert_eq!(ops.count_started_since(&other, 0).await, Ok(1));
}
