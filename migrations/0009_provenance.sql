-- PEP 740 provenance: where each listed file's provenance object is upstream (as the index
-- gave it), and the blob pkgmirror keeps of each one it fetched, so the `.provenance` route
-- serves it from the store with no upstream request from then on (attestations then work
-- offline). Keyed by the upstream URL, like `wheel_metadata` by the wheel: a provenance object
-- does not change under its URL, and the row must outlive the file rows each refresh rewrites.

ALTER TABLE files ADD COLUMN provenance_url TEXT;

CREATE TABLE provenance (
    url        TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
