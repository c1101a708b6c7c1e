-- Teams (issue 16), first part: user groups, server groups, and grants that name a group.
--
-- A grant between one user and one server stays in `grants`, unchanged. A grant that names a
-- user group or a server group (or both) lives in `group_grants`. The login path reads the
-- union of both, resolving group membership as it reads, so a membership change counts at the
-- next login.

CREATE TABLE user_groups (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL CONSTRAINT user_groups_name_key UNIQUE
                CONSTRAINT user_groups_name_format CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    description TEXT NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000 AND description !~ '[[:cntrl:]]'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Owners manage their group's members (and, later, approve its access requests). An owner
-- need not be a member.
CREATE TABLE user_group_members (
    group_id    BIGINT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX user_group_members_user_idx ON user_group_members (user_id);

CREATE TABLE user_group_owners (
    group_id    BIGINT NOT NULL REFERENCES user_groups (id) ON DELETE CASCADE,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX user_group_owners_user_idx ON user_group_owners (user_id);

CREATE TABLE server_groups (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT NOT NULL CONSTRAINT server_groups_name_key UNIQUE
                CONSTRAINT server_groups_name_format CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    description TEXT NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000 AND description !~ '[[:cntrl:]]'),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE server_group_members (
    group_id    BIGINT NOT NULL REFERENCES server_groups (id) ON DELETE CASCADE,
    server_id   BIGINT NOT NULL REFERENCES servers (id) ON DELETE CASCADE,
    added_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, server_id)
);
CREATE INDEX server_group_members_server_idx ON server_group_members (server_id);

-- Exactly one of user / user group and one of server / server group, and at least one group
-- (a user-and-server grant is a row of `grants`). All of a user's keys: no key_id here.
CREATE TABLE group_grants (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    server_id       BIGINT REFERENCES servers (id) ON DELETE CASCADE,
    server_group_id BIGINT REFERENCES server_groups (id) ON DELETE CASCADE,
    user_id         BIGINT REFERENCES users (id) ON DELETE CASCADE,
    user_group_id   BIGINT REFERENCES user_groups (id) ON DELETE CASCADE,
    login           TEXT NOT NULL CHECK (login ~ '^[a-z_][a-z0-9_.-]{0,31}$'),
    options         TEXT NOT NULL DEFAULT '' CHECK (options !~ '[[:cntrl:]]'),
    expires_at      TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by      BIGINT REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT group_grants_one_server CHECK (num_nonnulls(server_id, server_group_id) = 1),
    CONSTRAINT group_grants_one_user CHECK (num_nonnulls(user_id, user_group_id) = 1),
    CONSTRAINT group_grants_names_a_group CHECK (server_group_id IS NOT NULL OR user_group_id IS NOT NULL)
);
CREATE UNIQUE INDEX group_grants_target_key ON group_grants
    (server_id, server_group_id, user_id, user_group_id, login) NULLS NOT DISTINCT;
-- The login path's ways in: by server (direct), by server group, by user, by user group.
CREATE INDEX group_grants_server_idx ON group_grants (server_id, login) WHERE server_id IS NOT NULL;
CREATE INDEX group_grants_server_group_idx ON group_grants (server_group_id, login) WHERE server_group_id IS NOT NULL;
CREATE INDEX group_grants_user_idx ON group_grants (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX group_grants_user_group_idx ON group_grants (user_group_id) WHERE user_group_id IS NOT NULL;
