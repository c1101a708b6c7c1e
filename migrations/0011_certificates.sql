-- SSH certificates (issue 18): every certificate the portal's CAs sign, and the KRL's version.
--
-- A certificate outlives the key it was issued for (the KRL must go on naming it until it
-- expires), so `key_id` and `server_id` are plain values, not references that would cascade.
CREATE TABLE certificates (
    -- The certificate's serial. OpenSSH rejects a whole KRL that names serial 0, so serials
    -- start at 1 and only grow.
    serial             BIGINT GENERATED ALWAYS AS IDENTITY (START WITH 1 MINVALUE 1) PRIMARY KEY,
    kind               TEXT NOT NULL CHECK (kind IN ('user', 'host')),
    -- SHA256 fingerprint of the CA key that signed it.
    ca_fingerprint     TEXT NOT NULL CHECK (ca_fingerprint ~ '^SHA256:[A-Za-z0-9+/]{43}$'),
    -- User certificates: the stored key and its owner at issuance.
    key_id             UUID,
    user_id            BIGINT REFERENCES users (id) ON DELETE SET NULL,
    username           TEXT,
    -- Host certificates: the server; user certificates: the server asked for, if one.
    server_name        TEXT,
    -- The certified public key's fingerprint (the plain key's).
    fingerprint_sha256 TEXT NOT NULL CHECK (fingerprint_sha256 ~ '^SHA256:[A-Za-z0-9+/]{43}$'),
    -- The certificate's key id, `keyportal:<user>:<key id>:<serial>` for user certificates.
    cert_key_id        TEXT NOT NULL CHECK (char_length(cert_key_id) BETWEEN 1 AND 512 AND cert_key_id !~ '[[:cntrl:]]'),
    principals         TEXT[] NOT NULL CHECK (cardinality(principals) BETWEEN 1 AND 256),
    valid_after        TIMESTAMPTZ NOT NULL,
    valid_before       TIMESTAMPTZ NOT NULL,
    issued_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    issued_by          TEXT NOT NULL,
    revoked_at         TIMESTAMPTZ,
    revoked_reason     TEXT CHECK (revoked_reason IN ('revoked', 'key_deleted', 'key_blocklisted', 'key_compromised', 'user_disabled')),
    CONSTRAINT certificates_serial_positive CHECK (serial >= 1),
    CONSTRAINT certificates_validity CHECK (valid_before > valid_after),
    CONSTRAINT certificates_user_fields CHECK (kind = 'host' OR (key_id IS NOT NULL AND username IS NOT NULL)),
    CONSTRAINT certificates_host_fields CHECK (kind = 'user' OR server_name IS NOT NULL),
    CONSTRAINT certificates_revocation CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX certificates_key_idx ON certificates (key_id) WHERE revoked_at IS NULL;
CREATE INDEX certificates_user_idx ON certificates (user_id) WHERE revoked_at IS NULL;
CREATE INDEX certificates_fingerprint_idx ON certificates (fingerprint_sha256) WHERE revoked_at IS NULL;
-- The KRL lists revoked certificates until they expire.
CREATE INDEX certificates_revoked_idx ON certificates (valid_before) WHERE revoked_at IS NOT NULL;

-- The KRL's version: it only grows, and grows in the transaction that changes what the KRL
-- holds, so a reader that sees version N sees every revocation committed up to N. Writers take
-- the one row's lock, so versions follow commit order. A version is at least the Unix time of
-- its change, so a database restored from an older backup still hands out versions above the
-- ones servers installed before (fetch-krl refuses to go back).
CREATE TABLE krl_state (
    singleton  BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    version    BIGINT NOT NULL DEFAULT extract(epoch FROM now())::bigint CHECK (version >= 1),
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO krl_state DEFAULT VALUES;

-- Once per transaction, at commit (deferred, so the row lock is taken last, as for
-- revocation_horizon).
CREATE FUNCTION bump_krl_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('keyportal.krl_bumped', true), '') <> 'on' THEN
        UPDATE krl_state
           SET version = greatest(version + 1, extract(epoch FROM clock_timestamp())::bigint),
               changed_at = now();
        PERFORM set_config('keyportal.krl_bumped', 'on', true);
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER certificates_revoked
    AFTER UPDATE ON certificates DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION bump_krl_version();
-- Blocklisted keys are in the KRL as plain keys (which revokes every certificate on them too).
CREATE CONSTRAINT TRIGGER blocklist_changed_krl
    AFTER INSERT OR DELETE OR UPDATE ON blocklist DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION bump_krl_version();
-- So are stored keys the computed checks found compromised.
CREATE CONSTRAINT TRIGGER ssh_keys_compromise_krl
    AFTER UPDATE ON ssh_keys DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.compromise IS DISTINCT FROM NEW.compromise)
    EXECUTE FUNCTION bump_krl_version();

-- Every path that takes a key or a person away revokes their unexpired certificates, in the
-- same transaction, whichever door it came through (API, page, CLI, identity provider sync):
-- a rule kept here rather than in each caller.
CREATE FUNCTION revoke_certificates_of_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE certificates SET revoked_at = now(), revoked_reason = 'key_deleted'
         WHERE key_id = OLD.id AND revoked_at IS NULL AND valid_before > now();
        RETURN OLD;
    END IF;
    UPDATE certificates SET revoked_at = now(), revoked_reason = 'key_compromised'
     WHERE key_id = NEW.id AND revoked_at IS NULL AND valid_before > now();
    RETURN NEW;
END
$$;
CREATE TRIGGER ssh_keys_revoke_certificates
    AFTER DELETE ON ssh_keys FOR EACH ROW EXECUTE FUNCTION revoke_certificates_of_key();
CREATE TRIGGER ssh_keys_compromised_revoke_certificates
    AFTER UPDATE ON ssh_keys FOR EACH ROW
    WHEN (OLD.compromise IS NULL AND NEW.compromise IS NOT NULL)
    EXECUTE FUNCTION revoke_certificates_of_key();

CREATE FUNCTION revoke_certificates_of_blocklisted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE certificates SET revoked_at = now(), revoked_reason = 'key_blocklisted'
     WHERE fingerprint_sha256 = NEW.fingerprint_sha256 AND revoked_at IS NULL AND valid_before > now();
    RETURN NEW;
END
$$;
CREATE TRIGGER blocklist_revoke_certificates
    AFTER INSERT ON blocklist FOR EACH ROW EXECUTE FUNCTION revoke_certificates_of_blocklisted();

CREATE FUNCTION revoke_certificates_of_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE certificates SET revoked_at = now(), revoked_reason = 'user_disabled'
     WHERE user_id = NEW.id AND kind = 'user' AND revoked_at IS NULL AND valid_before > now();
    RETURN NEW;
END
$$;
CREATE TRIGGER users_disabled_revoke_certificates
    AFTER UPDATE ON users FOR EACH ROW
    WHEN (NEW.disabled AND NOT OLD.disabled)
    EXECUTE FUNCTION revoke_certificates_of_user();
