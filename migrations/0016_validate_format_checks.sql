-- Checks the rows stored before 0015 against its rewritten format checks (each admits exactly
-- what the check it replaced admitted, so this cannot fail on rows that check accepted).
-- VALIDATE CONSTRAINT takes SHARE UPDATE EXCLUSIVE: reads and writes go on while it scans.

ALTER TABLE users
    VALIDATE CONSTRAINT users_username_format;

ALTER TABLE ssh_keys
    VALIDATE CONSTRAINT ssh_keys_algorithm_check,
    VALIDATE CONSTRAINT ssh_keys_public_key_check,
    VALIDATE CONSTRAINT ssh_keys_fingerprint_sha256_check,
    VALIDATE CONSTRAINT ssh_keys_fingerprint_md5_check;

ALTER TABLE grants
    VALIDATE CONSTRAINT grants_login_check;

ALTER TABLE group_grants
    VALIDATE CONSTRAINT group_grants_login_check;

ALTER TABLE access_requests
    VALIDATE CONSTRAINT access_requests_login_check;

ALTER TABLE blocklist
    VALIDATE CONSTRAINT blocklist_fingerprint_sha256_check,
    VALIDATE CONSTRAINT blocklist_public_key_check,
    VALIDATE CONSTRAINT blocklist_related_fingerprint_check;

ALTER TABLE user_groups
    VALIDATE CONSTRAINT user_groups_name_format;

ALTER TABLE server_groups
    VALIDATE CONSTRAINT server_groups_name_format;

ALTER TABLE certificates
    VALIDATE CONSTRAINT certificates_ca_fingerprint_check,
    VALIDATE CONSTRAINT certificates_fingerprint_sha256_check;
