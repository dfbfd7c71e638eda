-- Purging assets that stayed in the trash past the retention period (see
-- cloud-lambda/src/storage/purge.rs). Never edit a migration once it has
-- shipped: add a new one.

-- A purged document keeps its docs row (ownership, and the feed row that
-- tells devices) and loses everything else.
ALTER TABLE docs ADD COLUMN purged INTEGER NOT NULL DEFAULT 0;

-- What each document says for the purge, derived after every append.
CREATE TABLE purge_facts (
    doc_id        TEXT PRIMARY KEY NOT NULL REFERENCES docs (doc_id),
    user_id       TEXT NOT NULL,
    useq          INTEGER NOT NULL CHECK (useq >= 0),
    -- NULL when the document is not in the trash.
    trashed_since INTEGER
) STRICT;

CREATE INDEX purge_facts_due ON purge_facts (trashed_since) WHERE trashed_since IS NOT NULL;

-- Which blobs each document names: a blob is deleted only when no row
-- names it for its user.
CREATE TABLE blob_refs (
    user_id TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    doc_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, sha256, doc_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX blob_refs_by_doc ON blob_refs (doc_id);

-- Blob deletions a purge queued (in its own transaction), done after.
CREATE TABLE blob_deletions (
    user_id TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    PRIMARY KEY (user_id, sha256)
) STRICT, WITHOUT ROWID;
