-- The integration hub's own database (valet hub, issue 4), recorded in
-- hub_schema_migrations: every table is prefixed hub_, so a hub pointed at
-- the helpdesk's database by mistake collides with nothing. Datetimes are
-- INTEGER unix microseconds, as in the helpdesk schema.

-- People signed in with "Sign in with valet", by their OpenID identity.
CREATE TABLE hub_users (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	issuer     TEXT    NOT NULL,
	subject    TEXT    NOT NULL,
	email      TEXT    NOT NULL DEFAULT '',
	name       TEXT    NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	UNIQUE (issuer, subject)
) STRICT;

-- Dashboard sessions: only the SHA-256 of the vss_ secret is kept.
CREATE TABLE hub_sessions (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	secret_hash BLOB    NOT NULL UNIQUE,
	user_id     INTEGER NOT NULL REFERENCES hub_users (id) ON DELETE CASCADE,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX hub_sessions_user ON hub_sessions (user_id, expires_at);

-- Connections to helpdesk accounts. The tokens and the webhook secret are
-- sealed by the hub's vault (AES-256-GCM) under key_id before they get
-- here. The refresh lease (lease_owner until lease_until) is held by one hub
-- process at a time; fence increases with every lease granted and every
-- reconnect, so a stale holder's write is refused.
CREATE TABLE hub_connections (
	id                INTEGER PRIMARY KEY AUTOINCREMENT,
	provider          TEXT    NOT NULL,
	base_url          TEXT    NOT NULL,
	account           TEXT    NOT NULL,
	-- The granted scopes, space-separated.
	scopes            TEXT    NOT NULL,
	status            TEXT    NOT NULL,
	connected_by      INTEGER REFERENCES hub_users (id) ON DELETE SET NULL,
	key_id            TEXT    NOT NULL,
	access_token      BLOB    NOT NULL,
	refresh_token     BLOB,
	webhook_secret    BLOB,
	access_expires_at INTEGER NOT NULL,
	next_refresh_at   INTEGER NOT NULL,
	last_refresh_at   INTEGER,
	last_error        TEXT    NOT NULL DEFAULT '',
	failures          INTEGER NOT NULL DEFAULT 0,
	-- The webhook registered on the helpdesk (its id there), 0 if none.
	integration_id    INTEGER NOT NULL DEFAULT 0,
	event_cursor      INTEGER NOT NULL DEFAULT 0,
	generation        INTEGER NOT NULL DEFAULT 1,
	lease_owner       TEXT,
	lease_until       INTEGER,
	fence             INTEGER NOT NULL DEFAULT 0,
	created_at        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL,
	revoked_at        INTEGER,
	last_used_at      INTEGER,
	UNIQUE (provider, base_url, account)
) STRICT;
-- DueConnections: the refreshable connections, soonest first. The query
-- repeats this WHERE word for word, so that both databases use the index.
CREATE INDEX hub_connections_due ON hub_connections (next_refresh_at, id) WHERE status IN ('active', 'degraded');
-- ListConnections of one user, newest first.
CREATE INDEX hub_connections_user ON hub_connections (connected_by, id);

-- Helpdesk events received by webhook or by polling, once each.
CREATE TABLE hub_activity (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	connection_id INTEGER NOT NULL REFERENCES hub_connections (id) ON DELETE CASCADE,
	event_id      INTEGER NOT NULL,
	event_type    TEXT    NOT NULL,
	summary       TEXT    NOT NULL DEFAULT '',
	via           TEXT    NOT NULL,
	received_at   INTEGER NOT NULL,
	UNIQUE (connection_id, event_id)
) STRICT;
-- ListActivity of one user's connections, newest first.
CREATE INDEX hub_activity_connection ON hub_activity (connection_id, id);
