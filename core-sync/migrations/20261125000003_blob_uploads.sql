-- Which local blobs the sync server has confirmed it holds.
ALTER TABLE blobs ADD COLUMN uploaded INTEGER NOT NULL DEFAULT 0;
