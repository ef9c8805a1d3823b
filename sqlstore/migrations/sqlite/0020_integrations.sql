-- Webhooks (issue 4): HTTP integrations of an account and their outbox.
-- The signing secret is sealed (AES-GCM, key derived from VALET_SECRET),
-- not hashed: signing a delivery needs it back.

CREATE TABLE integrations (
	id                   INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id           INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	type                 TEXT    NOT NULL,
	name                 TEXT    NOT NULL,
	url                  TEXT    NOT NULL,
	method               TEXT    NOT NULL,
	-- The subscribed event types, space-separated.
	triggers             TEXT    NOT NULL,
	secret_sealed        BLOB    NOT NULL,
	secret_hint          TEXT    NOT NULL,
	status               TEXT    NOT NULL,
	consecutive_failures INTEGER NOT NULL DEFAULT 0,
	-- The dispatcher's cursor: events up to it were turned into deliveries.
	last_event_id        INTEGER NOT NULL DEFAULT 0,
	app_id               INTEGER REFERENCES apps (id) ON DELETE SET NULL,
	created_by_user_id   INTEGER REFERENCES users (id) ON DELETE SET NULL,
	created_at           INTEGER NOT NULL,
	updated_at           INTEGER NOT NULL,
	disabled_at          INTEGER
) STRICT;
CREATE INDEX integrations_account ON integrations (account_id, id);
CREATE INDEX integrations_active ON integrations (id) WHERE status = 'active';
CREATE INDEX integrations_app ON integrations (app_id) WHERE app_id IS NOT NULL;
CREATE INDEX integrations_user ON integrations (created_by_user_id) WHERE created_by_user_id IS NOT NULL;

-- The outbox: one row per (integration, event), kept as the delivery log.
-- A claimed row is leased until locked_until, so that one attempt is made at
-- a time even with several nodes.
CREATE TABLE deliveries (
	id               INTEGER PRIMARY KEY AUTOINCREMENT,
	integration_id   INTEGER NOT NULL REFERENCES integrations (id) ON DELETE CASCADE,
	account_id       INTEGER NOT NULL,
	event_id         INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
	event_type       TEXT    NOT NULL,
	status           TEXT    NOT NULL,
	attempts         INTEGER NOT NULL DEFAULT 0,
	next_attempt_at  INTEGER NOT NULL,
	locked_until     INTEGER NOT NULL DEFAULT 0,
	last_status_code INTEGER NOT NULL DEFAULT 0,
	last_error       TEXT    NOT NULL DEFAULT '',
	last_attempt_at  INTEGER,
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	UNIQUE (integration_id, event_id)
) STRICT;
-- Claiming: due pending deliveries, oldest first.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE status = 'pending';
-- The delivery log: an integration's newest deliveries.
CREATE INDEX deliveries_integration ON deliveries (integration_id, id);
-- Purging an event removes its deliveries.
CREATE INDEX deliveries_event ON deliveries (event_id);
