-- Core metadata pkgmirror extracted from cached wheels whose index offers none (PEP 658), so
-- project pages can advertise it from then on. Keyed by the wheel's sha256: the same bytes
-- always have the same METADATA.

CREATE TABLE wheel_metadata (
    wheel_sha256    TEXT PRIMARY KEY,
    metadata_sha256 TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
