-- Every refresh grant marks the refresh token it rotates used, and every
-- code exchange its code. On pages filled to the brim that update cannot
-- stay on the row's page, so PostgreSQL writes the new row version
-- elsewhere and adds it to each of the table's indexes (a run of refresh
-- grants saw 77% of its updates go that way). Room left on each page
-- keeps the update there (a heap-only tuple: no index is touched). Only
-- pages filled from now on leave the room.
ALTER TABLE refresh_tokens SET (fillfactor = 50);
ALTER TABLE auth_codes SET (fillfactor = 50);
