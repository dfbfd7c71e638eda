//! The system clipboard for real (arboard on an X server, Xvfb): Copy image
//! puts the full-size pixels where another program can read them, and
//! paste takes what another program put there.

mod common;

#[path = "support/xvfb.rs"]
mod xvfb;

use std::sync::Arc;

use common::local;
use common::ports::test_config;
use common::ui::fixture;
use desktop_slint::controller::{Clipboard, ClipboardContent, ControllerConfig, UiEvent};
use desktop_slint::images::Pixels;
use desktop_slint::platform::SystemClipboard;
use desktop_slint::tools::Keys;

#[tokio::test]
async fn copy_and_paste_through_the_x_clipboard() {
    let x = xvfb::Xvfb::start();
    // SAFETY: set before any thread of this test reads the environment
    // (arboard connects to the display named here).
    unsafe { std::env::set_var("DISPLAY", &x.display) };
    let app_clipboard = Arc::new(SystemClipboard::default());
    let l = local(
        Keys::Offline,
        ControllerConfig {
            clipboard: app_clipboard.clone(),
            ..test_config()
        },
    )
    .await;
    l.view.wait("start", |s| s.composer.is_some()).await;
    l.send(UiEvent::ImportFile(fixture("harbour.jpg")));
    l.view.wait("the asset", |s| s.versions().len() == 1).await;

    // Copy: another program (another clipboard client) reads the image.
    l.send(UiEvent::CopyImage(None));
    l.view
        .wait("copied", |s| s.info.starts_with("Copied"))
        .await;
    let other = SystemClipboard::default();
    let read = tokio::task::spawn_blocking(move || other.read())
        .await
        .unwrap();
    match read {
        Ok(ClipboardContent::Image(px)) => assert_eq!((px.width, px.height), (800, 600)),
        other => panic!("the other program read {other:?}"),
    }

    // Paste: what another program copied becomes an asset.
    let other = SystemClipboard::default();
    let px = Pixels {
        width: 20,
        height: 10,
        rgba: (0..20 * 10 * 4).map(|i| (i % 251) as u8).collect(),
    };
    let copy = px.clone();
    tokio::task::spawn_blocking(move || {
        other.write_image(&copy).unwrap();
        // The other program keeps serving it while it lives.
        std::mem::forget(other);
    })
    .await
    .unwrap();
    l.send(UiEvent::Paste { explicit: true });
    l.view.wait("the question", |s| s.incoming.is_some()).await;
    l.send(UiEvent::IncomingAs(false));
    let s = l
        .view
        .wait("the pasted asset", |s| s.title == "Pasted image")
        .await;
    assert_eq!(s.inspector.dimensions, "20 × 10");
    drop(x);
}
