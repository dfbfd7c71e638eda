//! Shared helpers for Atelier's cross-crate integration tests.
//!
//! [`procs`] runs the shipped binaries; [`small_disk`] gives the disk-full
//! tests a real, size-limited file system.
//!
//! [`crash`] holds what the `crash-child` binary and the crash-safety test
//! (`tests/crash.rs`) must agree on: the line protocol the child prints to
//! report acknowledged writes, and the compaction policy it runs with.

pub mod procs;
pub mod small_disk;
pub mod crash {
    //! The crash-child protocol.
    //!
    //! The child prints one [`Event`] per line on stdout and flushes after
    //! each. A write is *acknowledged* once its line has been printed, which
    //! the child only does after `Store::save` (or `Store::create`) returned
    //! `Ok`. Each line is far shorter than `PIPE_BUF`, so it reaches the pipe
    //! in one atomic `write`: a kill never leaves half a line behind.

    use std::fmt;
    use std::str::FromStr;

    use core_sync::DocId;
    use core_sync::store::CompactionPolicy;

    /// Compacts after a few dozen small appends while a document is young,
    /// so that automatic compaction (inside `save`) happens during the test.
    pub const AGGRESSIVE_COMPACTION: CompactionPolicy = CompactionPolicy {
        min_incremental_bytes: 2048,
        ratio_percent: 50,
        max_chunks: u64::MAX,
    };

    /// How many assets the child keeps in the store.
    pub const ASSETS: usize = 3;

    /// The text of the `n`th write of trial `trial`.
    pub fn message_text(trial: u32, n: u64) -> String {
        format!("trial-{trial}-n-{n}")
    }

    /// The title set by the `n`th write of trial `trial`.
    pub fn title_text(trial: u32, n: u64) -> String {
        format!("title-{trial}-n-{n}")
    }

    /// Splits a text made by [`message_text`] or [`title_text`] into its
    /// trial and write number.
    pub fn parse_text(text: &str) -> Option<(u32, u64)> {
        let rest = text
            .strip_prefix("trial-")
            .or_else(|| text.strip_prefix("title-"))?;
        let (trial, n) = rest.split_once("-n-")?;
        Some((trial.parse().ok()?, n.parse().ok()?))
    }

    /// One line of the child's stdout.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Event {
        /// Every asset is open; the write loop starts.
        Ready,
        /// `Store::create` returned: the asset exists.
        Created(DocId),
        /// A `save` that appended the message `text` returned `Ok`.
        Ack { doc: DocId, text: String },
        /// A `save` that set the title to `title` returned `Ok`.
        AckTitle { doc: DocId, title: String },
        /// The last acknowledged `save` also compacted the asset.
        AutoCompacted(DocId),
        /// An explicit `Store::compact` is about to start.
        Compacting(DocId),
        /// The explicit `Store::compact` returned `Ok`.
        Compacted(DocId),
    }

    impl fmt::Display for Event {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Event::Ready => write!(f, "ready"),
                Event::Created(doc) => write!(f, "created {doc}"),
                Event::Ack { doc, text } => write!(f, "ack {doc} {text}"),
                Event::AckTitle { doc, title } => write!(f, "ack-title {doc} {title}"),
                Event::AutoCompacted(doc) => write!(f, "auto-compacted {doc}"),
                Event::Compacting(doc) => write!(f, "compacting {doc}"),
                Event::Compacted(doc) => write!(f, "compacted {doc}"),
            }
        }
    }

    /// A line that is not an [`Event`].
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct BadLine(pub String);

    impl fmt::Display for BadLine {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "not a crash-child event: {:?}", self.0)
        }
    }

    impl std::error::Error for BadLine {}

    impl FromStr for Event {
        type Err = BadLine;

        fn from_str(line: &str) -> Result<Self, Self::Err> {
            let bad = || BadLine(line.to_owned());
            let mut words = line.split(' ');
            let verb = words.next().ok_or_else(bad)?;
            if verb == "ready" {
                return match words.next() {
                    None => Ok(Event::Ready),
                    Some(_) => Err(bad()),
                };
            }
            let doc: DocId = words.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
            let arg = words.next();
            if words.next().is_some() {
                return Err(bad());
            }
            let event = match (verb, arg) {
                ("created", None) => Event::Created(doc),
                ("ack", Some(text)) => Event::Ack {
                    doc,
                    text: text.to_owned(),
                },
                ("ack-title", Some(title)) => Event::AckTitle {
                    doc,
                    title: title.to_owned(),
                },
                ("auto-compacted", None) => Event::AutoCompacted(doc),
                ("compacting", None) => Event::Compacting(doc),
                ("compacted", None) => Event::Compacted(doc),
                _ => return Err(bad()),
            };
            Ok(event)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn events_round_trip() {
            let doc = DocId::random();
            for event in [
                Event::Ready,
                Event::Created(doc.clone()),
                Event::Ack {
                    doc: doc.clone(),
                    text: message_text(3, 17),
                },
                Event::AckTitle {
                    doc: doc.clone(),
                    title: title_text(3, 18),
                },
                Event::AutoCompacted(doc.clone()),
                Event::Compacting(doc.clone()),
                Event::Compacted(doc.clone()),
            ] {
                assert_eq!(event.to_string().parse::<Event>(), Ok(event));
            }
            for bad in ["", "ready now", "ack", "ack nothex x", "compacting", "eh 0"] {
                assert!(bad.parse::<Event>().is_err(), "{bad:?}");
            }
        }

        #[test]
        fn texts_parse_back() {
            assert_eq!(parse_text(&message_text(4, 99)), Some((4, 99)));
            assert_eq!(parse_text(&title_text(0, 1)), Some((0, 1)));
            assert_eq!(parse_text("Untitled"), None);
        }
    }
}
