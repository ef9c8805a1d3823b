-- The authorization server (issue 3): app registration fields, consent
-- memory, authorization codes, rotating refresh tokens, signing keys and the
-- audit log. Secrets (client secrets, codes, tokens) are kept as SHA-256.

ALTER TABLE apps ADD COLUMN description    TEXT    NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN developer_name TEXT    NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN homepage_url   TEXT    NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN logo_url       TEXT    NOT NULL DEFAULT '';
-- One redirect URI per line, matched exactly.
ALTER TABLE apps ADD COLUMN redirect_uris  TEXT    NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN public         INTEGER NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN secret_hash    BLOB;
ALTER TABLE apps ADD COLUMN secret_hint    TEXT    NOT NULL DEFAULT '';
ALTER TABLE apps ADD COLUMN refresh_leeway INTEGER NOT NULL DEFAULT 0;
ALTER TABLE apps ADD COLUMN id_token_alg   TEXT    NOT NULL DEFAULT 'RS256';
ALTER TABLE apps ADD COLUMN owner_user_id  INTEGER REFERENCES users (id) ON DELETE SET NULL;
ALTER TABLE apps ADD COLUMN updated_at     INTEGER NOT NULL DEFAULT 0;
CREATE INDEX apps_owner ON apps (owner_user_id, created_at);

ALTER TABLE grants ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
-- One active grant per (account, user, app): consent memory unions into it.
CREATE UNIQUE INDEX grants_member_app ON grants (account_id, user_id, app_id) WHERE revoked_at IS NULL;

CREATE TABLE auth_codes (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	code_hash      BLOB    NOT NULL UNIQUE,
	grant_id       INTEGER NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
	redirect_uri   TEXT    NOT NULL,
	code_challenge TEXT    NOT NULL DEFAULT '',
	challenge_method TEXT  NOT NULL DEFAULT '',
	nonce          TEXT    NOT NULL DEFAULT '',
	scopes         TEXT    NOT NULL,
	auth_time      INTEGER NOT NULL,
	created_at     INTEGER NOT NULL,
	expires_at     INTEGER NOT NULL,
	used_at        INTEGER
) STRICT;
CREATE INDEX auth_codes_grant ON auth_codes (grant_id);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

-- Every token of a code exchange (and of the refreshes that follow it)
-- carries the code's id: a replayed code revokes them by it.
ALTER TABLE access_tokens ADD COLUMN code_id INTEGER;
ALTER TABLE access_tokens ADD COLUMN refresh_id INTEGER;
CREATE INDEX access_tokens_code ON access_tokens (code_id) WHERE code_id IS NOT NULL;

CREATE TABLE refresh_tokens (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	token_hash  BLOB    NOT NULL UNIQUE,
	grant_id    INTEGER NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
	code_id     INTEGER NOT NULL,
	parent_id   INTEGER,
	scopes      TEXT    NOT NULL,
	nonce       TEXT    NOT NULL DEFAULT '',
	auth_time   INTEGER NOT NULL,
	family_at   INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL,
	used_at     INTEGER,
	revoked_at  INTEGER
) STRICT;
CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_code ON refresh_tokens (code_id);
CREATE INDEX refresh_tokens_parent ON refresh_tokens (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- ID token signing keys; the private key is sealed (AES-GCM) with a key
-- derived from VALET_SECRET before it reaches the store.
CREATE TABLE signing_keys (
	id          TEXT    PRIMARY KEY,
	algorithm   TEXT    NOT NULL,
	sealed      BLOB    NOT NULL,
	created_at  INTEGER NOT NULL,
	retired_at  INTEGER
) STRICT;

CREATE TABLE audit_log (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id    INTEGER REFERENCES accounts (id) ON DELETE CASCADE,
	actor_user_id INTEGER,
	app_id        INTEGER,
	action        TEXT    NOT NULL,
	details       TEXT    NOT NULL,
	created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX audit_log_account ON audit_log (account_id, id);
