-- When an installed app last called the API. Authenticating writes nothing:
-- the server batches these times in memory and flushes them (TouchGrants).
ALTER TABLE grants ADD COLUMN last_used_at INTEGER;
