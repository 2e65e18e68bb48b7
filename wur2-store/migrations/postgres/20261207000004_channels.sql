-- Channels that last: a channel registered by its first joiner keeps its owner, topic and
-- privacy when it is empty, and invitations let users join it while it is private. Rows
-- created before this migration (by message appends) keep no owner.

-- The owner's username_key; NULL for the default channel, older channels, and channels
-- whose owner deleted their account.
ALTER TABLE channels ADD COLUMN owner_key TEXT;
-- When the first joiner registered the channel; NULL for a row created otherwise (by a
-- message, a topic or privacy set on it, an invitation, or before this migration): a
-- registration claims such a row, with its owner.
ALTER TABLE channels ADD COLUMN registered_at_ms BIGINT;
-- NULL when no topic is set.
ALTER TABLE channels ADD COLUMN topic TEXT;
-- Whether only the owner, the invited, mods and admins may join.
ALTER TABLE channels ADD COLUMN private BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE channel_invites (
    channel_key   TEXT    NOT NULL REFERENCES channels (name_key),
    -- The invitee's username_key; deleted with the account.
    username_key  TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (channel_key, username_key)
);

CREATE INDEX channel_invites_user ON channel_invites (username_key);
