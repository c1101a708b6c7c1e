-- Each user's number of keys, kept by the database for the per-user quota. Counting the keys
-- at every add read one heap page per key (pages written since the last vacuum are not
-- all-visible): 0.12-0.27 ms a submission at 100-300 keys, the dearest statement of a key add.
-- Triggers keep it, so every writer (API, page, CLI, identity-provider sync, plain SQL) keeps
-- it right. A table of its own rather than a column of `users`: an update of `users` runs its
-- checks and row triggers, 0.13-0.18 ms against 0.04 ms here. A key never changes owner
-- (ssh_keys_material_immutable), so inserts, deletes and TRUNCATE are all there is to follow.

-- Portals of the previous release keep serving while this runs (docs/operations.md): none may
-- add or remove a user or key between the count below and the triggers after it. The DROP
-- TRIGGERs below need ssh_keys ACCESS EXCLUSIVE anyway; taken here, first, it cannot deadlock
-- with such a portal's add, which reads ssh_keys (its count) before inserting into it. Key
-- reads, logins included, wait for this migration too: as long as the count below takes
-- (not measured at a million keys).
LOCK TABLE ssh_keys IN ACCESS EXCLUSIVE MODE;
LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE user_key_counts (
    user_id BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    keys    INTEGER NOT NULL DEFAULT 0 CHECK (keys >= 0)
);

INSERT INTO user_key_counts (user_id, keys)
SELECT u.id, (SELECT count(*) FROM ssh_keys k WHERE k.user_id = u.id) FROM users u;

CREATE FUNCTION start_user_key_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO user_key_counts (user_id) SELECT id FROM added;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_key_count_started AFTER INSERT ON users
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION start_user_key_counts();

-- Deletes: the count follows. A key delete updates the owner's count after its row is gone,
-- so it takes the owner's rows first, as an add does (delete_key in src/service/keys.rs).
-- The previous release's deletes do not: while both releases serve, a delete and an add of
-- the same key at the same moment can deadlock, and PostgreSQL aborts one of them.
CREATE FUNCTION uncount_user_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A user deleted with their keys may have lost this row already: nothing to update.
    UPDATE user_key_counts c SET keys = c.keys - r.n
      FROM (SELECT user_id, count(*) AS n FROM removed GROUP BY user_id) r
     WHERE c.user_id = r.user_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER ssh_keys_count_removed AFTER DELETE ON ssh_keys
    REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION uncount_user_keys();

-- Inserts: one trigger does what three did (0014's blocklist lock and link, 0006's tally) and
-- counts. Each PL/pgSQL trigger call cost 30-40 µs beyond its own statement, most of a
-- single-key add's trigger time (docs/performance.md, "Key submission").
--
-- The blocklist lock of 0014 is taken here, after the rows went in rather than before: what
-- it orders is this check against a blocklist writer's linking query, and rows this
-- transaction inserted are seen by no one before it commits, so holding the lock from before
-- the check is enough. Lock order is unchanged: the service's inserts hold their owner's rows
-- (users, user_key_counts) before this lock, as before.
CREATE FUNCTION ssh_keys_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(x'6b70626c'::int8);
    -- Inserted keys are rarely listed (the service refuses listed keys before inserting), so
    -- the UPDATE, and the statement triggers every UPDATE fires, run only when one is.
    IF EXISTS (SELECT 1 FROM added a JOIN blocklist b ON b.fingerprint_sha256 = a.fingerprint_sha256) THEN
        UPDATE ssh_keys k SET blocklist_id = b.id
          FROM added a JOIN blocklist b ON b.fingerprint_sha256 = a.fingerprint_sha256
         WHERE k.id = a.id;
    END IF;
    WITH tallied AS (
        INSERT INTO key_shape_tallies
            SELECT algorithm, bits, rsa_exponent_bits, comment_bytes, line_bytes, count(*)
            FROM added GROUP BY 1, 2, 3, 4, 5
    )
    UPDATE user_key_counts c SET keys = c.keys + a.n
      FROM (SELECT user_id, count(*) AS n FROM added GROUP BY user_id) a
     WHERE c.user_id = a.user_id;
    RETURN NULL;
END
$$;
DROP TRIGGER ssh_keys_lock_blocklist ON ssh_keys;
DROP TRIGGER ssh_keys_link_blocklist ON ssh_keys;
DROP TRIGGER ssh_keys_tally_added ON ssh_keys;
DROP FUNCTION ssh_keys_lock_blocklist();
DROP FUNCTION ssh_keys_link_blocklist();
CREATE TRIGGER ssh_keys_added AFTER INSERT ON ssh_keys
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION ssh_keys_added();

-- TRUNCATE fires no row or transition-table triggers.
CREATE FUNCTION reset_user_key_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_key_counts SET keys = 0 WHERE keys <> 0;
    RETURN NULL;
END
$$;
CREATE TRIGGER ssh_keys_count_truncated AFTER TRUNCATE ON ssh_keys
    FOR EACH STATEMENT EXECUTE FUNCTION reset_user_key_counts();
