//! The palette's entries for the app's current state (every action that
//! can run now, then the assets, then the open asset's versions), and what
//! running one means: events as if the user had clicked, or something only
//! the window can do.

use core_sync::store::AssetListing;

use super::ports::SessionState;
use super::protocol::{Screen, UiCommand, UiEvent};
use super::timeline::OpenAsset;
use crate::palette::{Action, Item};

pub fn palette_items(
    listings: &[AssetListing],
    open: Option<&OpenAsset>,
    session: &SessionState,
    screen: Screen,
) -> Vec<Item> {
    let has_image = open.is_some_and(|o| o.active_version.is_some());
    let mut items = vec![
        Item::action(Action::NewAsset, "New asset"),
        Item::action(Action::Upload, "Upload an image"),
        Item::action(Action::Paste, "Paste an image"),
        Item::action(
            if screen == Screen::Dashboard {
                Action::Open(String::new())
            } else {
                Action::Dashboard
            },
            if screen == Screen::Dashboard {
                "Back to the assets"
            } else {
                "Cost dashboard"
            },
        ),
        Item::action(Action::ExportCsv, "Export costs as CSV"),
        Item::action(Action::Search, "Search assets"),
    ];
    if open.is_some() {
        items.push(Item::action(Action::Send, "Send the request"));
        for (i, name) in [
            "Tool: edit with a prompt",
            "Tool: text to image",
            "Tool: remove background",
            "Tool: upscale",
        ]
        .iter()
        .enumerate()
        {
            items.push(Item::action(Action::Tool(i), name));
        }
    }
    if has_image {
        items.push(Item::action(Action::Rename, "Rename the asset"));
        items.push(Item::action(Action::Delete, "Move the asset to the Trash"));
        items.push(Item::action(Action::SaveImage, "Save image as…"));
        items.push(Item::action(Action::CopyImage, "Copy image"));
        items.push(Item::action(Action::Compare, "Compare versions"));
        items.push(Item::action(
            Action::RollbackPrevious,
            "Roll back to the previous version",
        ));
    }
    if !listings.is_empty() {
        items.push(Item::action(Action::NextAsset, "Next asset"));
        items.push(Item::action(Action::PreviousAsset, "Previous asset"));
    }
    if session.syncs {
        if session.paused {
            items.push(Item::new(Action::GoOnline, "Go online", "Action"));
        } else {
            items.push(Item::new(Action::GoOffline, "Go offline", "Action"));
        }
    }
    if session.needs_sign_in {
        items.push(Item::new(Action::SignIn, "Sign in", "Action"));
    }
    if session.can_sign_out {
        items.push(Item::new(Action::SignOut, "Sign out", "Action"));
    }
    items.push(Item::action(Action::Trash, "Trash"));
    items.push(Item::action(Action::Settings, "Settings"));
    items.push(Item::action(Action::Shortcuts, "Keyboard shortcuts"));
    items.push(Item::new(Action::About, "About Atelier", "Action"));
    items.push(Item::action(Action::Quit, "Quit"));
    for l in listings {
        let title = if l.title.is_empty() {
            "Untitled"
        } else {
            &l.title
        };
        items.push(Item::new(
            Action::Open(l.id.to_string()),
            title,
            format!(
                "Asset · {} message{}",
                l.message_count,
                if l.message_count == 1 { "" } else { "s" }
            ),
        ));
    }
    if let Some(o) = open {
        for v in o.inspector.versions.iter().filter(|v| !v.active) {
            items.push(Item::new(
                Action::Rollback(v.id.clone()),
                format!("Roll back to {}", v.label),
                format!("Version · {}", v.detail),
            ));
        }
    }
    items
}

/// One step of running a palette action.
pub enum Step {
    Event(UiEvent),
    Ui(UiCommand),
}

/// What running `action` does; `browser`: sign-in happens in the browser.
pub fn plan(action: Action, browser: bool) -> Vec<Step> {
    use Step::{Event as E, Ui};
    match action {
        Action::NewAsset => vec![Ui(UiCommand::NewAsset)],
        Action::Upload => vec![E(UiEvent::PickFile)],
        Action::Paste => vec![E(UiEvent::Paste { explicit: true })],
        Action::Send => vec![Ui(UiCommand::FocusComposer)],
        Action::Tool(i) => vec![E(UiEvent::ToolChanged(i)), Ui(UiCommand::FocusComposer)],
        Action::RollbackPrevious => vec![E(UiEvent::RollbackPrevious)],
        Action::Rollback(v) => vec![E(UiEvent::Rollback(v))],
        // An empty id: back to the asset view.
        Action::Open(id) if id.is_empty() => vec![E(UiEvent::ShowDashboard(false))],
        Action::Open(id) => vec![E(UiEvent::SelectAsset(id))],
        Action::NextAsset => vec![E(UiEvent::StepAsset(1))],
        Action::PreviousAsset => vec![E(UiEvent::StepAsset(-1))],
        Action::Search => vec![Ui(UiCommand::FocusSearch)],
        Action::Dashboard => vec![E(UiEvent::ShowDashboard(true))],
        Action::ExportCsv => vec![E(UiEvent::ExportCsv)],
        Action::SaveImage => vec![E(UiEvent::SaveImage(None))],
        Action::CopyImage => vec![E(UiEvent::CopyImage(None))],
        Action::Compare => vec![E(UiEvent::Compare(None))],
        Action::GoOffline => vec![E(UiEvent::GoOffline)],
        Action::GoOnline => vec![E(UiEvent::GoOnline)],
        Action::SignIn if browser => vec![E(UiEvent::SignInBrowser)],
        Action::SignIn => vec![Ui(UiCommand::TokenSheet)],
        Action::SignOut => vec![E(UiEvent::SignOut)],
        Action::Settings => vec![Ui(UiCommand::Settings)],
        Action::Shortcuts => vec![Ui(UiCommand::Shortcuts)],
        Action::About => vec![Ui(UiCommand::About)],
        Action::Quit => vec![Ui(UiCommand::Quit)],
        Action::Rename => vec![Ui(UiCommand::Rename)],
        Action::Delete => vec![E(UiEvent::Delete(None))],
        Action::Trash => vec![E(UiEvent::ShowTrash(true))],
    }
}
