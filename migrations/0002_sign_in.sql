-- Failed sign-ins, kept for a day, so that the rate limit (per account and per client address)
-- holds across every keyportal process on this database, not per process.
CREATE TABLE sign_in_failures (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username    TEXT NOT NULL CHECK (char_length(username) <= 200),
    client_addr TEXT NOT NULL CHECK (char_length(client_addr) <= 64),
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_failures_username_idx ON sign_in_failures (username, at);
CREATE INDEX sign_in_failures_client_addr_idx ON sign_in_failures (client_addr, at);
CREATE INDEX sign_in_failures_at_idx ON sign_in_failures (at);

CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
