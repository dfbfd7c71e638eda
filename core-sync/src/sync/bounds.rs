//! What one `POST /v1/sync` may carry and cost, shared by the server,
//! which refuses a request over them at once (413), and the client, which
//! never builds one: it splits its pushes across requests instead.
//!
//! Bytes alone do not bound a request's cost. Every pushed or resynced
//! document costs the server a read whatever its size, and Automerge
//! bytes cost what they declare, not what they weigh: run-length encoding
//! lets a few hundred bytes declare a million operations, DEFLATE lets a
//! kilobyte inflate to a megabyte (see [`crate::model::weight`]). So a
//! request is bounded in documents, and its changes in rows and inflated
//! bytes, both absolutely and per byte sent. Our own documents weigh
//! about 0.3 rows per byte as changes and 3.5 as compressed snapshots
//! (inflating 7x): far inside the bounds.

use crate::model::weight::Weight;
use crate::sync::protocol::MAX_REQUEST_BYTES;

/// Most documents one request may push and ask to resync, together.
pub const MAX_REQUEST_DOCS: usize = 500;

/// Most change bytes one request may push: base64 grows them by a third,
/// and the whole body must stay under [`MAX_REQUEST_BYTES`].
pub const MAX_PUSH_BYTES: u64 = (MAX_REQUEST_BYTES / 4 * 3 - 256 * 1024) as u64;

/// Rows any request may declare, however few bytes it sends.
pub const FREE_ROWS: u64 = 256 * 1024;
/// Rows allowed per byte of changes sent, beyond [`FREE_ROWS`].
pub const ROWS_PER_BYTE: u64 = 16;
/// Most rows one request may declare.
pub const MAX_ROWS: u64 = 8_000_000;

/// Inflated bytes any request may declare.
pub const FREE_INFLATED_BYTES: u64 = 1024 * 1024;
/// Inflated bytes allowed per byte of changes sent, beyond
/// [`FREE_INFLATED_BYTES`].
pub const INFLATED_PER_BYTE: u64 = 32;
/// Most bytes one request's changes may inflate to.
pub const MAX_INFLATED_BYTES: u64 = 64 * 1024 * 1024;

/// Where one more document's push goes (see [`Load::fit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Into this request, which then carries this load.
    Here(Load),
    /// Into a later request: this one is full.
    Later,
    /// Into none: alone it is over the bounds.
    Never(Overload),
}

/// What one request carries: documents named, change bytes sent, and
/// their weight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    pub docs: usize,
    pub bytes: u64,
    pub weight: Weight,
}

/// Why a request is over the bounds: the sentence a person reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Overload {
    #[error(
        "the request names {docs} documents (pushed and resynced); one request may name at \
         most {MAX_REQUEST_DOCS}: send the rest in further requests"
    )]
    Docs { docs: usize },
    #[error(
        "the pushed changes are {bytes} bytes; one request may push at most {MAX_PUSH_BYTES} \
         (the {MAX_REQUEST_BYTES}-byte body limit, after base64)"
    )]
    Bytes { bytes: u64 },
    #[error(
        "the pushed changes declare {rows} rows of operations in {bytes} bytes; one request \
         may declare at most {allowed} (at most {ROWS_PER_BYTE} per byte sent beyond the first \
         {FREE_ROWS}, and never more than {MAX_ROWS}): push fewer documents per request \
         (a document over this alone cannot sync)"
    )]
    Rows { rows: u64, bytes: u64, allowed: u64 },
    #[error(
        "the pushed changes inflate to more than {allowed} bytes from {bytes} (at most \
         {INFLATED_PER_BYTE} per byte sent beyond the first {FREE_INFLATED_BYTES}, and never \
         more than {MAX_INFLATED_BYTES}): push fewer documents per request (a document over \
         this alone cannot sync)"
    )]
    Inflated { bytes: u64, allowed: u64 },
}

impl Load {
    /// This load with one more document's changes.
    pub fn with(self, bytes: u64, weight: Weight) -> Load {
        Load {
            docs: self.docs + 1,
            bytes: self.bytes.saturating_add(bytes),
            weight: self.weight + weight,
        }
    }

    /// Where a push of `bytes` weighing `weight` goes, this load being
    /// what the request carries so far.
    pub fn fit(self, bytes: u64, weight: Weight) -> Fit {
        if let Err(over) = Load::default().with(bytes, weight).check() {
            return Fit::Never(over);
        }
        let more = self.with(bytes, weight);
        match more.check() {
            Ok(()) => Fit::Here(more),
            Err(_) => Fit::Later,
        }
    }

    /// The inflated bytes changes of `bytes` may declare (what weighing
    /// them may inflate before giving up).
    pub fn inflate_allowed(bytes: u64) -> u64 {
        bytes
            .saturating_mul(INFLATED_PER_BYTE)
            .saturating_add(FREE_INFLATED_BYTES)
            .min(MAX_INFLATED_BYTES)
    }

    /// The rows changes of `bytes` may declare.
    pub fn rows_allowed(bytes: u64) -> u64 {
        bytes
            .saturating_mul(ROWS_PER_BYTE)
            .saturating_add(FREE_ROWS)
            .min(MAX_ROWS)
    }

    /// Whether a request carrying this is within the bounds.
    pub fn check(&self) -> Result<(), Overload> {
        if self.docs > MAX_REQUEST_DOCS {
            return Err(Overload::Docs { docs: self.docs });
        }
        if self.bytes > MAX_PUSH_BYTES {
            return Err(Overload::Bytes { bytes: self.bytes });
        }
        let allowed = Load::rows_allowed(self.bytes);
        if self.weight.rows > allowed {
            return Err(Overload::Rows {
                rows: self.weight.rows,
                bytes: self.bytes,
                allowed,
            });
        }
        let allowed = Load::inflate_allowed(self.bytes);
        if self.weight.inflated_bytes > allowed {
            return Err(Overload::Inflated {
                bytes: self.bytes,
                allowed,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_grow_with_the_bytes_sent_up_to_a_ceiling() {
        let load = |docs, bytes, rows, inflated_bytes| Load {
            docs,
            bytes,
            weight: Weight {
                inflated_bytes,
                rows,
            },
        };
        // (load, refused because of)
        let cases = [
            (load(MAX_REQUEST_DOCS, 0, 0, 0), None),
            (load(MAX_REQUEST_DOCS + 1, 0, 0, 0), Some("documents")),
            (load(1, 100, FREE_ROWS, 100), None),
            (load(1, 100, FREE_ROWS + 16 * 100, 100), None),
            (load(1, 100, FREE_ROWS + 16 * 100 + 1, 100), Some("rows")),
            (load(1, 10 << 20, MAX_ROWS, 10 << 20), None),
            (load(1, 10 << 20, MAX_ROWS + 1, 10 << 20), Some("rows")),
            (load(1, MAX_PUSH_BYTES, 0, MAX_PUSH_BYTES), None),
            (
                load(1, MAX_PUSH_BYTES + 1, 0, MAX_PUSH_BYTES),
                Some("bytes"),
            ),
            (load(1, 1000, 0, FREE_INFLATED_BYTES + 32_000), None),
            (
                load(1, 1000, 0, FREE_INFLATED_BYTES + 32_001),
                Some("inflate"),
            ),
            (
                load(1, 10 << 20, 0, MAX_INFLATED_BYTES + 1),
                Some("inflate"),
            ),
        ];
        for (load, refused) in cases {
            match (load.check(), refused) {
                (Ok(()), None) => {}
                (Err(e), Some(word)) => assert!(e.to_string().contains(word), "{load:?}: {e}"),
                (got, want) => panic!("{load:?}: {got:?}, expected {want:?}"),
            }
        }
        let two = Load::default()
            .with(10, Weight::default())
            .with(5, Weight::default());
        assert_eq!((two.docs, two.bytes), (2, 15));
    }

    #[test]
    fn a_push_goes_here_later_or_never() {
        let light = |bytes| Weight {
            inflated_bytes: bytes,
            rows: bytes / 3,
        };
        let half = MAX_PUSH_BYTES / 2 + 1;
        let mut load = Load::default();
        match load.fit(half, light(half)) {
            Fit::Here(l) => load = l,
            other => panic!("{other:?}"),
        }
        assert_eq!(load.fit(half, light(half)), Fit::Later, "full of bytes");
        assert!(matches!(load.fit(100, light(100)), Fit::Here(_)));
        // Rows: light alone, too many together.
        let heavy = Weight {
            inflated_bytes: 1_000_000,
            rows: MAX_ROWS / 2 + 1,
        };
        let l = match Load::default().fit(1_000_000, heavy) {
            Fit::Here(l) => l,
            other => panic!("{other:?}"),
        };
        assert_eq!(l.fit(1_000_000, heavy), Fit::Later);
        // Over the bounds alone: never, whatever the request holds.
        let bomb = Weight {
            inflated_bytes: 200,
            rows: FREE_ROWS * 4,
        };
        assert!(matches!(
            Load::default().fit(200, bomb),
            Fit::Never(Overload::Rows { .. })
        ));
        assert!(matches!(
            Load::default().fit(MAX_PUSH_BYTES + 1, light(MAX_PUSH_BYTES + 1)),
            Fit::Never(Overload::Bytes { .. })
        ));
        // A request full of documents takes no more.
        let full = Load {
            docs: MAX_REQUEST_DOCS,
            ..Load::default()
        };
        assert_eq!(full.fit(10, light(10)), Fit::Later);
    }
}
