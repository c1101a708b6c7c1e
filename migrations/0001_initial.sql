-- The first schema: users, their SSH keys, servers, grants, the validation policy, audit events,
-- browser sessions and API tokens. The rules that must hold whoever writes (API, UI, CLI, a
-- second keyportal process) are constraints here, not only checks in code.

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT NOT NULL CONSTRAINT users_username_key UNIQUE
                  CONSTRAINT users_username_format CHECK (username ~ '^[a-z_][a-z0-9_.-]{0,31}$'),
    display_name  TEXT NOT NULL DEFAULT '' CHECK (char_length(display_name) <= 200),
    email         TEXT CHECK (email IS NULL OR (char_length(email) <= 320 AND email ~ '^[^@\s]+@[^@\s]+$')),
    role          TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    password_hash TEXT,
    disabled      BOOLEAN NOT NULL DEFAULT false,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A stored key is the validator's canonical output; it is validated again on every read.
CREATE TABLE ssh_keys (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id            BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title              TEXT NOT NULL DEFAULT '' CHECK (char_length(title) <= 200),
    algorithm          TEXT NOT NULL CHECK (algorithm ~ '^[a-z0-9@.-]{1,64}$'),
    bits               INTEGER NOT NULL CHECK (bits > 0),
    public_key         TEXT NOT NULL CHECK (public_key ~ '^[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}$'),
    comment            TEXT NOT NULL DEFAULT '' CHECK (octet_length(comment) <= 4096 AND comment !~ '[[:cntrl:]]'),
    -- Unique across all users: one key belongs to one person.
    fingerprint_sha256 TEXT NOT NULL CONSTRAINT ssh_keys_fingerprint_sha256_key UNIQUE
                       CHECK (fingerprint_sha256 ~ '^SHA256:[A-Za-z0-9+/]{43}$'),
    fingerprint_md5    TEXT NOT NULL CHECK (fingerprint_md5 ~ '^MD5:([0-9a-f]{2}:){15}[0-9a-f]{2}$'),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at         TIMESTAMPTZ,
    last_used_at       TIMESTAMPTZ,
    -- Lets grants reference (key, owner) so a grant can never name someone else's key.
    CONSTRAINT ssh_keys_id_user_key UNIQUE (id, user_id)
);
CREATE INDEX ssh_keys_user_id_idx ON ssh_keys (user_id);

CREATE TABLE servers (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL CONSTRAINT servers_name_key UNIQUE
                CONSTRAINT servers_name_format CHECK (name ~ '^[a-z0-9][a-z0-9.-]*$' AND char_length(name) <= 253),
    hostname    TEXT NOT NULL DEFAULT '' CHECK (char_length(hostname) <= 253),
    description TEXT NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A user (all their keys, or one key) may log in to a server as `login`.
CREATE TABLE grants (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_id      UUID,
    login       TEXT NOT NULL CHECK (login ~ '^[a-z_][a-z0-9_.-]{0,31}$'),
    -- Rendered authorized_keys options; a line break could inject a second key line.
    options     TEXT NOT NULL DEFAULT '' CHECK (options !~ '[[:cntrl:]]'),
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by  BIGINT REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT grants_key_owner_fkey FOREIGN KEY (key_id, user_id)
        REFERENCES ssh_keys (id, user_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX grants_all_keys_key ON grants (server_id, user_id, login) WHERE key_id IS NULL;
CREATE UNIQUE INDEX grants_one_key_key ON grants (server_id, user_id, login, key_id) WHERE key_id IS NOT NULL;
CREATE INDEX grants_server_login_idx ON grants (server_id, login);
CREATE INDEX grants_user_id_idx ON grants (user_id);

-- The validation policy: a single row; settings missing from the JSON take the built-in defaults.
CREATE TABLE policy (
    singleton   BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    settings    JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by  BIGINT REFERENCES users (id) ON DELETE SET NULL
);
INSERT INTO policy DEFAULT VALUES;

-- Who changed what. `actor` is a name, not a reference: the trail outlives deleted users.
CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action ~ '^[a-z_.]+$'),
    target      TEXT NOT NULL,
    detail      JSONB NOT NULL DEFAULT '{}',
    request_id  TEXT
);
CREATE INDEX audit_events_at_idx ON audit_events (at DESC, id DESC);

-- Browser sessions, shared by every keyportal process on this database. The id is a hash of
-- the cookie's secret, so a database dump does not hand out live sessions.
CREATE TABLE sessions (
    id           BYTEA PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Personal tokens (user_id) and server tokens (server_id); only a hash of the secret is kept.
CREATE TABLE api_tokens (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name         TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    user_id      BIGINT REFERENCES users (id) ON DELETE CASCADE,
    server_id    BIGINT REFERENCES servers (id) ON DELETE CASCADE,
    secret_hash  BYTEA NOT NULL CONSTRAINT api_tokens_secret_hash_key UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    CONSTRAINT api_tokens_one_owner CHECK (num_nonnulls(user_id, server_id) = 1)
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);
CREATE INDEX api_tokens_server_id_idx ON api_tokens (server_id);
