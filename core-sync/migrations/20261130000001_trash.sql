-- The trash: an asset's tombstone in its listing row (kept by the same
-- trigger as the rest of the projection), the blobs each document refers
-- to (recomputed lazily, only for documents whose heads moved, when blobs
-- are collected), and blobs waiting to be collected after a document was
-- dropped. Never edit a migration once it has shipped: add a new one.

ALTER TABLE documents ADD COLUMN deleted_at INTEGER;
ALTER TABLE documents ADD COLUMN deleted_by TEXT;
ALTER TABLE documents ADD COLUMN edited_after INTEGER NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN retained_since INTEGER;

-- Blob references of each document, as of the heads in blob_refs_at.
CREATE TABLE blob_refs (
    doc_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (doc_id, sha256)
) STRICT, WITHOUT ROWID;

CREATE INDEX blob_refs_by_sha ON blob_refs (sha256);

CREATE TABLE blob_refs_at (
    doc_id TEXT PRIMARY KEY NOT NULL,
    heads  BLOB NOT NULL
) STRICT;

-- Blobs a dropped document referred to, to delete once no document does
-- (written in the drop's transaction, so a crash leaves them queued).
CREATE TABLE blob_gc (
    sha256 TEXT PRIMARY KEY NOT NULL
) STRICT;

DROP TRIGGER chunks_keep_projection;

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
        heads          = CASE WHEN NEW.projection IS NULL THEN heads
                              ELSE unhex(json_extract(NEW.projection, '$.heads')) END,
        deleted_at     = CASE WHEN NEW.projection IS NULL THEN deleted_at
                              ELSE json_extract(NEW.projection, '$.deletedAt') END,
        deleted_by     = CASE WHEN NEW.projection IS NULL THEN deleted_by
                              ELSE json_extract(NEW.projection, '$.deletedBy') END,
        edited_after   = CASE WHEN NEW.projection IS NULL THEN edited_after
                              ELSE coalesce(json_extract(NEW.projection, '$.editedAfter'), 0) END,
        retained_since = CASE WHEN NEW.projection IS NULL THEN retained_since
                              ELSE json_extract(NEW.projection, '$.retainedSince') END,
        incremental_bytes = incremental_bytes + (CASE WHEN NEW.kind = 1 THEN length(NEW.bytes) ELSE 0 END),
        incremental_count = incremental_count + (NEW.kind = 1)
    WHERE doc_id = NEW.doc_id;
END;
