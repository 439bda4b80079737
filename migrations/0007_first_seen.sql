-- When this mirror first listed each file: the release policy's stand-in for an upload time an
-- index does not give (policy.unknown_upload_time = "first-seen"). Kept across page refreshes.
-- Files listed before this column existed count as seen at their project's last refresh (no
-- earlier than the truth, so a cooldown holds them no shorter than it should).

ALTER TABLE files ADD COLUMN first_seen INTEGER;
UPDATE files SET first_seen = (SELECT fetched_at FROM projects p WHERE p.id = files.project_id);
