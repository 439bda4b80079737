-- What the web UI browses, searches and sorts on, kept per project so a page of 100,000 projects
-- is read in index order and stops at its LIMIT instead of aggregating every blob per request.

ALTER TABLE projects ADD COLUMN cached_files INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projects ADD COLUMN cached_bytes INTEGER NOT NULL DEFAULT 0;
-- Unix seconds of the newest read of any of the project's cached files; NULL when none is cached.
ALTER TABLE projects ADD COLUMN last_access INTEGER;

CREATE INDEX projects_by_last_access ON projects (ecosystem, last_access DESC, name);
CREATE INDEX projects_by_cached_bytes ON projects (ecosystem, cached_bytes DESC, name);
CREATE INDEX blobs_by_created_at ON blobs (created_at);

-- The usage columns follow the blobs table. A stored or removed blob recounts the projects that
-- list it; a read only moves last_access forward, which needs no recount.
CREATE TRIGGER blob_stored AFTER INSERT ON blobs BEGIN
    UPDATE projects SET (cached_files, cached_bytes, last_access) = (
        SELECT count(b.sha256), coalesce(sum(b.size), 0), max(b.last_access)
        FROM files f JOIN blobs b ON b.sha256 = f.sha256
        WHERE f.project_id = projects.id)
    WHERE id IN (SELECT project_id FROM files WHERE sha256 = NEW.sha256);
END;

CREATE TRIGGER blob_removed AFTER DELETE ON blobs BEGIN
    UPDATE projects SET (cached_files, cached_bytes, last_access) = (
        SELECT count(b.sha256), coalesce(sum(b.size), 0), max(b.last_access)
        FROM files f JOIN blobs b ON b.sha256 = f.sha256
        WHERE f.project_id = projects.id)
    WHERE id IN (SELECT project_id FROM files WHERE sha256 = OLD.sha256);
END;

CREATE TRIGGER blob_read AFTER UPDATE OF last_access ON blobs
WHEN NEW.last_access > OLD.last_access BEGIN
    UPDATE projects SET last_access = max(coalesce(last_access, 0), NEW.last_access)
    WHERE id IN (SELECT project_id FROM files WHERE sha256 = NEW.sha256);
END;

UPDATE projects SET (cached_files, cached_bytes, last_access) = (
    SELECT count(b.sha256), coalesce(sum(b.size), 0), max(b.last_access)
    FROM files f JOIN blobs b ON b.sha256 = f.sha256
    WHERE f.project_id = projects.id);

-- Every action taken from the admin pages, newest last.
CREATE TABLE admin_log (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,                -- unix seconds
    actor   TEXT    NOT NULL,                -- who: the client address and how it was admitted
    action  TEXT    NOT NULL,                -- 'sign-in', 'forget-project', 'gc', ...
    target  TEXT,                            -- the project or file acted on
    outcome TEXT    NOT NULL                 -- 'ok', or what went wrong
);
