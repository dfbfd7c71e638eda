-- The local store. Never edit a migration once it has shipped: add a new one.

-- One row per asset: the listing projection, kept in step with the
-- document's chunks in the same transaction, so listing never loads a
-- document.
CREATE TABLE documents (
    doc_id            TEXT PRIMARY KEY NOT NULL,
    title             TEXT NOT NULL,
    cover_sha256      TEXT,
    cover_mime        TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    message_count     INTEGER NOT NULL,
    schema_version    INTEGER NOT NULL,
    -- Sizes that drive compaction.
    snapshot_bytes    INTEGER NOT NULL DEFAULT 0,
    incremental_bytes INTEGER NOT NULL DEFAULT 0,
    incremental_count INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX documents_by_updated ON documents (updated_at DESC);

-- A document is the union of its chunks: whole-document snapshots (kind 0)
-- and incremental changes (kind 1). Compaction inserts a snapshot and deletes
-- exactly the chunks folded into it, in one transaction.
CREATE TABLE chunks (
    chunk_id   INTEGER PRIMARY KEY,
    doc_id     TEXT NOT NULL,
    kind       INTEGER NOT NULL CHECK (kind IN (0, 1)),
    bytes      BLOB NOT NULL,
    -- The listing projection as of this chunk (JSON), applied to `documents`
    -- by the trigger below, or NULL when the chunk changes no listed field.
    projection TEXT
) STRICT;

CREATE INDEX chunks_by_doc ON chunks (doc_id, chunk_id);

-- An edit is one INSERT: the trigger keeps the projection row in step within
-- the same statement, so the two can never disagree and an edit costs one
-- round trip to SQLite.
CREATE TRIGGER chunks_keep_projection AFTER INSERT ON chunks
BEGIN
    SELECT RAISE(ABORT, 'chunk for an unknown document')
    WHERE NOT EXISTS (SELECT 1 FROM documents WHERE doc_id = NEW.doc_id);
    UPDATE documents SET
        title          = CASE WHEN NEW.projection IS NULL THEN title
                              ELSE json_extract(NEW.projection, '$.title') END,
        cover_sha256   = CASE WHEN NEW.projection IS NULL THEN cover_sha256
                              ELSE json_extract(NEW.projection, '$.coverSha256') END,
        cover_mime     = CASE WHEN NEW.projection IS NULL THEN cover_mime
                              ELSE json_extract(NEW.projection, '$.coverMime') END,
        updated_at     = CASE WHEN NEW.projection IS NULL THEN updated_at
                              ELSE json_extract(NEW.projection, '$.updatedAt') END,
        message_count  = CASE WHEN NEW.projection IS NULL THEN message_count
                              ELSE json_extract(NEW.projection, '$.messageCount') END,
        schema_version = CASE WHEN NEW.projection IS NULL THEN schema_version
                              ELSE json_extract(NEW.projection, '$.schemaVersion') END,
        incremental_bytes = incremental_bytes + (CASE WHEN NEW.kind = 1 THEN length(NEW.bytes) ELSE 0 END),
        incremental_count = incremental_count + (NEW.kind = 1)
    WHERE doc_id = NEW.doc_id;
END;

-- Per-document sync state: what the server is known to have.
CREATE TABLE sync_state (
    doc_id       TEXT PRIMARY KEY NOT NULL,
    cursor       INTEGER NOT NULL DEFAULT 0,
    server_heads BLOB NOT NULL DEFAULT x'',
    updated_at   INTEGER NOT NULL
) STRICT;

-- Index of the blobs on disk.
CREATE TABLE blobs (
    sha256     TEXT PRIMARY KEY NOT NULL,
    mime       TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
