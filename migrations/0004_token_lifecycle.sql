-- Server tokens get a lifecycle: who made each one is kept, so the server page and
-- GET /api/v1/servers/{name}/tokens can say it. A name, not a reference (like audit actors):
-- the record outlives a deleted user. Existing tokens keep NULL: their maker is in the audit log.
ALTER TABLE api_tokens ADD COLUMN created_by TEXT CHECK (created_by IS NULL OR char_length(created_by) <= 100);

-- Revocations are looked up per owner.
CREATE INDEX api_tokens_live_user_idx ON api_tokens (user_id) WHERE revoked_at IS NULL;
