-- Documents the sync server refused (a 4xx that the same push would meet
-- again), with its reason: set aside so the others sync, shown to the user,
-- and offered again once the refusal may have changed. Never edit once
-- shipped.

CREATE TABLE refused_docs (
    doc_id     TEXT PRIMARY KEY NOT NULL,
    reason     TEXT NOT NULL,
    refused_at INTEGER NOT NULL
) STRICT;
