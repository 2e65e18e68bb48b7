-- Resume tokens (`/token`, `/resume`): a client logs in again with one hash lookup instead
-- of an argon2 check. Only the SHA-256 of a token is kept (64 hex digits); the token
-- itself is shown to its user once. Revoked by `/password`, `/logout-everywhere`, a ban
-- and the account's purge, and past `expires_at_ms`.
CREATE TABLE resume_tokens (
    -- Issue order: past 20 tokens an account forgets its oldest.
    id            BIGSERIAL PRIMARY KEY,
    token_hash    TEXT   NOT NULL UNIQUE,
    username_key  TEXT   NOT NULL REFERENCES users (username_key) ON DELETE CASCADE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE INDEX resume_tokens_account ON resume_tokens (username_key);
