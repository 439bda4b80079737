-- Blobs that eviction must never take: the files of hosted indexes, whose only copy they are.
-- (The truth about hosted files is the record store; this marks their blobs for this node's LRU.)

ALTER TABLE blobs ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
