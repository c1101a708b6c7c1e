-- A statement trigger fires even when its INSERT adds no row. Since a key add is one statement
-- whose INSERT takes no row when the key is refused (over the quota, blocklisted), a refused
-- add ran ssh_keys_added too: it waited for the blocklist lock behind any blocklist write, and
-- held its owner's rows while waiting. With no row added there is nothing to link or count.
CREATE OR REPLACE FUNCTION ssh_keys_added() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM added) THEN
        RETURN NULL;
    END IF;
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
