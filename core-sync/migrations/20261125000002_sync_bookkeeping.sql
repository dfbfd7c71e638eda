-- Sync bookkeeping: each document's current heads (so "which documents have
-- changes the server lacks" is one query against sync_state), and small
-- per-store values such as the feed cursor.

ALTER TABLE documents ADD COLUMN heads BLOB NOT NULL DEFAULT x'';

CREATE TABLE sync_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
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
        incremental_bytes = incremental_bytes + (CASE WHEN NEW.kind = 1 THEN length(NEW.bytes) ELSE 0 END),
        incremental_count = incremental_count + (NEW.kind = 1)
    WHERE doc_id = NEW.doc_id;
END;
