-- Which chunks the sync server holds, so a push sends the others as they are
-- stored, without loading the document; and images the server refused (not
-- sent again until the refusal may have changed). Never edit once shipped.

ALTER TABLE chunks ADD COLUMN pushed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX chunks_unpushed ON chunks (doc_id) WHERE pushed = 0;

ALTER TABLE blobs ADD COLUMN refused TEXT;
ALTER TABLE blobs ADD COLUMN refused_at INTEGER;
