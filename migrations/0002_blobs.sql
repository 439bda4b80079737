-- Stored file bytes, content-addressed by sha256. A row exists only for a committed blob.

CREATE TABLE blobs (
    sha256      TEXT    PRIMARY KEY,
    size        INTEGER NOT NULL,
    store       TEXT    NOT NULL,            -- 'local' | 's3' | 'tiered'
    created_at  INTEGER NOT NULL,            -- unix seconds
    last_access INTEGER NOT NULL,            -- unix seconds; batched, so up to a few seconds behind
    hits        INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX blobs_by_last_access ON blobs (last_access);
