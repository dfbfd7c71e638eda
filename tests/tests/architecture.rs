//! Architecture rules checked on the source, so they cannot rot:
//!
//! 1. **IO stays out of the document model and the decision cores.** The
//!    files below may not name an IO crate or module (tokio, sqlx, reqwest,
//!    axum, std::fs, std::net, std::process, the system clock): they take
//!    bytes, time and randomness as arguments, and their callers do the IO.
//! 2. **No two modules import each other**, in any crate: no top-level
//!    module names `crate::B` while `B` names it back (a module's own
//!    submodules are one module).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The source without comments, and without `#[cfg(test)] mod tests`
/// blocks at the end of a file (tests may do IO).
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_model_and_the_decision_cores_do_no_io() {
    let pure_dirs = ["core-sync/src/model"];
    let pure_files = [
        "core-sync/src/sync/engine.rs",
        "core-sync/src/sync/protocol.rs",
        "core-sync/src/store/compaction.rs",
        "core-sync/src/image_header.rs",
        "core-sync/src/ids.rs",
        "cloud-lambda/src/write/core.rs",
    ];
    let forbidden = [
        "tokio",
        "sqlx",
        "reqwest",
        "axum",
        "hyper",
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "SystemTime",
        "Instant::now",
        "thread_rng",
        "now_millis",
    ];
    let mut files: Vec<PathBuf> = pure_files.iter().map(|f| root().join(f)).collect();
    for d in pure_dirs {
        files.extend(rust_files(&root().join(d)));
    }
    let mut found = Vec::new();
    for f in &files {
        let code = code(f);
        for word in forbidden {
            if code.contains(word) {
                found.push(format!("{} names {word}", f.display()));
            }
        }
    }
    assert!(files.len() > 10, "the rule covers the files: {files:?}");
    assert!(
        found.is_empty(),
        "IO where none belongs:\n{}",
        found.join("\n")
    );
}

/// The top-level module a source file belongs to (`src/store/outbox.rs` →
/// `store`; `src/lib.rs`, `main.rs` and binaries → none).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    if rel.components().count() == 1 {
        let stem = first.strip_suffix(".rs")?;
        return (!matches!(stem, "lib" | "main")).then(|| stem.to_owned());
    }
    (first != "bin").then(|| first.to_owned())
}

/// The top-level modules `code` names as `crate::X`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `atelier_crate::` and the like
        }
        let rest = &code[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
        // `crate::{a, b::c}`
        if rest.starts_with('{') {
            let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
            for part in group.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn no_two_modules_import_each_other() {
    let mut cycles = Vec::new();
    for krate in ["core-sync", "cloud-lambda", "desktop-slint", "fixtures"] {
        let src = root().join(krate).join("src");
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in rust_files(&src) {
            let Some(module) = module_of(&src, &file) else {
                continue;
            };
            let refs = crate_refs(&code(&file));
            let edges = graph.entry(module.clone()).or_default();
            edges.extend(refs.into_iter().filter(|r| *r != module));
        }
        let modules: BTreeSet<String> = graph.keys().cloned().collect();
        for edges in graph.values_mut() {
            edges.retain(|m| modules.contains(m));
        }
        for (module, edges) in &graph {
            for other in edges {
                if module < other && graph.get(other).is_some_and(|e| e.contains(module)) {
                    cycles.push(format!("{krate}: {module} ⇄ {other}"));
                }
            }
        }
        assert!(!graph.is_empty(), "{krate}: no modules found");
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other:\n{}",
        cycles.join("\n")
    );
}
