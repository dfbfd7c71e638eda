//! Automerge's binary chunk format, just far enough to take bytes from
//! elsewhere apart without loading them into a document: a pushed or stored
//! byte string is a concatenation of chunks (a whole-document snapshot, or
//! single changes, plain or compressed), each with a header naming its type
//! and length. Bytes in, data out; no IO.

use automerge::{Automerge, Change};

use super::error::{ModelError, ModelResult};

/// The four bytes every chunk starts with.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    /// A whole document (`save()`), compressed columns.
    Document,
    /// One change.
    Change,
    /// One change, deflated.
    CompressedChange,
    /// Several changes in one chunk.
    Bundle,
}

/// One chunk of a concatenation, header included.
#[derive(Debug, Clone, Copy)]
pub struct RawChunk<'a> {
    pub kind: ChunkKind,
    pub bytes: &'a [u8],
}

/// Splits `bytes` into its chunks by their headers. Only the framing is
/// checked here (magic bytes, a known type, a length that fits); contents
/// are checked where they are parsed ([`changes`]).
pub fn split(bytes: &[u8]) -> ModelResult<Vec<RawChunk<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let bad = |what: &str| ModelError::Malformed(format!("chunk at byte {at}: {what}"));
        if rest.len() < 9 || rest[..4] != MAGIC {
            return Err(bad("not an Automerge chunk (bad magic bytes)"));
        }
        let kind = match rest[8] {
            0 => ChunkKind::Document,
            1 => ChunkKind::Change,
            2 => ChunkKind::CompressedChange,
            3 => ChunkKind::Bundle,
            t => return Err(bad(&format!("unknown chunk type {t}"))),
        };
        let (len, leb) = uleb128(&rest[9..]).ok_or_else(|| bad("unreadable length"))?;
        let total = 9usize
            .checked_add(leb)
            .and_then(|n| usize::try_from(len).ok().and_then(|l| n.checked_add(l)))
            .filter(|&n| n <= rest.len())
            .ok_or_else(|| bad("truncated"))?;
        out.push(RawChunk {
            kind,
            bytes: &rest[..total],
        });
        at += total;
    }
    Ok(out)
}

/// Every change in `bytes` (any mix of chunk kinds), parsed strictly:
/// corrupt, truncated or unknown input is an error naming what is wrong.
/// Changes of a document or bundle chunk are listed by loading that chunk
/// alone (the cost of reading it); changes whose dependencies are elsewhere
/// are fine in change chunks, but a bundle must stand on its own.
pub fn changes(bytes: &[u8]) -> ModelResult<Vec<Change>> {
    let mut out = Vec::new();
    for chunk in split(bytes)? {
        match chunk.kind {
            ChunkKind::Change | ChunkKind::CompressedChange => {
                let change = Change::try_from(chunk.bytes)
                    .map_err(|e| ModelError::Malformed(format!("a change does not parse: {e}")))?;
                // Parsing does not check the checksum (only loads do): the
                // header's must be the first bytes of the change's hash.
                if change.hash().0[..4] != chunk.bytes[4..8] {
                    return Err(ModelError::Malformed(
                        "a change's checksum does not match its contents".into(),
                    ));
                }
                out.push(change);
            }
            ChunkKind::Document | ChunkKind::Bundle => {
                let doc = Automerge::load(chunk.bytes)?;
                out.extend(doc.get_changes(&[]));
            }
        }
    }
    Ok(out)
}

/// An unsigned LEB128 number and how many bytes it took.
fn uleb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().take(10).enumerate() {
        let part = u64::from(b & 0x7f);
        value |= part.checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AssetDoc, NewMessage};

    #[test]
    fn splits_snapshots_and_changes_and_lists_their_changes() {
        let mut doc = AssetDoc::create("t", 1);
        let snapshot = doc.save();
        let base = doc.heads();
        doc.append_message(NewMessage::user("a"), 2).unwrap();
        doc.append_message(NewMessage::user("b"), 3).unwrap();
        let incremental = doc.changes_since(&base);
        let mut all = snapshot.clone();
        all.extend_from_slice(&incremental);
        let chunks = split(&all).unwrap();
        assert_eq!(chunks[0].kind, ChunkKind::Document);
        assert_eq!(chunks.len(), 3);
        assert!(chunks[1..].iter().all(|c| c.kind == ChunkKind::Change));
        assert_eq!(changes(&all).unwrap().len(), 3);
        assert_eq!(changes(&incremental).unwrap().len(), 2);
        assert!(changes(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_framing_is_an_error_not_a_shorter_list() {
        let mut doc = AssetDoc::create("t", 1);
        let bytes = doc.save();
        for bad in [
            &bytes[..bytes.len() - 1],
            &bytes[..5],
            b"not automerge at all".as_slice(),
        ] {
            assert!(split(bad).is_err(), "{} bytes", bad.len());
            assert!(changes(bad).is_err());
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(changes(&flipped).is_err(), "a damaged body fails to parse");
        // A change whose checksum (bytes 4..8) is wrong, body intact.
        let base = doc.heads();
        doc.append_message(crate::model::NewMessage::user("x"), 2)
            .unwrap();
        let mut change = doc.changes_since(&base);
        change[5] ^= 0x55;
        assert!(changes(&change).is_err(), "a wrong checksum");
    }
}
