-- Usernames that would pass for keyportal itself in the audit trail (`cli` and `anonymous` are
-- actors there already) are refused, as the `Username` parser refuses them.
--
-- An account that already has one of these names is renamed to `_<name>_<id>` (with `_`
-- appended until free), and the rename is audited (actor `system`), rather than left in place
-- under a NOT VALID constraint: left in place, every later update of that row would violate
-- the check, and its audit events would still be confused with keyportal's own. Its keys,
-- grants and sessions follow it (they refer to the id); an admin tells the user the new name.
DO $$
DECLARE
    u record;
    new_name text;
BEGIN
    FOR u IN SELECT id, username FROM users
             WHERE username IN ('cli', 'anonymous', 'system', 'keyportal') ORDER BY id
    LOOP
        new_name := '_' || u.username || '_' || u.id;
        WHILE EXISTS (SELECT 1 FROM users WHERE username = new_name) LOOP
            new_name := new_name || '_';
        END LOOP;
        UPDATE users SET username = new_name WHERE id = u.id;
        INSERT INTO audit_events (actor, action, target, detail)
        VALUES ('system', 'user.rename', 'user:' || new_name,
                jsonb_build_object('from', u.username, 'to', new_name,
                                   'reason', 'reserved username (migration 0003)'));
    END LOOP;
END
$$;

ALTER TABLE users ADD CONSTRAINT users_username_not_reserved
    CHECK (username NOT IN ('cli', 'anonymous', 'system', 'keyportal'));
