-- How an operation's input image reaches the provider (inline, presigned
-- URL, or an upload to the provider's Files API), as JSON; a resumed job
-- reuses the upload it records.

ALTER TABLE operations ADD COLUMN input TEXT;
