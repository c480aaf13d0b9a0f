-- Bytes an upload of unknown size (Uppy's /s3 routes) may have staged in S3: its part URLs bind
-- no length, so every part signed counts at the largest size S3 accepts for a part (the highest
-- part number signed × that size). NULL for uploads of declared size, whose size counts instead.
ALTER TABLE uploads ADD COLUMN staged_bytes BIGINT;
