-- The user's feed epoch: a random number naming the lineage of the user's
-- data, made on first use and renewed when a device shows the data went
-- back (a restored copy). NULL until first asked for.

ALTER TABLE users ADD COLUMN epoch INTEGER;
