-- Release-policy rules added in /admin (the configuration file's own are read from it at start
-- and on SIGHUP, never stored here). They come before the file's rules: the first match decides.

CREATE TABLE policy_rules (
    id          INTEGER PRIMARY KEY,
    ecosystem   TEXT    NOT NULL,            -- 'pypi' | 'hex'
    project     TEXT    NOT NULL,            -- a name pattern, normalized; * matches anything
    versions    TEXT,                        -- PEP 440 specifiers or a hex requirement; NULL: all
    action      TEXT    NOT NULL,            -- 'allow' | 'deny'
    reason      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,            -- unix seconds
    created_by  TEXT    NOT NULL             -- the admin session's actor
);
