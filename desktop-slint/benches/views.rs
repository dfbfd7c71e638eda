//! The window's responsiveness with a big store, headless (Slint's testing
//! backend with the software renderer; every measurement ends when the
//! window has applied the update and rendered a frame):
//!
//! - the command palette: keystroke to results, 5,000 assets (goal 16 ms);
//! - the cost dashboard: filter change to repaint over 100,000 cost events
//!   (goal 100 ms);
//! - opening a 5,000-message asset: click to the timeline shown (goal
//!   150 ms), the first time and again (the document kept from before);
//! - a frame with nothing changed: the software renderer's floor under
//!   every number above.
//!
//! Each row gives the time until the window holds the update ("applied")
//! and until a frame showing it is rendered ("drawn").
//!
//! Prints a table. `cargo bench -p desktop-slint --bench views [-- --quick]`

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use core_sync::ids::DocId;
use core_sync::model::{AssetDoc, NewCostEvent, NewMessage};
use core_sync::store::{Store, StoreOptions};
use desktop_slint::app;
use desktop_slint::backend::BackendOptions;
use desktop_slint::config::{Config, Mode};
use desktop_slint::controller::ControllerConfig;
use desktop_slint::ui::{self, AppWindow, Bridge};
use i_slint_backend_testing::{TestingBackend, TestingBackendOptions};
use slint::{ComponentHandle, Model};

const ASSETS: usize = 5000;
const COST_ASSETS: usize = 1000;
const EVENTS_PER_ASSET: usize = 100;
const MESSAGES: usize = 5000;
const DAY: i64 = 86_400_000;
const BIG: usize = 6;

const MODELS: [(&str, &str); 4] = [
    ("google", "gemini-3.1-flash-image"),
    ("google", "gemini-2.5-flash-image"),
    ("replicate", "nightmareai/real-esrgan"),
    ("replicate", "851-labs/background-remover"),
];

/// 5,000 assets (1,000 of them with 100 cost events each, over 90 days),
/// and `BIG` assets of 5,000 messages. Returns the big ones' ids.
async fn seed(dir: &std::path::Path) -> Vec<DocId> {
    let store = Store::open(dir, StoreOptions::default()).await.unwrap();
    let now = core_sync::now_millis();
    for i in 0..ASSETS {
        let mut doc = AssetDoc::create(&format!("Harbour study {i:04}"), now - i as i64 * 60_000);
        let m = doc
            .append_message(
                NewMessage::tool_request("edit", "google", "g", "warmer"),
                now,
            )
            .unwrap();
        if i < COST_ASSETS {
            for e in 0..EVENTS_PER_ASSET {
                let (provider, model) = MODELS[(i + e) % MODELS.len()];
                doc.record_cost(
                    NewCostEvent {
                        provider: provider.into(),
                        model: model.into(),
                        units: 1290.0,
                        unit: "tokens".into(),
                        cost_nano_usd: 38_700_000 + (e as i64 * 7919) % 1_000_000,
                        message_id: Some(m.clone()),
                    },
                    now - ((i * 31 + e * 17) as i64 % 90) * DAY,
                )
                .unwrap();
            }
        }
        store.insert(DocId::random(), doc).await.unwrap();
    }
    let mut big = Vec::new();
    for b in 0..BIG {
        let mut doc = AssetDoc::create(&format!("Five thousand messages {b}"), now);
        for i in 0..MESSAGES {
            if i % 5 == 1 {
                doc.append_message(
                    NewMessage::tool_request(
                        "edit",
                        "google",
                        "gemini-3.1-flash-image",
                        format!("edit {i}"),
                    ),
                    now,
                )
                .unwrap();
            } else {
                doc.append_message(NewMessage::user(format!("note {i}: a little warmer")), now)
                    .unwrap();
            }
        }
        big.push(store.insert(DocId::random(), doc).await.unwrap().id);
    }
    store.close().await;
    big
}

async fn yield_now() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    slint::Timer::single_shot(Duration::ZERO, move || {
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// Waits (60 s at most) for an applied batch of updates after which `ok`
/// holds, then renders a frame; returns the times since `started` to both,
/// in ms.
async fn settle(
    w: &AppWindow,
    batches: &Rc<Cell<u64>>,
    seen: u64,
    started: Instant,
    ok: impl Fn(&AppWindow) -> bool,
) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if batches.get() > seen && ok(w) {
            let applied = started.elapsed();
            let _ = w.window().take_snapshot();
            return (ms(applied), ms(started.elapsed()));
        }
        assert!(Instant::now() < deadline, "the window never got there");
        yield_now().await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (p(0.5), p(0.9), v[v.len() - 1])
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 3 } else { 10 };
    slint::platform::set_platform(Box::new(TestingBackend::new(TestingBackendOptions {
        mock_time: false,
        threading: true,
        renderer_name: Some("software".into()),
    })))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let t = Instant::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let big = rt.block_on(seed(&data));
    eprintln!(
        "seeded {ASSETS} assets, {} cost events, {BIG} of {MESSAGES} messages in {:.1} s",
        COST_ASSETS * EVENTS_PER_ASSET,
        t.elapsed().as_secs_f64()
    );

    let window = AppWindow::new().unwrap();
    window
        .window()
        .set_size(slint::LogicalSize::new(1360.0, 840.0));
    let batches = Rc::new(Cell::new(0u64));
    {
        let b = batches.clone();
        ui::after_updates(move |_| b.set(b.get() + 1));
    }
    let worker = app::start(
        &window,
        Config::plain(data, Mode::Offline),
        BackendOptions::default(),
        ControllerConfig::default(),
    )
    .unwrap();
    window.show().unwrap();
    let weak = window.as_weak();
    type Row = (String, Vec<(f64, f64)>, &'static str);
    let results: Rc<std::cell::RefCell<Vec<Row>>> = Rc::default();
    let out = results.clone();
    slint::spawn_local(async move {
        let w = weak.upgrade().unwrap();
        let b = || w.global::<Bridge>();
        let started = Instant::now();
        settle(&w, &batches, 0, started, |w| {
            w.global::<Bridge>().get_assets().row_count() == ASSETS + BIG
        })
        .await;

        // The palette: open it, then type, timing each keystroke.
        let mut keys = Vec::new();
        for _ in 0..rounds {
            let seen = batches.get();
            b().invoke_palette_query("".into());
            settle(&w, &batches, seen, Instant::now(), |w| {
                w.global::<Bridge>().get_palette_rows().row_count() > 0
            })
            .await;
            let query = "hrbr stdy 4242";
            for n in 1..=query.len() {
                let q = &query[..n];
                let seen = batches.get();
                let t = Instant::now();
                b().invoke_palette_query(q.into());
                keys.push(settle(&w, &batches, seen, t, |_| true).await);
            }
        }
        assert_eq!(
            b().get_palette_rows().row_data(0).unwrap().title,
            "Harbour study 4242"
        );
        out.borrow_mut().push((
            format!("palette keystroke → results ({ASSETS} assets)"),
            keys,
            "16 ms",
        ));

        // The dashboard: read every cost once, then change filters.
        let seen = batches.get();
        let t = Instant::now();
        b().invoke_show_dashboard(true);
        let first = settle(&w, &batches, seen, t, |w| {
            w.global::<Bridge>().get_dash_loading().is_empty()
                && w.global::<Bridge>().get_dash_events().row_count() > 0
        })
        .await;
        eprintln!(
            "dashboard: costs of {} assets read in {:.0} ms",
            ASSETS + BIG,
            first.1
        );
        let filters: [(&str, i32); 6] = [
            ("all", 0),
            ("7d", 0),
            ("30d", 2),
            ("month", 1),
            ("all", 3),
            ("30d", 0),
        ];
        let mut filter_times = Vec::new();
        for _ in 0..rounds {
            for (preset, model) in filters {
                let seen = batches.get();
                let t = Instant::now();
                b().invoke_dashboard_filter("".into(), "".into(), model, preset.into());
                filter_times.push(settle(&w, &batches, seen, t, |_| true).await);
            }
        }
        let total_events = {
            let seen = batches.get();
            b().invoke_dashboard_filter("".into(), "".into(), 0, "all".into());
            settle(&w, &batches, seen, Instant::now(), |_| true).await;
            b().get_dash_events().row_count()
        };
        assert_eq!(total_events, COST_ASSETS * EVENTS_PER_ASSET);
        out.borrow_mut().push((
            format!("dashboard filter change → repaint ({total_events} cost events)"),
            filter_times,
            "100 ms",
        ));
        b().invoke_show_dashboard(false);

        // Opening a 5,000-message asset: click to the timeline shown, the
        // first time, then again.
        let open = |id: String| {
            let w = w.clone_strong();
            let batches = batches.clone();
            async move {
                let seen = batches.get();
                let t = Instant::now();
                w.global::<Bridge>().invoke_select_asset(id.clone().into());
                settle(&w, &batches, seen, t, |w| {
                    let b = w.global::<Bridge>();
                    b.get_has_asset()
                        && b.get_selected_asset() == id.as_str()
                        && b.get_earlier() > 0
                })
                .await
            }
        };
        let mut first_opens = Vec::new();
        for id in &big {
            first_opens.push(open(id.to_string()).await);
        }
        out.borrow_mut().push((
            format!("open a {MESSAGES}-message asset → timeline shown (first time)"),
            first_opens,
            "150 ms",
        ));
        let mut reopens = Vec::new();
        for r in 0..rounds {
            reopens.push(open(big[r % 2].to_string()).await);
        }
        out.borrow_mut().push((
            "open it again → timeline shown".to_owned(),
            reopens,
            "150 ms",
        ));
        let mut frames = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            let _ = w.window().take_snapshot();
            let f = ms(t.elapsed());
            frames.push((0.0, f));
        }
        out.borrow_mut()
            .push(("a frame, nothing changed (the floor)".into(), frames, "—"));
        slint::quit_event_loop().unwrap();
    })
    .unwrap();
    slint::run_event_loop().unwrap();
    worker.stop();

    println!(
        "\nThe window headless (1360×840, software renderer), {rounds} rounds; applied / drawn\n"
    );
    println!("| measurement | median | p90 | max | goal |");
    println!("|---|---:|---:|---:|---:|");
    for (what, v, goal) in results.borrow().iter() {
        let (am, ap, ax) = stats(v.iter().map(|x| x.0).collect());
        let (dm, dp, dx) = stats(v.iter().map(|x| x.1).collect());
        let goal = if *goal == "—" {
            "—".to_owned()
        } else {
            format!("< {goal}")
        };
        println!(
            "| {what} | {am:.1} / {dm:.1} ms | {ap:.1} / {dp:.1} ms | {ax:.1} / {dx:.1} ms | {goal} |"
        );
    }
}
