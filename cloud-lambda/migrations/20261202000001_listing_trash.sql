-- The asset list leaves the trash out and GET /assets?trashed=true lists
-- it (see cloud-lambda/src/storage/projection.rs): a listing says whether
-- and since when its asset is in the trash. Never edit a migration once it
-- has shipped: add a new one.

-- Both NULL while the asset is not in the trash.
ALTER TABLE listings ADD COLUMN deleted_at INTEGER;
ALTER TABLE listings ADD COLUMN retained_since INTEGER;

-- Listings of assets already in the trash are derived again at start-up
-- (the backfill relists every listing behind its document).
UPDATE listings SET useq = 0
 WHERE doc_id IN (SELECT doc_id FROM purge_facts WHERE trashed_since IS NOT NULL);
