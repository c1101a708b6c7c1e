-- Compromised keys (issue 15): the per-key computed checks' stored verdicts, and the blocklist.
--
-- `compromise` is what the validator's computed RSA checks (src/keys/compromised.rs:
-- small_factor, fermat, roca) found in this key's bytes, written by the writer that validated
-- it. They are a pure function of the key material, which never changes, but trial division up
-- to 65537 costs ~85 us per RSA key: too much to repeat for every line of every authorized_keys
-- read. `compromise_checks` names the version of those checks that wrote the column; a read of
-- a row written by another version (0: before this migration) runs the checks itself, and
-- `serve` brings such rows up to date in the background.
ALTER TABLE ssh_keys
    ADD COLUMN compromise TEXT CHECK (compromise IN ('small_factor', 'fermat', 'roca')),
    ADD COLUMN compromise_checks SMALLINT NOT NULL DEFAULT 0,
    ADD CONSTRAINT ssh_keys_compromise_checked CHECK (compromise IS NULL OR compromise_checks > 0);
-- The dashboard lists compromised keys first; they are few.
CREATE INDEX ssh_keys_compromised_idx ON ssh_keys (created_at, id) WHERE compromise IS NOT NULL;
-- Rows still to be checked by this version (the background pass walks them).
CREATE INDEX ssh_keys_compromise_checks_idx ON ssh_keys (compromise_checks);

-- Keys known to be compromised, by SHA256 fingerprint (an entry given as a whole key is stored
-- by the fingerprint the validator computed, with the key kept for reference). Every read of a
-- key joins this table, so an entry takes effect at the next login on every process.
CREATE TABLE blocklist (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    fingerprint_sha256  TEXT NOT NULL CONSTRAINT blocklist_fingerprint_key UNIQUE
                        CHECK (fingerprint_sha256 ~ '^SHA256:[A-Za-z0-9+/]{43}$'),
    public_key          TEXT CHECK (public_key ~ '^[a-z0-9@.-]+ [A-Za-z0-9+/]+={0,2}$'),
    -- `blocklisted` for entries made by people; `shared_prime` for the shared-prime scan's.
    kind                TEXT NOT NULL DEFAULT 'blocklisted' CHECK (kind IN ('blocklisted', 'shared_prime')),
    reason              TEXT NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 1024 AND reason !~ '[[:cntrl:]]'),
    -- shared_prime: the fingerprint of a modulus sharing the prime.
    related_fingerprint TEXT CHECK (related_fingerprint ~ '^SHA256:[A-Za-z0-9+/]{43}$'),
    added_by            BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT blocklist_shared_prime_names_the_other CHECK ((kind = 'shared_prime') = (related_fingerprint IS NOT NULL))
);
CREATE INDEX blocklist_created_idx ON blocklist (created_at, id);
