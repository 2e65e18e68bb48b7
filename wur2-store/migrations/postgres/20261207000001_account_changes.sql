-- Changes to accounts that live sessions must follow (a role set, an account purged),
-- written in the same transaction as the change itself. A running server reads the rows
-- after the last one it has seen, about twice a second, and applies them to its sessions;
-- so `wur2 role` and `wur2 purge-user`, run from the operator's shell, reach a running
-- server. Rows older than an hour are deleted whenever a new one is written.
CREATE TABLE account_changes (
    -- Read in this order, after the last id seen. Writers lock the table (EXCLUSIVE, which
    -- readers do not wait for) until they commit, so ids become visible in order and a
    -- reader never skips a row that commits late.
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- ASCII-lowercased username of the account changed.
    username_key  TEXT    NOT NULL,
    -- 'role' (the account's role is to be read again) or 'purge'. Kinds a server does not
    -- know (added by a newer version) are skipped, so there is no CHECK here.
    change        TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL
);

CREATE INDEX account_changes_created_at ON account_changes (created_at_ms);
