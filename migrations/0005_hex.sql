-- hex releases live in the same tables as PyPI files (ecosystem 'hex'): one `files` row per
-- release, named `{name}-{version}.tar`, with sha256 = the registry's outer checksum (what the
-- tarball must hash to), yanked = retired, upload_time = published_at. The inner checksum (the
-- tarball's own CHECKSUM, which mix and rebar3 record in their lock files) has no PyPI
-- counterpart, so it gets its own column.

ALTER TABLE files ADD COLUMN inner_checksum TEXT;
