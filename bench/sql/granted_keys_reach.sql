-- The reach CTE of src/store/grants.rs's granted_keys (direct and group grants of (:srv, :login)),
-- the prefix of each granted_keys_*.sql here (bench/explain_median.py, PREFIX=this file).
WITH srv AS (SELECT id FROM servers WHERE name = :srv),
grp AS (
 SELECT g.user_id, g.user_group_id, g.options, g.expires_at, g.created_at, 3 AS rank
   FROM srv JOIN group_grants g ON g.server_id = srv.id WHERE g.login = :login
 UNION ALL
 SELECT g.user_id, g.user_group_id, g.options, g.expires_at, g.created_at, CASE WHEN g.user_id IS NULL THEN 4 ELSE 2 END
   FROM srv JOIN server_group_members sm ON sm.server_id = srv.id
   JOIN group_grants g ON g.server_group_id = sm.group_id WHERE g.login = :login
),
r AS (
 SELECT g.user_id, g.key_id, g.options, g.expires_at, g.created_at, CASE WHEN g.key_id IS NULL THEN 1 ELSE 0 END AS rank
   FROM srv JOIN grants g ON g.server_id = srv.id WHERE g.login = :login
 UNION ALL
 SELECT grp.user_id, NULL::uuid, grp.options, grp.expires_at, grp.created_at, grp.rank FROM grp WHERE grp.user_id IS NOT NULL
 UNION ALL
 SELECT m.user_id, NULL::uuid, grp.options, grp.expires_at, grp.created_at, grp.rank FROM grp JOIN user_group_members m ON m.group_id = grp.user_group_id
)
