-- What the REST API reads without loading documents (see
-- cloud-lambda/src/storage/projection.rs): one listing per document and the
-- users' cost events. Both are derived from the documents after every
-- write. Never edit a migration once it has shipped: add a new one.

CREATE TABLE listings (
    doc_id            TEXT PRIMARY KEY NOT NULL,
    user_id           TEXT NOT NULL,
    -- The document's log position this listing was derived at: a put with
    -- an older one changes nothing.
    useq              INTEGER NOT NULL CHECK (useq >= 0),
    title             TEXT NOT NULL,
    -- The cover blob reference as JSON ({sha256, mime, width, height, bytes}).
    cover             TEXT,
    active_version_id TEXT,
    message_count     INTEGER NOT NULL CHECK (message_count >= 0),
    cost_event_count  INTEGER NOT NULL CHECK (cost_event_count >= 0),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;

-- GET /assets: a user's listings newest first, one index range per page.
CREATE INDEX listings_newest ON listings (user_id, updated_at DESC, doc_id);

CREATE TABLE cost_events (
    user_id       TEXT NOT NULL,
    doc_id        TEXT NOT NULL,
    event_id      TEXT NOT NULL,
    ts            INTEGER NOT NULL,
    provider      TEXT NOT NULL,
    model         TEXT NOT NULL,
    units         REAL NOT NULL,
    unit          TEXT NOT NULL,
    cost_nano_usd INTEGER NOT NULL,
    message_id    TEXT,
    PRIMARY KEY (user_id, doc_id, event_id)
) STRICT, WITHOUT ROWID;

-- GET /costs and /costs.csv: a user's events in a time range, in CSV order.
CREATE INDEX cost_events_by_time ON cost_events (user_id, ts, doc_id, event_id);

-- The jobs-per-hour limit counts a user's recent operations.
CREATE INDEX operations_by_user_time ON operations (user_id, created_at);
