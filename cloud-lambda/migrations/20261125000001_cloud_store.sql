-- The embedded cloud store (see cloud-lambda/src/storage/embedded.rs).
-- Never edit a migration once it has shipped: add a new one.

-- One row per user: the latest useq handed out (0 = none yet).
CREATE TABLE users (
    user_id   TEXT PRIMARY KEY NOT NULL,
    last_useq INTEGER NOT NULL CHECK (last_useq >= 0)
) STRICT, WITHOUT ROWID;

-- One row per document: ownership and the conditions appends and
-- compactions check. Small, because every append rewrites it.
CREATE TABLE docs (
    doc_id        TEXT PRIMARY KEY NOT NULL,
    owner         TEXT NOT NULL,
    last_useq     INTEGER NOT NULL CHECK (last_useq > 0),
    snapshot_upto INTEGER NOT NULL DEFAULT 0 CHECK (snapshot_upto <= last_useq),
    -- Heads after the latest append: concatenated 32-byte change hashes.
    heads         BLOB NOT NULL DEFAULT x''
) STRICT;

-- A document's snapshot: folds every log entry with useq <=
-- docs.snapshot_upto. Its own table so appends never rewrite it.
CREATE TABLE snapshots (
    doc_id TEXT PRIMARY KEY NOT NULL REFERENCES docs (doc_id),
    bytes  BLOB NOT NULL
) STRICT;

-- The change log: each entry a chunk of concatenated Automerge changes.
-- Compaction deletes exactly the entries with useq <= the snapshot's upto.
CREATE TABLE log (
    doc_id TEXT NOT NULL REFERENCES docs (doc_id),
    useq   INTEGER NOT NULL CHECK (useq > 0),
    bytes  BLOB NOT NULL,
    PRIMARY KEY (doc_id, useq)
) STRICT;

-- The per-user change feed: one row per document, at its latest useq, so an
-- idle poll is one range scan of the primary key (user_id, useq > cursor).
CREATE TABLE feed (
    user_id TEXT NOT NULL,
    useq    INTEGER NOT NULL,
    doc_id  TEXT NOT NULL REFERENCES docs (doc_id),
    PRIMARY KEY (user_id, useq),
    UNIQUE (user_id, doc_id)
) STRICT, WITHOUT ROWID;
