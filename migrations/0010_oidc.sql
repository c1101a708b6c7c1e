-- Sign-in with the organisation's OpenID Provider (issue 17).

-- The provider account behind a keyportal user: at most one per user, and one user per
-- (issuer, subject). `subject` is the provider's stable `sub`, never the username, which the
-- provider may let change. The refresh token is how the portal asks the provider, later,
-- whether the account still exists (session re-checks and `keyportal users sync`).
CREATE TABLE oidc_identities (
    user_id       BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    issuer        TEXT NOT NULL CHECK (char_length(issuer) BETWEEN 1 AND 2000),
    subject       TEXT NOT NULL CHECK (char_length(subject) BETWEEN 1 AND 255),
    refresh_token TEXT CHECK (refresh_token IS NULL OR char_length(refresh_token) <= 8192),
    checked_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A check at the provider in flight holds this lease: no second check asks with the same
    -- refresh token meanwhile (a provider that rotates tokens would revoke the grant).
    check_lease_until TIMESTAMPTZ,
    linked_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- `keyportal users sync` disabled the user because the provider refused its refresh token;
    -- a later sign-in the provider vouches for enables it again. An admin's own choice of
    -- enabled or disabled clears it.
    disabled_by_sync BOOLEAN NOT NULL DEFAULT false,
    CONSTRAINT oidc_identities_subject_key UNIQUE (issuer, subject)
);

-- A sign-in in flight, between the redirect to the provider and its callback. The row is
-- found by a hash of `state` and deleted when used, so a callback is accepted once; the
-- browser must also present the same state in a cookie (login CSRF).
CREATE TABLE oidc_sign_in_attempts (
    state_hash    BYTEA PRIMARY KEY,
    nonce         TEXT NOT NULL CHECK (char_length(nonce) BETWEEN 16 AND 200),
    pkce_verifier TEXT NOT NULL CHECK (char_length(pkce_verifier) BETWEEN 43 AND 128),
    next_path     TEXT NOT NULL CHECK (char_length(next_path) <= 2000),
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX oidc_sign_in_attempts_expires_idx ON oidc_sign_in_attempts (expires_at);

-- Whose membership list a user group follows: 'portal' groups are managed by hand and a
-- sign-in never touches them; 'provider' groups mirror the provider's groups claim.
ALTER TABLE user_groups ADD COLUMN managed_by TEXT NOT NULL DEFAULT 'portal'
    CONSTRAINT user_groups_managed_by CHECK (managed_by IN ('portal', 'provider'));

-- The ID token of a provider sign-in, sent back as `id_token_hint` at sign-out.
ALTER TABLE sessions ADD COLUMN oidc_id_token TEXT
    CHECK (oidc_id_token IS NULL OR char_length(oidc_id_token) <= 16384);
