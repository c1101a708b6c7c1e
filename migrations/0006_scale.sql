-- A million keys: pages that cost the page, and whole-set views (the dashboard, the policy
-- preview) answered from small tallies instead of re-validating every stored key.
--
-- The policy judges a stored key by its "shape": algorithm, bits, RSA exponent bits, comment
-- bytes and the length of its canonical line (src/keys/shape.rs). Those are columns here, the
-- last three computed by PostgreSQL from the key's own text so that no writer (this version, an
-- older one during a rolling upgrade, psql) can store a shape that disagrees with the bytes.
-- Whatever is shown is still validated from its bytes at read time, and that read compares the
-- shape it computes with these columns.

-- Bit length of the public exponent of an `ssh-rsa AAAA...` key: the blob is
-- string "ssh-rsa" (4 + 7 bytes), mpint e (4-byte length, then e), mpint n. PL/pgSQL, not SQL:
-- an SQL function here was planned again on every insert (125 us per RSA key).
CREATE FUNCTION keyportal_rsa_exponent_bits(public_key TEXT) RETURNS INTEGER
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    b BYTEA := decode(split_part(public_key, ' ', 2), 'base64');
    hex TEXT := ltrim(encode(substring(b FROM 16 FOR
                    (get_byte(b, 11) << 24) | (get_byte(b, 12) << 16) | (get_byte(b, 13) << 8) | get_byte(b, 14)),
                  'hex'), '0');
BEGIN
    IF hex = '' THEN
        RETURN 0;
    END IF;
    RETURN 4 * (length(hex) - 1)
           + (ARRAY[1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4])[('x' || left(hex, 1))::bit(4)::int];
END
$$;

ALTER TABLE ssh_keys
    ADD COLUMN rsa_exponent_bits INTEGER NOT NULL GENERATED ALWAYS AS (
        CASE WHEN algorithm = 'ssh-rsa' THEN keyportal_rsa_exponent_bits(public_key) ELSE 0 END) STORED,
    ADD COLUMN comment_bytes INTEGER NOT NULL GENERATED ALWAYS AS (octet_length(comment)) STORED,
    -- `type base64`, then ` comment` when there is one: the line the validator reads back.
    ADD COLUMN line_bytes INTEGER NOT NULL GENERATED ALWAYS AS (
        octet_length(public_key) + CASE WHEN comment = '' THEN 0 ELSE 1 + octet_length(comment) END) STORED;

-- A key's material never changes: a different key is a new key. Title, expiry and
-- last_used_at may change (those updates name other columns and do not fire this).
CREATE FUNCTION refuse_key_material_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the key material of a stored key cannot change; add a new key instead'
        USING ERRCODE = 'check_violation', CONSTRAINT = 'ssh_keys_material_immutable';
END
$$;
CREATE TRIGGER ssh_keys_material_immutable
    BEFORE UPDATE OF user_id, algorithm, bits, public_key, comment, fingerprint_sha256, fingerprint_md5 ON ssh_keys
    FOR EACH ROW
    WHEN ((OLD.user_id, OLD.algorithm, OLD.bits, OLD.public_key, OLD.comment, OLD.fingerprint_sha256, OLD.fingerprint_md5)
          IS DISTINCT FROM
          (NEW.user_id, NEW.algorithm, NEW.bits, NEW.public_key, NEW.comment, NEW.fingerprint_sha256, NEW.fingerprint_md5))
    EXECUTE FUNCTION refuse_key_material_change();

-- How many keys have each shape, kept as signed deltas: every statement that adds or removes
-- keys appends one row per shape it touched, so concurrent writers never wait on each other
-- (an UPSERT of one counter row per shape would serialise them and could deadlock). Readers
-- sum; src/store/tallies.rs folds the rows together now and then.
CREATE TABLE key_shape_tallies (
    algorithm         TEXT NOT NULL,
    bits              INTEGER NOT NULL,
    rsa_exponent_bits INTEGER NOT NULL,
    comment_bytes     INTEGER NOT NULL,
    line_bytes        INTEGER NOT NULL,
    keys              BIGINT NOT NULL
);

-- The same for whole tables the dashboard counts.
CREATE TABLE row_tallies (
    relation TEXT NOT NULL CHECK (relation IN ('users', 'servers', 'grants')),
    rows     BIGINT NOT NULL
);

CREATE FUNCTION tally_key_shapes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO key_shape_tallies
            SELECT algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes, count(*)
            FROM added GROUP BY 1, 2, 3, 4, 5;
    ELSE
        INSERT INTO key_shape_tallies
            SELECT algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes, -count(*)
            FROM removed GROUP BY 1, 2, 3, 4, 5;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ssh_keys_tally_added AFTER INSERT ON ssh_keys
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION tally_key_shapes();
CREATE TRIGGER ssh_keys_tally_removed AFTER DELETE ON ssh_keys
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION tally_key_shapes();

CREATE FUNCTION tally_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO n FROM added;
    ELSE
        SELECT -count(*) INTO n FROM removed;
    END IF;
    IF n <> 0 THEN
        INSERT INTO row_tallies VALUES (TG_TABLE_NAME, n);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_tally_added AFTER INSERT ON users
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION tally_rows();
CREATE TRIGGER users_tally_removed AFTER DELETE ON users
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION tally_rows();
CREATE TRIGGER servers_tally_added AFTER INSERT ON servers
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION tally_rows();
CREATE TRIGGER servers_tally_removed AFTER DELETE ON servers
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION tally_rows();
CREATE TRIGGER grants_tally_added AFTER INSERT ON grants
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION tally_rows();
CREATE TRIGGER grants_tally_removed AFTER DELETE ON grants
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION tally_rows();

-- TRUNCATE removes rows without row or statement triggers of the kinds above: start over.
CREATE FUNCTION reset_tallies() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'ssh_keys' THEN
        DELETE FROM key_shape_tallies;
    ELSE
        DELETE FROM row_tallies WHERE relation = TG_TABLE_NAME;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ssh_keys_tally_truncated AFTER TRUNCATE ON ssh_keys
    FOR EACH STATEMENT EXECUTE FUNCTION reset_tallies();
CREATE TRIGGER users_tally_truncated AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION reset_tallies();
CREATE TRIGGER servers_tally_truncated AFTER TRUNCATE ON servers
    FOR EACH STATEMENT EXECUTE FUNCTION reset_tallies();
CREATE TRIGGER grants_tally_truncated AFTER TRUNCATE ON grants
    FOR EACH STATEMENT EXECUTE FUNCTION reset_tallies();

-- What is there already.
INSERT INTO key_shape_tallies
    SELECT algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes, count(*)
    FROM ssh_keys GROUP BY 1, 2, 3, 4, 5;
INSERT INTO row_tallies
    SELECT 'users', count(*) FROM users
    UNION ALL SELECT 'servers', count(*) FROM servers
    UNION ALL SELECT 'grants', count(*) FROM grants;

-- Keyset pagination: each list's order, with its filter first, is one index.
DROP INDEX ssh_keys_user_id_idx;
CREATE INDEX ssh_keys_user_created_idx ON ssh_keys (user_id, created_at, id);
DROP INDEX grants_server_login_idx;
CREATE INDEX grants_server_created_idx ON grants (server_id, created_at, id);
CREATE INDEX grants_login_idx ON grants (server_id, login, user_id);
-- Deleting a key or a user must not scan every grant for the rows that point at it.
CREATE INDEX grants_key_idx ON grants (key_id) WHERE key_id IS NOT NULL;
CREATE INDEX grants_created_by_idx ON grants (created_by) WHERE created_by IS NOT NULL;
CREATE INDEX audit_events_actor_idx ON audit_events (actor, id);
CREATE INDEX audit_events_action_idx ON audit_events (action, id);
CREATE INDEX audit_events_target_idx ON audit_events (target, id);

-- The dashboard's "needs attention": keys of a shape today's policy refuses, and keys that
-- expired or expire soon.
CREATE INDEX ssh_keys_shape_idx ON ssh_keys (algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes);
CREATE INDEX ssh_keys_expires_idx ON ssh_keys (expires_at)
    INCLUDE (algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes)
    WHERE expires_at IS NOT NULL;
