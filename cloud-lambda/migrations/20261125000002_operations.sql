-- Provider jobs: one row per tool-request message (the primary key makes
-- creation a conditional write), and the webhook deliveries already seen.

CREATE TABLE operations (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    doc_id       TEXT NOT NULL,
    status       TEXT NOT NULL,
    provider_ref TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX operations_by_provider_ref ON operations (provider_ref) WHERE provider_ref IS NOT NULL;
CREATE INDEX operations_unfinished ON operations (status) WHERE status IN ('queued', 'running');

CREATE TABLE webhook_deliveries (
    webhook_id TEXT PRIMARY KEY NOT NULL,
    seen_at    INTEGER NOT NULL
) STRICT;
