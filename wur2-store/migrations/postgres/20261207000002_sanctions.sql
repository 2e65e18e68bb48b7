-- Bans and mutes: at most one of each kind per account. Expiry is by the store's clock
-- (milliseconds since the Unix epoch); an expired row no longer applies and is deleted
-- whenever a sanction is next written. Deleted with the account (`wur2 purge-user`).
CREATE TABLE sanctions (
    username_key  TEXT    NOT NULL REFERENCES users (username_key) ON DELETE CASCADE,
    kind          TEXT    NOT NULL CHECK (kind IN ('ban', 'mute')),
    -- Who set it: a username as registered, or 'the operator'.
    set_by        TEXT    NOT NULL,
    reason        TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    -- NULL: until lifted.
    expires_at_ms BIGINT,
    PRIMARY KEY (username_key, kind)
);

CREATE INDEX sanctions_expires_at ON sanctions (expires_at_ms);
