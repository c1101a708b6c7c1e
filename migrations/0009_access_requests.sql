-- Teams (issue 16), second part: time-limited access requests with approval.
--
-- A member asks for a login on a server or a server group for a while, with a reason. An
-- admin, or an owner of a user group the requester is in that already holds a grant for that
-- target and login, approves or denies with a comment; never the requester. Approval writes a
-- grant that expires at the end of the duration (`grant_id`). A request nobody decides lapses
-- at `lapses_at` (the policy's `access_request_pending_hours` after it was made).
CREATE TABLE access_requests (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    requester_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id        BIGINT REFERENCES servers (id) ON DELETE CASCADE,
    server_group_id  BIGINT REFERENCES server_groups (id) ON DELETE CASCADE,
    login            TEXT NOT NULL CHECK (login ~ '^[a-z_][a-z0-9_.-]{0,31}$'),
    duration_hours   INTEGER NOT NULL CHECK (duration_hours BETWEEN 1 AND 8760),
    reason           TEXT NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 1000 AND reason !~ '[[:cntrl:]]'),
    decision         TEXT CHECK (decision IN ('approved', 'denied')),
    decided_by       BIGINT REFERENCES users (id) ON DELETE SET NULL,
    decided_at       TIMESTAMPTZ,
    comment          TEXT NOT NULL DEFAULT '' CHECK (char_length(comment) <= 1000 AND comment !~ '[[:cntrl:]]'),
    grant_id         UUID,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    lapses_at        TIMESTAMPTZ NOT NULL,
    CONSTRAINT access_requests_one_target CHECK (num_nonnulls(server_id, server_group_id) = 1),
    CONSTRAINT access_requests_decided CHECK ((decision IS NULL) = (decided_at IS NULL)),
    CONSTRAINT access_requests_approval_grants CHECK ((decision = 'approved') = (grant_id IS NOT NULL)),
    CONSTRAINT access_requests_not_self CHECK (decided_by IS DISTINCT FROM requester_id)
);
CREATE INDEX access_requests_created_idx ON access_requests (created_at DESC, id);
CREATE INDEX access_requests_requester_idx ON access_requests (requester_id, created_at DESC);
CREATE INDEX access_requests_pending_idx ON access_requests (lapses_at) WHERE decision IS NULL;
