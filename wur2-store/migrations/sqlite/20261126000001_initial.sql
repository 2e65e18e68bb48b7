-- WUR2 schema, SQLite dialect. Times are milliseconds since the Unix epoch.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- As first typed (display form).
    username      TEXT    NOT NULL,
    -- ASCII-lowercased username: names are unique without regard to case.
    username_key  TEXT    NOT NULL UNIQUE,
    -- argon2id PHC string.
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'mod', 'admin')),
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE channels (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- As first created (display form, e.g. `Global`).
    name          TEXT    NOT NULL,
    -- ASCII-lowercased name.
    name_key      TEXT    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL
);

-- Channel messages (channel_key set) and private messages (recipient_key set).
CREATE TABLE messages (
    -- Store order: history and pending messages are replayed by it.
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The engine's MessageId (32 hex digits): a repeated append is ignored.
    message_id    TEXT    NOT NULL UNIQUE,
    channel_key   TEXT    REFERENCES channels (name_key),
    recipient_key TEXT,
    sender        TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    -- Private messages only: whether the recipient got it.
    delivered     INTEGER,
    CHECK ((channel_key IS NULL) <> (recipient_key IS NULL)),
    CHECK ((recipient_key IS NULL) = (delivered IS NULL))
);

CREATE INDEX messages_channel_history ON messages (channel_key, seq)
    WHERE channel_key IS NOT NULL;
CREATE INDEX messages_pending ON messages (recipient_key, seq)
    WHERE recipient_key IS NOT NULL AND delivered = FALSE;
