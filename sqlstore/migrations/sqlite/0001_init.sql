-- The helpdesk core. Datetimes are INTEGER unix microseconds (as in the
-- PostgreSQL schema), so both stores run the same queries and round-trip
-- times exactly. AUTOINCREMENT keeps ids from being reused after deletes:
-- API clients and event consumers hold on to ids.

CREATE TABLE accounts (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	name         TEXT    NOT NULL UNIQUE,
	display_name TEXT    NOT NULL,
	created_at   INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	email         TEXT    NOT NULL UNIQUE,
	name          TEXT    NOT NULL,
	password_hash TEXT    NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE members (
	account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	role       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (account_id, user_id)
) STRICT;
CREATE INDEX members_user ON members (user_id);

CREATE TABLE customers (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	email       TEXT    NOT NULL DEFAULT '',
	name        TEXT    NOT NULL DEFAULT '',
	firstname   TEXT    NOT NULL DEFAULT '',
	lastname    TEXT    NOT NULL DEFAULT '',
	external_id TEXT    NOT NULL DEFAULT '',
	language    TEXT    NOT NULL DEFAULT '',
	timezone    TEXT    NOT NULL DEFAULT '',
	note        TEXT    NOT NULL DEFAULT '',
	data        TEXT,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
) STRICT;
-- Customers without an email are allowed; those with one are unique.
CREATE UNIQUE INDEX customers_email ON customers (account_id, email) WHERE email <> '';
CREATE INDEX customers_external_id ON customers (account_id, external_id) WHERE external_id <> '';
CREATE INDEX customers_created ON customers (account_id, created_at, id);
CREATE INDEX customers_updated ON customers (account_id, updated_at, id);

CREATE TABLE tickets (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id       INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	subject          TEXT    NOT NULL,
	status           TEXT    NOT NULL,
	priority         TEXT    NOT NULL,
	channel          TEXT    NOT NULL,
	via              TEXT    NOT NULL,
	customer_id      INTEGER NOT NULL REFERENCES customers (id),
	assignee_user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
	-- A copy of the ticket's tags as JSON [{id,name}], so a page of tickets
	-- needs no query per ticket; ticket_tags stays the source of truth.
	tags             TEXT    NOT NULL DEFAULT '[]',
	excerpt          TEXT    NOT NULL DEFAULT '',
	messages_count   INTEGER NOT NULL DEFAULT 0,
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	opened_at        INTEGER,
	closed_at        INTEGER
) STRICT;
-- Keyset pagination: each list order, and each equality filter with the
-- default order, has an index ending in (sort key, id), so a page is one
-- index range scan whatever the table's size. The assignee index also
-- serves "unassigned" (assignee_user_id IS NULL is an index equality). The
-- customer index leads with customer_id (ids are global) so that the
-- foreign key check of a customer delete is indexed too.
CREATE INDEX tickets_created ON tickets (account_id, created_at, id);
CREATE INDEX tickets_updated ON tickets (account_id, updated_at, id);
CREATE INDEX tickets_status_created ON tickets (account_id, status, created_at, id);
CREATE INDEX tickets_assignee_created ON tickets (account_id, assignee_user_id, created_at, id);
CREATE INDEX tickets_customer_created ON tickets (customer_id, created_at, id);

CREATE TABLE messages (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id   INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	ticket_id    INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
	public       INTEGER NOT NULL,
	channel      TEXT    NOT NULL,
	via          TEXT    NOT NULL,
	from_agent   INTEGER NOT NULL,
	-- The sender as it was when the message was written: a message is a
	-- record and does not change when the person is renamed.
	sender_id    INTEGER NOT NULL,
	sender_email TEXT    NOT NULL,
	sender_name  TEXT    NOT NULL,
	subject      TEXT    NOT NULL DEFAULT '',
	body_text    TEXT    NOT NULL DEFAULT '',
	body_html    TEXT    NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	sent_at      INTEGER
) STRICT;
CREATE INDEX messages_ticket ON messages (ticket_id, created_at, id);

CREATE TABLE tags (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	name       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (account_id, name)
) STRICT;

CREATE TABLE ticket_tags (
	ticket_id INTEGER NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
	tag_id    INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
	PRIMARY KEY (ticket_id, tag_id)
) STRICT;
CREATE INDEX ticket_tags_tag ON ticket_tags (tag_id);

CREATE TABLE events (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id  INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	type        TEXT    NOT NULL,
	object_type TEXT    NOT NULL,
	object_id   INTEGER NOT NULL,
	user_id     INTEGER,
	app_id      INTEGER,
	data        TEXT    NOT NULL,
	created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX events_account ON events (account_id, id);

-- API keys belong to a member: removing the member removes the keys.
CREATE TABLE api_keys (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id   INTEGER NOT NULL,
	user_id      INTEGER NOT NULL,
	name         TEXT    NOT NULL,
	scopes       TEXT    NOT NULL,
	hint         TEXT    NOT NULL,
	secret_hash  BLOB    NOT NULL UNIQUE,
	created_at   INTEGER NOT NULL,
	last_used_at INTEGER,
	FOREIGN KEY (account_id, user_id) REFERENCES members (account_id, user_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX api_keys_account ON api_keys (account_id, created_at);
CREATE INDEX api_keys_member ON api_keys (account_id, user_id);

-- OAuth clients. The authorization server's migration adds its columns
-- (secret hash, redirect URIs, public or confidential, owner).
CREATE TABLE apps (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	client_id  TEXT    NOT NULL UNIQUE,
	name       TEXT    NOT NULL,
	scopes     TEXT    NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE grants (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	app_id     INTEGER NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
	scopes     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	revoked_at INTEGER
) STRICT;
CREATE INDEX grants_account ON grants (account_id, app_id);
CREATE INDEX grants_user ON grants (user_id);

-- Opaque vat_ tokens: only the SHA-256 of the secret is kept. A token is
-- valid while it has not expired, it and its grant are not revoked, and the
-- grant's user is still a member of the grant's account; Authenticate checks
-- all of it in one indexed read. The janitor deletes expired rows by
-- expires_at.
CREATE TABLE access_tokens (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	token_hash BLOB    NOT NULL UNIQUE,
	grant_id   INTEGER NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
	scopes     TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	revoked_at INTEGER
) STRICT;
CREATE INDEX access_tokens_grant ON access_tokens (grant_id);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);

CREATE TABLE sessions (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	secret_hash BLOB    NOT NULL UNIQUE,
	user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
	account_id  INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
	csrf_token  TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);
