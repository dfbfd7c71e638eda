//! What Automerge bytes will cost to parse, read from their framing and
//! column headers without loading them: the bytes their deflated parts
//! inflate to, and the rows their columns hold. Automerge stores a
//! change's operations in run-length-encoded columns, and a chunk (or a
//! column) may be DEFLATE-compressed, so a few hundred bytes can declare a
//! million operations and a kilobyte can inflate to a megabyte; parsing
//! costs the rows and the inflated bytes, not the bytes sent. Weighing
//! costs the bytes: runs are counted, never expanded, and inflation stops
//! at the caller's budget, so the server weighs a push before Automerge
//! sees it and refuses one that costs more than it weighs.
//!
//! Bytes in, numbers out; no IO. The layouts are Automerge's binary
//! format (<https://automerge.org/automerge-binary-format-spec/>): change,
//! compressed change, document and bundle chunks.

use std::io::Read as _;

use super::chunks::{ChunkKind, split};

/// What parsing some chunks costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Weight {
    /// Bytes after inflating the deflated parts (the whole chunk for ones
    /// stored plain).
    pub inflated_bytes: u64,
    /// Rows in every column together: about the operations times the
    /// columns each fills (a run of a million counts a million).
    pub rows: u64,
}

impl std::ops::Add for Weight {
    type Output = Weight;

    /// Both weights together (saturating).
    fn add(self, other: Weight) -> Weight {
        Weight {
            inflated_bytes: self.inflated_bytes.saturating_add(other.inflated_bytes),
            rows: self.rows.saturating_add(other.rows),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeighError {
    /// The framing or a column header does not parse (Automerge would
    /// refuse the bytes too).
    #[error("{0}")]
    Malformed(String),
    /// The deflated parts inflate to more than the budget given: weighing
    /// stopped there.
    #[error("its compressed parts inflate to more than {0} bytes")]
    InflatesPast(u64),
}

/// The weight of `bytes` (any concatenation of chunks). Inflating stops
/// once more than `inflate_budget` bytes came out.
pub fn weigh(bytes: &[u8], inflate_budget: u64) -> Result<Weight, WeighError> {
    let chunks = split(bytes).map_err(|e| WeighError::Malformed(e.to_string()))?;
    let mut total = Weight::default();
    for chunk in chunks {
        let budget = inflate_budget.saturating_sub(total.inflated_bytes);
        let body = body(chunk.bytes)?;
        let header = (chunk.bytes.len() - body.len()) as u64;
        let mut weight = match chunk.kind {
            ChunkKind::Change => change(body, budget)?,
            ChunkKind::CompressedChange => {
                let inflated = inflate(body, budget)?;
                let mut w = change(&inflated, budget)?;
                w.inflated_bytes = w.inflated_bytes.max(inflated.len() as u64);
                w
            }
            ChunkKind::Document => document(body, budget)?,
            ChunkKind::Bundle => bundle(body, budget)?,
        };
        weight.inflated_bytes = weight.inflated_bytes.saturating_add(header);
        total = total + weight;
        if total.inflated_bytes > inflate_budget {
            return Err(WeighError::InflatesPast(inflate_budget));
        }
    }
    Ok(total)
}

/// A chunk's body: after magic, checksum, type and length.
fn body(chunk: &[u8]) -> Result<&[u8], WeighError> {
    let mut r = Reader::new(&chunk[9..]);
    let len = r.uleb()?;
    r.take(len)
}

/// Change chunk body: deps, actor, seq, start op, time, message, other
/// actors, op columns, extra bytes.
fn change(body: &[u8], budget: u64) -> Result<Weight, WeighError> {
    let mut r = Reader::new(body);
    r.hashes()?;
    r.bytes_prefixed()?;
    r.uleb()?;
    r.uleb()?;
    r.sleb()?;
    r.bytes_prefixed()?;
    r.actors()?;
    let ops = r.column_specs()?;
    let mut w = columns(&mut r, &ops, budget)?;
    w.inflated_bytes = w.inflated_bytes.saturating_add(body.len() as u64);
    Ok(w)
}

/// Document chunk body: actors, heads, change and op column specs, their
/// data, head indexes.
fn document(body: &[u8], budget: u64) -> Result<Weight, WeighError> {
    let mut r = Reader::new(body);
    r.actors()?;
    r.hashes()?;
    let change_cols = r.column_specs()?;
    let op_cols = r.column_specs()?;
    let changes = columns(&mut r, &change_cols, budget)?;
    let ops = columns(
        &mut r,
        &op_cols,
        budget.saturating_sub(changes.inflated_bytes),
    )?;
    let mut w = changes + ops;
    w.inflated_bytes = w.inflated_bytes.saturating_add(body.len() as u64);
    Ok(w)
}

/// Bundle chunk body: deps, actors, change column specs and data, op
/// column specs and data.
fn bundle(body: &[u8], budget: u64) -> Result<Weight, WeighError> {
    let mut r = Reader::new(body);
    r.hashes()?;
    r.actors()?;
    let change_cols = r.column_specs()?;
    let changes = columns(&mut r, &change_cols, budget)?;
    let op_cols = r.column_specs()?;
    let ops = columns(
        &mut r,
        &op_cols,
        budget.saturating_sub(changes.inflated_bytes),
    )?;
    let mut w = changes + ops;
    w.inflated_bytes = w.inflated_bytes.saturating_add(body.len() as u64);
    Ok(w)
}

/// A column's specification: its type (low three bits), whether it is
/// deflated (bit 3), and its length in the chunk.
#[derive(Debug, Clone, Copy)]
struct ColumnSpec {
    spec: u64,
    len: u64,
}

impl ColumnSpec {
    fn deflated(&self) -> bool {
        self.spec & 0b1000 != 0
    }
}

/// Weighs the data of `specs`, which follows in `r`. `inflated_bytes` is
/// only what deflated columns add beyond their compressed size.
fn columns(r: &mut Reader<'_>, specs: &[ColumnSpec], budget: u64) -> Result<Weight, WeighError> {
    let mut w = Weight::default();
    for spec in specs {
        let data = r.take(spec.len)?;
        let rows = if spec.deflated() {
            let left = budget.saturating_sub(w.inflated_bytes);
            let inflated = inflate(data, left)?;
            w.inflated_bytes = w.inflated_bytes.saturating_add(inflated.len() as u64);
            column_rows(spec.spec, &inflated)?
        } else {
            column_rows(spec.spec, data)?
        };
        w.rows = w.rows.saturating_add(rows);
    }
    Ok(w)
}

/// The rows of one column, by its type: run-length columns count their
/// runs (`count > 0`: one value repeated; `< 0`: that many literals; `0`:
/// a run of nulls), boolean columns sum their alternating runs, raw value
/// bytes hold no rows of their own (the value metadata column counts them).
fn column_rows(spec: u64, data: &[u8]) -> Result<u64, WeighError> {
    let mut r = Reader::new(data);
    let mut rows: u64 = 0;
    match spec & 0b111 {
        // Boolean.
        4 => {
            while !r.is_empty() {
                rows = rows.saturating_add(r.uleb()?);
            }
        }
        // Raw values.
        7 => {}
        // Group, actor, integer, delta, string, value metadata.
        kind => {
            let value = |r: &mut Reader<'_>| -> Result<(), WeighError> {
                match kind {
                    3 => r.sleb().map(drop),
                    5 => r.bytes_prefixed().map(drop),
                    _ => r.uleb().map(drop),
                }
            };
            while !r.is_empty() {
                let count = r.sleb()?;
                if count > 0 {
                    value(&mut r)?;
                    rows = rows.saturating_add(count.unsigned_abs());
                } else if count < 0 {
                    for _ in 0..count.unsigned_abs() {
                        value(&mut r)?;
                    }
                    rows = rows.saturating_add(count.unsigned_abs());
                } else {
                    rows = rows.saturating_add(r.uleb()?);
                }
            }
        }
    }
    Ok(rows)
}

/// Inflates raw DEFLATE `data`, refusing once more than `budget` bytes
/// came out.
fn inflate(data: &[u8], budget: u64) -> Result<Vec<u8>, WeighError> {
    let mut out = Vec::new();
    flate2::bufread::DeflateDecoder::new(data)
        .take(budget.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| WeighError::Malformed(format!("a compressed part does not inflate: {e}")))?;
    if out.len() as u64 > budget {
        return Err(WeighError::InflatesPast(budget));
    }
    Ok(out)
}

/// Reads LEB128 numbers and length-prefixed fields, each bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn truncated() -> WeighError {
        WeighError::Malformed("truncated".into())
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], WeighError> {
        let len = usize::try_from(len).map_err(|_| Self::truncated())?;
        if len > self.bytes.len() {
            return Err(Self::truncated());
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn uleb(&mut self) -> Result<u64, WeighError> {
        let mut value: u64 = 0;
        for (i, b) in self.bytes.iter().take(10).enumerate() {
            let part = u64::from(b & 0x7f);
            value |= part
                .checked_shl(7 * i as u32)
                .filter(|v| v >> (7 * i as u32) == part)
                .ok_or_else(|| WeighError::Malformed("a number overflows".into()))?;
            if b & 0x80 == 0 {
                self.bytes = &self.bytes[i + 1..];
                return Ok(value);
            }
        }
        Err(Self::truncated())
    }

    fn sleb(&mut self) -> Result<i64, WeighError> {
        let mut value: i64 = 0;
        for (i, b) in self.bytes.iter().take(10).enumerate() {
            let shift = 7 * i as u32;
            value |= i64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                if shift + 7 < 64 && b & 0x40 != 0 {
                    value |= -1i64 << (shift + 7);
                }
                self.bytes = &self.bytes[i + 1..];
                return Ok(value);
            }
        }
        Err(Self::truncated())
    }

    fn bytes_prefixed(&mut self) -> Result<&'a [u8], WeighError> {
        let len = self.uleb()?;
        self.take(len)
    }

    /// A count, then that many 32-byte change hashes.
    fn hashes(&mut self) -> Result<(), WeighError> {
        let n = self.uleb()?;
        self.take(n.checked_mul(32).ok_or_else(Self::truncated)?)
            .map(drop)
    }

    /// A count, then that many length-prefixed actor ids.
    fn actors(&mut self) -> Result<(), WeighError> {
        for _ in 0..self.uleb()? {
            self.bytes_prefixed()?;
        }
        Ok(())
    }

    /// A count, then that many (specification, length) pairs.
    fn column_specs(&mut self) -> Result<Vec<ColumnSpec>, WeighError> {
        let n = self.uleb()?;
        let mut out = Vec::new();
        for _ in 0..n {
            let spec = self.uleb()?;
            let len = self.uleb()?;
            out.push(ColumnSpec { spec, len });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AssetDoc, NewMessage};
    use automerge::transaction::Transactable as _;
    use automerge::{AutoCommit, ObjType, ROOT};

    /// A change splicing `n` characters into a text, and one deleting them.
    fn text_changes(n: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut doc = AutoCommit::new();
        let text = doc.put_object(ROOT, "t", ObjType::Text).unwrap();
        doc.commit();
        doc.splice_text(&text, 0, 0, &"a".repeat(n)).unwrap();
        doc.commit();
        let mut insert = doc.get_last_local_change().unwrap().clone();
        doc.splice_text(&text, 0, n as isize, "").unwrap();
        doc.commit();
        let delete = doc.get_last_local_change().unwrap().clone();
        (
            insert.raw_bytes().to_vec(),
            insert.bytes().to_vec(),
            delete.raw_bytes().to_vec(),
        )
    }

    #[test]
    fn runs_are_counted_not_sent_bytes() {
        let (insert, compressed, delete) = text_changes(100_000);
        assert!(compressed.len() < 2_000, "{}", compressed.len());
        assert!(delete.len() < 400, "{}", delete.len());
        for (what, bytes) in [
            ("insert", &insert),
            ("compressed insert", &compressed),
            ("delete", &delete),
        ] {
            let w = weigh(bytes, u64::MAX).unwrap();
            assert!(w.rows >= 100_000 * 4, "{what}: {w:?}");
            assert!(w.rows < 100_000 * 16, "{what}: {w:?}");
            assert!(w.inflated_bytes >= bytes.len() as u64, "{what}: {w:?}");
        }
        let inflated = weigh(&compressed, u64::MAX).unwrap().inflated_bytes;
        assert!(inflated > 100_000, "{inflated}");
        assert_eq!(
            weigh(&compressed, 50_000),
            Err(WeighError::InflatesPast(50_000))
        );
    }

    #[test]
    fn our_documents_weigh_about_what_they_hold() {
        let mut doc = AssetDoc::create("t", 1);
        let base = doc.heads();
        for i in 0..200 {
            doc.append_message(NewMessage::user(format!("message {i}")), 2 + i)
                .unwrap();
        }
        let changes = doc.changes_since(&base);
        let snapshot = doc.save();
        let mut am = AutoCommit::load(&snapshot).unwrap();
        let plain = am.save_nocompress();
        let hashes: Vec<_> = am.get_changes(&[]).iter().map(|c| c.hash()).collect();
        let bundle = am.bundle(hashes).unwrap().bytes().to_vec();
        for (what, bytes) in [
            ("changes", &changes),
            ("snapshot", &snapshot),
            ("uncompressed snapshot", &plain),
            ("bundle", &bundle),
        ] {
            let w = weigh(bytes, u64::MAX).unwrap();
            // Each message is a handful of operations, each a row in each
            // of a dozen or so columns.
            assert!(w.rows > 200 * 5, "{what}: {w:?}");
            assert!(w.rows < 200 * 400, "{what}: {w:?}");
        }
        assert_eq!(
            weigh(&[changes.clone(), snapshot.clone()].concat(), u64::MAX).unwrap(),
            weigh(&changes, u64::MAX).unwrap() + weigh(&snapshot, u64::MAX).unwrap()
        );
        assert_eq!(weigh(&[], 0), Ok(Weight::default()));
    }

    /// A change chunk whose one column is `column` (type `kind`).
    fn hand_made_change(kind: u8, column: &[u8]) -> Vec<u8> {
        // No deps, a one-byte actor, seq 1, start op 1, time 0, no
        // message, no other actors, one column.
        let mut body = vec![0, 1, 0xaa, 1, 1, 0, 0, 0, 1, (1 << 4) | kind];
        body.push(column.len() as u8);
        body.extend_from_slice(column);
        let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, body.len() as u8];
        chunk.extend(body);
        chunk
    }

    #[test]
    fn a_declared_run_is_weighed_by_its_length_at_once() {
        // A run of 2^40 copies of the value 7: seven bytes.
        let run = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 7];
        let w = weigh(&hand_made_change(2, &run), u64::MAX).unwrap();
        assert_eq!(w.rows, 1 << 40);
        // Runs of nulls, literals and booleans count too.
        for (kind, column, rows) in [
            (2, vec![0x00, 0x80, 0x08], 1024),
            (2, vec![0x7d, 1, 2, 3], 3),
            (5, vec![0x7e, 1, b'a', 2, b'b', b'c'], 2),
            (3, vec![0x04, 0x7f], 4),
            (4, vec![3, 4, 5], 12),
            (7, vec![1, 2, 3, 4], 0),
        ] {
            let w = weigh(&hand_made_change(kind, &column), u64::MAX).unwrap();
            assert_eq!(w.rows, rows, "type {kind}: {column:?}");
        }
    }

    #[test]
    fn damaged_bytes_are_refused_not_misweighed() {
        let (insert, compressed, _) = text_changes(1_000);
        for bad in [
            &insert[..insert.len() - 3],
            &compressed[..compressed.len() - 1],
            b"not automerge".as_slice(),
        ] {
            assert!(
                matches!(weigh(bad, u64::MAX), Err(WeighError::Malformed(_))),
                "{} bytes",
                bad.len()
            );
        }
    }
}
