-- Each stored key names its blocklist entry, so a read finds the entry without probing the
-- blocklist. Reads joined the blocklist by fingerprint, one probe per key read: the
-- authorized_keys of a login with 10,000 keys spent 3 ms of a 7 ms statement on it with an
-- empty blocklist and 21 ms with 100,000 entries (docs/performance.md). A key with no entry
-- (nearly all) now costs a NULL test.
--
-- The link is the database's to keep, whoever writes: adding an entry links the stored keys
-- with its fingerprint, inserting keys links those already listed, and deleting an entry
-- unlinks them (the foreign key). The foreign key includes the fingerprint, so a key can only
-- name the entry for its own fingerprint.
ALTER TABLE blocklist ADD CONSTRAINT blocklist_id_fingerprint_key UNIQUE (id, fingerprint_sha256);
ALTER TABLE ssh_keys
    ADD COLUMN blocklist_id UUID,
    ADD CONSTRAINT ssh_keys_blocklist_entry_fkey FOREIGN KEY (blocklist_id, fingerprint_sha256)
        REFERENCES blocklist (id, fingerprint_sha256) ON DELETE SET NULL (blocklist_id);
CREATE INDEX ssh_keys_blocklisted_idx ON ssh_keys (blocklist_id) WHERE blocklist_id IS NOT NULL;
UPDATE ssh_keys k SET blocklist_id = b.id FROM blocklist b WHERE b.fingerprint_sha256 = k.fingerprint_sha256;

-- A key inserted while an entry for it is being added must end up linked. Writers of the
-- blocklist hold this advisory lock ("kpbl" in ASCII) exclusively, and statements inserting
-- keys hold it shared, each from before its first row until its transaction ends. Whichever
-- comes second links in a later query, whose snapshot (READ COMMITTED: each query in these
-- volatile functions takes a new one) holds the other's committed rows. Key inserts wait only
-- for a blocklist write in progress or queued; logins insert nothing and take no part in it.
-- keyportal's key inserts hold their owner's row only FOR NO KEY UPDATE
-- (store::keys::lock_owner_and_count), so a blocklist writer's foreign key check on
-- `added_by` (KEY SHARE) never waits for a key insert that waits for this lock.
-- Only writes that change which fingerprints are listed take it: deleting a user sets
-- `added_by` to NULL and must not wait for key inserts.
CREATE FUNCTION blocklist_lock_for_writing() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(x'6b70626c'::int8);
    RETURN NULL;
END
$$;
CREATE TRIGGER blocklist_lock_for_writing
    BEFORE INSERT OR DELETE ON blocklist
    FOR EACH STATEMENT EXECUTE FUNCTION blocklist_lock_for_writing();

-- An entry's fingerprint never changes (the links are made on insert): delete and add instead.
CREATE FUNCTION refuse_blocklist_fingerprint_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a blocklist entry''s fingerprint cannot change; delete the entry and add another'
        USING ERRCODE = 'check_violation', CONSTRAINT = 'blocklist_fingerprint_immutable';
END
$$;
CREATE TRIGGER blocklist_fingerprint_immutable
    BEFORE UPDATE OF id, fingerprint_sha256 ON blocklist
    FOR EACH ROW
    WHEN ((OLD.id, OLD.fingerprint_sha256) IS DISTINCT FROM (NEW.id, NEW.fingerprint_sha256))
    EXECUTE FUNCTION refuse_blocklist_fingerprint_change();

CREATE FUNCTION ssh_keys_lock_blocklist() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(x'6b70626c'::int8);
    RETURN NULL;
END
$$;
CREATE TRIGGER ssh_keys_lock_blocklist
    BEFORE INSERT ON ssh_keys
    FOR EACH STATEMENT EXECUTE FUNCTION ssh_keys_lock_blocklist();

CREATE FUNCTION blocklist_link_keys() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ssh_keys k SET blocklist_id = a.id
      FROM added a WHERE k.fingerprint_sha256 = a.fingerprint_sha256;
    RETURN NULL;
END
$$;
CREATE TRIGGER blocklist_link_keys
    AFTER INSERT ON blocklist REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION blocklist_link_keys();

-- Inserted keys are rarely listed (the service refuses listed keys before inserting), so the
-- UPDATE, and the statement triggers every UPDATE fires, run only when one is.
CREATE FUNCTION ssh_keys_link_blocklist() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM added a JOIN blocklist b ON b.fingerprint_sha256 = a.fingerprint_sha256) THEN
        UPDATE ssh_keys k SET blocklist_id = b.id
          FROM added a JOIN blocklist b ON b.fingerprint_sha256 = a.fingerprint_sha256
         WHERE k.id = a.id;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ssh_keys_link_blocklist
    AFTER INSERT ON ssh_keys REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION ssh_keys_link_blocklist();

-- An entry takes access away: like every other revocation, it advances the horizon, so a
-- read replica that has not replayed it is not asked for logins (0005_revocation_horizon).
-- Named to fire before blocklist_changed_krl (deferred triggers of one event fire in name
-- order): every transaction locks the horizon's row before the KRL's, as key deletions do.
CREATE CONSTRAINT TRIGGER blocklist_added_moves_horizon
    AFTER INSERT ON blocklist DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_revocation_horizon();
