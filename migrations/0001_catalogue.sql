-- The durable truth about what pkgmirror knows: upstream indexes, projects and their files.
-- Applied once at start-up (tracked with PRAGMA user_version); never edit a released migration,
-- add a new numbered file instead.

CREATE TABLE indexes (
    id          INTEGER PRIMARY KEY,
    ecosystem   TEXT    NOT NULL,
    url         TEXT    NOT NULL,            -- without credentials
    ttl_secs    INTEGER NOT NULL,
    UNIQUE (ecosystem, url)
);

CREATE TABLE projects (
    id           INTEGER PRIMARY KEY,
    ecosystem    TEXT    NOT NULL,           -- 'pypi' | 'hex'
    name         TEXT    NOT NULL,           -- normalized
    display_name TEXT    NOT NULL,
    last_serial  INTEGER,
    status       TEXT,                       -- PEP 792 project status, when known
    fetched_at   INTEGER NOT NULL,           -- unix seconds of the last successful refresh
    UNIQUE (ecosystem, name)
);

CREATE TABLE files (
    id               INTEGER PRIMARY KEY,
    project_id       INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    index_id         INTEGER NOT NULL REFERENCES indexes (id),
    filename         TEXT    NOT NULL,
    version          TEXT,
    url              TEXT    NOT NULL,       -- absolute upstream URL, never with credentials
    sha256           TEXT,
    size             INTEGER,
    requires_python  TEXT,
    yanked           INTEGER NOT NULL DEFAULT 0,
    yanked_reason    TEXT,
    upload_time      TEXT,
    has_metadata     INTEGER NOT NULL DEFAULT 0,
    metadata_sha256  TEXT,
    UNIQUE (project_id, filename)
);

CREATE INDEX files_by_sha256 ON files (sha256);
