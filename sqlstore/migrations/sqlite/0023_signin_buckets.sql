-- Failed sign-ins per email and per client address, as leaky buckets that
-- every node shares (ReserveSignIn): key_hash is the SHA-256 of the key,
-- level the attempts in the bucket at touched_at (µs), before draining.
CREATE TABLE signin_buckets (
    key_hash BLOB PRIMARY KEY,
    level REAL NOT NULL,
    touched_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX signin_buckets_touched_at ON signin_buckets (touched_at);
