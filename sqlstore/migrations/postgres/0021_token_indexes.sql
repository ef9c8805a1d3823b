-- Fewer indexes on the token tables, each of which every token grant
-- writes: a token's family is found by (grant_id, code_id), which also
-- serves the cascade when a grant is deleted; the successor of a refresh
-- token (looked up only within an app's reuse leeway) is found among its
-- family's rows instead of through an index of its own.
DROP INDEX access_tokens_grant;
DROP INDEX access_tokens_code;
CREATE INDEX access_tokens_family ON access_tokens (grant_id, code_id);
DROP INDEX refresh_tokens_grant;
DROP INDEX refresh_tokens_code;
DROP INDEX refresh_tokens_parent;
CREATE INDEX refresh_tokens_family ON refresh_tokens (grant_id, code_id);
