-- Sixteen rotations per statement, as a batch of sixteen is (sqlstore/batch.go).
\set id random(1, 20000)
WITH old AS (UPDATE pgx.refresh_tokens t SET used_at = 5 WHERE t.token_hash = ANY (SELECT sha256(i::text::bytea) FROM generate_series(:id, :id+15) i) RETURNING t.id, t.grant_id, t.code_id, t.scopes, t.nonce, t.auth_time, t.family_at),
 a AS (INSERT INTO pgx.access_tokens (token_hash, grant_id, scopes, created_at, expires_at, code_id, refresh_id) SELECT gen_random_uuid()::text::bytea, grant_id, scopes, 5, 3000000000000000 + :id, code_id, id FROM old),
 r AS (INSERT INTO pgx.refresh_tokens (token_hash, grant_id, code_id, parent_id, scopes, nonce, auth_time, family_at, created_at, expires_at) SELECT gen_random_uuid()::text::bytea, grant_id, code_id, id, scopes, nonce, auth_time, family_at, 5, 3000000000000000+:id FROM old)
SELECT * FROM old;
