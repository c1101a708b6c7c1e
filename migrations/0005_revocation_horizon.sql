-- Read replicas may serve logins, but never a revoked key. Every transaction that can take
-- access away (a key, grant, user or server deleted or changed, the policy changed) bumps one
-- counter as it commits. A login read goes to a replica only when the replica's counter has
-- caught up with the primary's, so its snapshot already holds every revocation committed
-- before the login asked. Because writers take the one row's lock, the counter's order is
-- the order of those commits.
CREATE TABLE revocation_horizon (
    singleton  BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    seq        BIGINT NOT NULL DEFAULT 0 CHECK (seq >= 0),
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO revocation_horizon DEFAULT VALUES;

-- Once per transaction, at commit time (a deferred constraint trigger). The row lock is taken
-- last, after every other lock the transaction holds, so it adds no lock-order deadlock.
CREATE FUNCTION bump_revocation_horizon() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('keyportal.revocation_bumped', true), '') <> 'on' THEN
        UPDATE revocation_horizon SET seq = seq + 1, changed_at = now();
        PERFORM set_config('keyportal.revocation_bumped', 'on', true);
    END IF;
    RETURN NULL;
END
$$;

-- Inserts only add access, and changes to last_used_at, titles or display names alter nothing a
-- login reads, so they do not bump it: sshd's own lookups must not hold replicas back.
CREATE CONSTRAINT TRIGGER ssh_keys_revoked
    AFTER DELETE ON ssh_keys DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_revocation_horizon();
CREATE CONSTRAINT TRIGGER ssh_keys_changed
    AFTER UPDATE ON ssh_keys DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN ((OLD.user_id, OLD.algorithm, OLD.bits, OLD.public_key, OLD.comment, OLD.fingerprint_sha256, OLD.expires_at)
          IS DISTINCT FROM
          (NEW.user_id, NEW.algorithm, NEW.bits, NEW.public_key, NEW.comment, NEW.fingerprint_sha256, NEW.expires_at))
    EXECUTE FUNCTION bump_revocation_horizon();

CREATE CONSTRAINT TRIGGER grants_revoked
    AFTER DELETE ON grants DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_revocation_horizon();
CREATE CONSTRAINT TRIGGER grants_changed
    AFTER UPDATE ON grants DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN ((OLD.server_id, OLD.user_id, OLD.key_id, OLD.login, OLD.options, OLD.expires_at)
          IS DISTINCT FROM
          (NEW.server_id, NEW.user_id, NEW.key_id, NEW.login, NEW.options, NEW.expires_at))
    EXECUTE FUNCTION bump_revocation_horizon();

CREATE CONSTRAINT TRIGGER users_revoked
    AFTER DELETE ON users DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_revocation_horizon();
CREATE CONSTRAINT TRIGGER users_changed
    AFTER UPDATE ON users DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN ((OLD.username, OLD.disabled) IS DISTINCT FROM (NEW.username, NEW.disabled))
    EXECUTE FUNCTION bump_revocation_horizon();

CREATE CONSTRAINT TRIGGER servers_revoked
    AFTER DELETE ON servers DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_revocation_horizon();
CREATE CONSTRAINT TRIGGER servers_changed
    AFTER UPDATE ON servers DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.name IS DISTINCT FROM NEW.name)
    EXECUTE FUNCTION bump_revocation_horizon();

CREATE CONSTRAINT TRIGGER policy_changed
    AFTER INSERT OR DELETE OR UPDATE ON policy DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_revocation_horizon();
