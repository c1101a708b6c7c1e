-- Undoes migrations/0014 on a kept bench data set, so a binary from before it starts there
-- again (bench/login_rows.sh alternates binaries this way); run it while the private cluster
-- is up (the newer binary's serve still running). Never on a real database.
DROP TRIGGER IF EXISTS blocklist_lock_for_writing ON blocklist;
DROP FUNCTION IF EXISTS blocklist_lock_for_writing();
DROP TRIGGER IF EXISTS blocklist_fingerprint_immutable ON blocklist;
DROP FUNCTION IF EXISTS refuse_blocklist_fingerprint_change();
DROP TRIGGER IF EXISTS ssh_keys_lock_blocklist ON ssh_keys;
DROP FUNCTION IF EXISTS ssh_keys_lock_blocklist();
DROP TRIGGER IF EXISTS blocklist_link_keys ON blocklist;
DROP FUNCTION IF EXISTS blocklist_link_keys();
DROP TRIGGER IF EXISTS ssh_keys_link_blocklist ON ssh_keys;
DROP FUNCTION IF EXISTS ssh_keys_link_blocklist();
DROP TRIGGER IF EXISTS blocklist_added_moves_horizon ON blocklist;
ALTER TABLE ssh_keys DROP COLUMN IF EXISTS blocklist_id;
ALTER TABLE blocklist DROP CONSTRAINT IF EXISTS blocklist_id_fingerprint_key;
DELETE FROM _sqlx_migrations WHERE version = 14;
