-- PostgreSQL's regex engine expands a bounded repetition ({43}, {0,31}) into that many copies
-- of its states, and these checks run on every inserted row: the two fingerprint formats
-- alone were a third of PostgreSQL's time in a bulk key import (bench/import_parts.sh,
-- docs/performance.md). Each check below admits exactly the strings it admitted before: the
-- repetition is unbounded and a length bounds it instead (octet_length is the number of
-- characters, as every character these patterns admit is ASCII). Names are kept: the service
-- and the tests refer to some of them. tests/foundation.rs holds old and new to the same
-- answers and keeps bounded repetitions out of CHECK constraints.
--
-- Added NOT VALID, so this migration holds each table only for the catalog change: checking
-- every row here would hold ssh_keys exclusively, and logins with it, for about 3 s on a
-- million keys. New rows are checked from here on; 0016 checks the stored ones without
-- blocking reads or writes.

ALTER TABLE users
    DROP CONSTRAINT users_username_format,
    ADD CONSTRAINT users_username_format
        CHECK (octet_length(username) <= 32 AND username ~ '^[a-z_][a-z0-9_.-]*$') NOT VALID;

ALTER TABLE ssh_keys
    DROP CONSTRAINT ssh_keys_algorithm_check,
    ADD CONSTRAINT ssh_keys_algorithm_check
        CHECK (octet_length(algorithm) BETWEEN 1 AND 64 AND algorithm ~ '^[a-z0-9@.-]+$') NOT VALID,
    DROP CONSTRAINT ssh_keys_public_key_check,
    ADD CONSTRAINT ssh_keys_public_key_check
        CHECK (public_key ~ '^[a-z0-9@.-]+ [A-Za-z0-9+/]+=?=?$') NOT VALID,
    DROP CONSTRAINT ssh_keys_fingerprint_sha256_check,
    ADD CONSTRAINT ssh_keys_fingerprint_sha256_check
        CHECK (octet_length(fingerprint_sha256) = 50 AND fingerprint_sha256 ~ '^SHA256:[A-Za-z0-9+/]+$') NOT VALID,
    -- 4 + 2 + 3 * 15 = 51: sixteen pairs, one colon between each.
    DROP CONSTRAINT ssh_keys_fingerprint_md5_check,
    ADD CONSTRAINT ssh_keys_fingerprint_md5_check
        CHECK (octet_length(fingerprint_md5) = 51 AND fingerprint_md5 ~ '^MD5:[0-9a-f][0-9a-f](:[0-9a-f][0-9a-f])*$') NOT VALID;

ALTER TABLE grants
    DROP CONSTRAINT grants_login_check,
    ADD CONSTRAINT grants_login_check
        CHECK (octet_length(login) <= 32 AND login ~ '^[a-z_][a-z0-9_.-]*$') NOT VALID;

ALTER TABLE group_grants
    DROP CONSTRAINT group_grants_login_check,
    ADD CONSTRAINT group_grants_login_check
        CHECK (octet_length(login) <= 32 AND login ~ '^[a-z_][a-z0-9_.-]*$') NOT VALID;

ALTER TABLE access_requests
    DROP CONSTRAINT access_requests_login_check,
    ADD CONSTRAINT access_requests_login_check
        CHECK (octet_length(login) <= 32 AND login ~ '^[a-z_][a-z0-9_.-]*$') NOT VALID;

ALTER TABLE blocklist
    DROP CONSTRAINT blocklist_fingerprint_sha256_check,
    ADD CONSTRAINT blocklist_fingerprint_sha256_check
        CHECK (octet_length(fingerprint_sha256) = 50 AND fingerprint_sha256 ~ '^SHA256:[A-Za-z0-9+/]+$') NOT VALID,
    DROP CONSTRAINT blocklist_public_key_check,
    ADD CONSTRAINT blocklist_public_key_check
        CHECK (public_key ~ '^[a-z0-9@.-]+ [A-Za-z0-9+/]+=?=?$') NOT VALID,
    DROP CONSTRAINT blocklist_related_fingerprint_check,
    ADD CONSTRAINT blocklist_related_fingerprint_check
        CHECK (octet_length(related_fingerprint) = 50 AND related_fingerprint ~ '^SHA256:[A-Za-z0-9+/]+$') NOT VALID;

ALTER TABLE user_groups
    DROP CONSTRAINT user_groups_name_format,
    ADD CONSTRAINT user_groups_name_format
        CHECK (octet_length(name) <= 64 AND name ~ '^[a-z0-9][a-z0-9_.-]*$') NOT VALID;

ALTER TABLE server_groups
    DROP CONSTRAINT server_groups_name_format,
    ADD CONSTRAINT server_groups_name_format
        CHECK (octet_length(name) <= 64 AND name ~ '^[a-z0-9][a-z0-9_.-]*$') NOT VALID;

ALTER TABLE certificates
    DROP CONSTRAINT certificates_ca_fingerprint_check,
    ADD CONSTRAINT certificates_ca_fingerprint_check
        CHECK (octet_length(ca_fingerprint) = 50 AND ca_fingerprint ~ '^SHA256:[A-Za-z0-9+/]+$') NOT VALID,
    DROP CONSTRAINT certificates_fingerprint_sha256_check,
    ADD CONSTRAINT certificates_fingerprint_sha256_check
        CHECK (octet_length(fingerprint_sha256) = 50 AND fingerprint_sha256 ~ '^SHA256:[A-Za-z0-9+/]+$') NOT VALID;
