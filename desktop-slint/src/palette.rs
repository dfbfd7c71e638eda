//! The command palette (Ctrl+K) and the keyboard shortcuts: every action
//! the app offers, with its shortcut, plus the assets and the open asset's
//! versions, searched with a fuzzy matcher (`nucleo-matcher`, Helix's).
//! [`SHORTCUTS`] is the one list the menus, the palette and the shortcuts
//! sheet show. Pure: no UI, no IO.

use nucleo_matcher::pattern::{CaseMatching, Normalization, Pattern};
use nucleo_matcher::{Config, Matcher, Utf32String};

/// Something the palette can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    NewAsset,
    Upload,
    Paste,
    Send,
    /// Pick the composer's tool (index into `tools::TOOLS`).
    Tool(usize),
    RollbackPrevious,
    /// Roll back to this version.
    Rollback(String),
    Open(String),
    NextAsset,
    PreviousAsset,
    Search,
    Dashboard,
    ExportCsv,
    SaveImage,
    CopyImage,
    Compare,
    GoOffline,
    GoOnline,
    SignIn,
    SignOut,
    Settings,
    Shortcuts,
    About,
    Quit,
    Rename,
    Delete,
    Trash,
}

/// The shortcuts: (what, keys as shown). The menus bind the same keys
/// (`ui/app.slint`; a test checks they agree).
pub const SHORTCUTS: &[(&str, &str)] = &[
    ("Command palette", "Ctrl+K"),
    ("New asset", "Ctrl+N"),
    ("Upload an image", "Ctrl+O"),
    ("Paste an image", "Ctrl+V"),
    ("Send the request", "Ctrl+Enter"),
    ("Tool: edit with a prompt", "Ctrl+1"),
    ("Tool: text to image", "Ctrl+2"),
    ("Tool: remove background", "Ctrl+3"),
    ("Tool: upscale", "Ctrl+4"),
    ("Roll back to the previous version", "Ctrl+R"),
    ("Rename the asset", "F2"),
    ("Move the asset to the Trash", "Ctrl+Delete"),
    ("Trash", "Ctrl+Shift+T"),
    ("Next asset", "Ctrl+Down"),
    ("Previous asset", "Ctrl+Up"),
    ("Search assets", "Ctrl+F"),
    ("Cost dashboard", "Ctrl+D"),
    ("Export costs as CSV", "Ctrl+E"),
    ("Save image as…", "Ctrl+S"),
    ("Copy image", "Ctrl+Shift+C"),
    ("Compare versions", "Ctrl+Shift+D"),
    ("Settings", "Ctrl+,"),
    ("Keyboard shortcuts", "F1"),
    ("Close a sheet", "Escape"),
    ("Quit", "Ctrl+Q"),
];

/// The keys of the shortcut named `what` ("" if none).
pub fn keys_of(what: &str) -> &'static str {
    SHORTCUTS
        .iter()
        .find(|(w, _)| *w == what)
        .map_or("", |(_, k)| k)
}

/// One entry the palette can show.
#[derive(Debug, Clone)]
pub struct Item {
    pub action: Action,
    pub title: String,
    /// "Action", "Asset · 12 messages", "Version".
    pub detail: String,
    pub keys: &'static str,
    haystack: Utf32String,
}

impl Item {
    pub fn new(action: Action, title: impl Into<String>, detail: impl Into<String>) -> Item {
        let title = title.into();
        Item {
            action,
            haystack: Utf32String::from(title.as_str()),
            keys: keys_of(&title),
            title,
            detail: detail.into(),
        }
    }

    /// An action named after its shortcut.
    pub fn action(action: Action, shortcut_name: &str) -> Item {
        let mut i = Item::new(action, shortcut_name, "Action");
        i.keys = keys_of(shortcut_name);
        i
    }
}

/// A result as the palette shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaletteRow {
    pub title: String,
    pub detail: String,
    pub keys: String,
}

/// The items and a matcher, reused across keystrokes.
pub struct Palette {
    items: Vec<Item>,
    matcher: Matcher,
    /// Indexes into `items` of the rows last shown.
    shown: Vec<usize>,
}

/// Rows shown at most.
pub const MAX_ROWS: usize = 50;

impl Default for Palette {
    fn default() -> Self {
        Palette::new(Vec::new())
    }
}

impl Palette {
    pub fn new(items: Vec<Item>) -> Palette {
        Palette {
            items,
            matcher: Matcher::new(Config::DEFAULT),
            shown: Vec::new(),
        }
    }

    pub fn set_items(&mut self, items: Vec<Item>) {
        self.items = items;
        self.shown.clear();
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The best matches of `query` (all items in order when it is empty),
    /// best first; ties keep the items' order (actions before assets).
    pub fn search(&mut self, query: &str) -> Vec<PaletteRow> {
        let query = query.trim();
        self.shown = if query.is_empty() {
            (0..self.items.len().min(MAX_ROWS)).collect()
        } else {
            let pattern = Pattern::parse(query, CaseMatching::Ignore, Normalization::Smart);
            let mut scored: Vec<(u32, usize)> = self
                .items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    pattern
                        .score(item.haystack.slice(..), &mut self.matcher)
                        .map(|s| (s, i))
                })
                .collect();
            scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            scored.into_iter().take(MAX_ROWS).map(|(_, i)| i).collect()
        };
        self.shown
            .iter()
            .map(|&i| {
                let it = &self.items[i];
                PaletteRow {
                    title: it.title.clone(),
                    detail: it.detail.clone(),
                    keys: it.keys.to_owned(),
                }
            })
            .collect()
    }

    /// The action of the row at `position` of the last search.
    pub fn pick(&self, position: usize) -> Option<Action> {
        self.shown
            .get(position)
            .map(|&i| self.items[i].action.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn palette() -> Palette {
        let mut items = vec![
            Item::action(Action::Dashboard, "Cost dashboard"),
            Item::action(Action::NewAsset, "New asset"),
            Item::action(Action::ExportCsv, "Export costs as CSV"),
        ];
        for (i, t) in ["Harbour at dusk", "Lighthouse", "Dashboard mockup"]
            .iter()
            .enumerate()
        {
            items.push(Item::new(Action::Open(format!("a{i}")), *t, "Asset"));
        }
        Palette::new(items)
    }

    #[test]
    fn fuzzy_search_ranks_actions_and_assets() {
        let mut p = palette();
        assert_eq!(p.search("").len(), 6);
        let rows = p.search("dash");
        assert_eq!(rows[0].title, "Cost dashboard");
        assert_eq!(rows[0].keys, "Ctrl+D");
        assert!(rows.iter().any(|r| r.title == "Dashboard mockup"));
        assert_eq!(p.pick(0), Some(Action::Dashboard));
        // Letters in order, not adjacent.
        let rows = p.search("hbr dsk");
        assert_eq!(rows[0].title, "Harbour at dusk");
        assert_eq!(p.pick(0), Some(Action::Open("a0".into())));
        assert!(p.search("zzzz").is_empty());
        assert_eq!(p.pick(0), None);
    }

    #[test]
    fn every_shortcut_is_bound_in_the_menus() {
        let slint = include_str!("../ui/app.slint");
        for (what, keys) in SHORTCUTS {
            if matches!(*keys, "Ctrl+V" | "Escape") {
                continue; // handled by text fields and sheets first
            }
            let parts: Vec<String> = keys
                .split('+')
                .filter(|p| !p.is_empty())
                .map(|p| match p {
                    "Ctrl" => "Control".to_owned(),
                    "Enter" => "Return".to_owned(),
                    "Down" => "DownArrow".to_owned(),
                    "Up" => "UpArrow".to_owned(),
                    k if k.len() == 1 => format!("\"{}\"", k.to_lowercase()),
                    k => k.to_owned(),
                })
                .collect();
            let binding = format!("@keys({})", parts.join(" + "));
            assert!(
                slint.contains(&binding),
                "{what} ({keys}): {binding} is not in ui/app.slint"
            );
        }
    }
}
