-- PurgeActivity deletes the oldest activity by its reception time.
CREATE INDEX hub_activity_received ON hub_activity (received_at);
