-- Leases: the runner of an operation (an owner id) and until when its claim
-- holds (unix milliseconds), taken and renewed with conditional updates, so
-- a job runs once across processes sharing the database.

ALTER TABLE operations ADD COLUMN lease_owner TEXT;
ALTER TABLE operations ADD COLUMN lease_expires_at INTEGER;
