#!/usr/bin/env bash
# The login path with groups (issue 16): `authorized_keys?fingerprint=` (AuthorizedKeysCommand
# %f) at 100,000 keys, 10,000 servers in 500 server groups and 1,000 user groups, against the
# same lookup through a direct grant in the same run (the baseline).
#   world: 1,000 users x 100 keys (../shared/keys/gen_bulk.py), each user in 10 of the 1,000
#   user groups (10 members each); server group g holds servers 20g..20g+19; user group j is
#   granted on server group j mod 500 as `deploy` (so each server reaches 20 users, through
#   2 user groups); server `direct` has a direct grant for every user, as `deploy`.
# Usage: bench/groups_login.sh [seconds per run]   (release build, private cluster, wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
OUT=bench/out
KEYS="$OUT/keys-100000.txt"
mkdir -p "$OUT"
[ -s "$KEYS" ] || python3 ../shared/keys/gen_bulk.py 100000 > "$KEYS"
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
cargo build --release -q --bin keyportal
KP=$PWD/target/release/keyportal

DIR=$(mktemp -d -p /tmp kpgroups.XXXX); chmod 755 "$DIR"
# No shared-prime scan in the middle of a measurement (gen_bulk's moduli share primes).
export KEYPORTAL_DATA_DIR=$DIR/data KEYPORTAL_LOG=warn KEYPORTAL_SHARED_PRIME_SCAN_HOURS=0
PORT=18092
KEYPORTAL_LISTEN=127.0.0.1:$PORT "$KP" serve 2>"$DIR/serve.log" &
SERVE=$!
trap 'kill -TERM $SERVE 2>/dev/null; wait $SERVE 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$DIR"' EXIT
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.2; done
echo "bench passphrase 123" | "$KP" admin create --username bench --password-stdin >/dev/null 2>&1
TOKEN=$("$KP" token create --username bench --name load 2>/dev/null)
API=http://127.0.0.1:$PORT/api/v1
H=(-H "Authorization: Bearer $TOKEN")
PSQL=(psql -XqtA -v ON_ERROR_STOP=1 -h "$DIR/data/run" -U postgres keyportal)
curl -sf -X PUT "${H[@]}" -H 'content-type: application/json' \
  -d "$(curl -sf "${H[@]}" "$API/policy" | python3 -c 'import json,sys; p=json.load(sys.stdin); p["max_keys_per_user"]=100000; print(json.dumps(p))')" \
  "$API/policy" >/dev/null

echo "setup: 1,000 users x 100 keys through the import API"
started=$(date +%s)
for u in $(seq 0 999); do
  name=$(printf 'u%04d' "$u")
  curl -sf "${H[@]}" -H 'content-type: application/json' -d "{\"username\":\"$name\"}" "$API/users" >/dev/null
  sed -n "$((u * 100 + 1)),$((u * 100 + 100))p" "$KEYS" |
    curl -sf "${H[@]}" --data-binary @- "$API/users/$name/keys/import" >/dev/null
done
echo "  $(( $(date +%s) - started )) s"
echo "setup: 10,000 servers, 500 server groups, 1,000 user groups, grants (SQL)"
"${PSQL[@]}" <<'SQL'
INSERT INTO servers (name) SELECT format('s%s', lpad(i::text, 5, '0')) FROM generate_series(0, 9999) i;
INSERT INTO servers (name) VALUES ('direct');
INSERT INTO server_groups (name) SELECT format('sg%s', lpad(g::text, 3, '0')) FROM generate_series(0, 499) g;
INSERT INTO server_group_members (group_id, server_id)
  SELECT sg.id, s.id FROM server_groups sg
  JOIN servers s ON s.name ~ '^s[0-9]{5}$' AND substr(s.name, 2)::int / 20 = substr(sg.name, 3)::int;
INSERT INTO user_groups (name) SELECT format('ug%s', lpad(j::text, 4, '0')) FROM generate_series(0, 999) j;
INSERT INTO user_group_members (group_id, user_id)
  SELECT ug.id, u.id FROM users u, generate_series(0, 9) i, user_groups ug
   WHERE u.username ~ '^u[0-9]{4}$'
     AND ug.name = format('ug%s', lpad(((substr(u.username, 2)::int + 100 * i) % 1000)::text, 4, '0'));
INSERT INTO group_grants (user_group_id, server_group_id, login)
  SELECT ug.id, sg.id, 'deploy' FROM user_groups ug
  JOIN server_groups sg ON substr(sg.name, 3)::int = substr(ug.name, 3)::int % 500;
INSERT INTO grants (server_id, user_id, login)
  SELECT (SELECT id FROM servers WHERE name = 'direct'), u.id, 'deploy' FROM users u WHERE u.username ~ '^u[0-9]{4}$';
ANALYZE;
SQL
"${PSQL[@]}" -c "SELECT format('  %s keys, %s servers, %s server groups, %s user groups, %s memberships, %s group grants',
  (SELECT count(*) FROM ssh_keys), (SELECT count(*) FROM servers), (SELECT count(*) FROM server_groups),
  (SELECT count(*) FROM user_groups), (SELECT count(*) FROM user_group_members), (SELECT count(*) FROM group_grants))"

# 20,000 (server, fingerprint) pairs that a group grant lets in: key k of user u, one of u's
# groups j, a server of server group j mod 500.
"${PSQL[@]}" -c "SELECT substr(u.username, 2) || ' ' || k.fingerprint_sha256 FROM ssh_keys k JOIN users u ON u.id = k.user_id WHERE u.username ~ '^u[0-9]{4}$' ORDER BY random() LIMIT 20000" > "$DIR/keys.txt"
python3 - "$DIR" <<'PY'
import random, sys, urllib.parse
d = sys.argv[1]
random.seed(42)
grouped, direct = [], []
for line in open(f"{d}/keys.txt"):
    u, fp = line.split()
    j = (int(u) + 100 * random.randrange(10)) % 1000
    server = "s%05d" % ((j % 500) * 20 + random.randrange(20))
    q = urllib.parse.quote(fp, safe="")
    grouped.append(f'"/api/v1/servers/{server}/authorized_keys?login=deploy&fingerprint={q}"')
    direct.append(f'"/api/v1/servers/direct/authorized_keys?login=deploy&fingerprint={q}"')
for name, paths in (("grouped", grouped), ("direct", direct)):
    with open(f"{d}/{name}.lua", "w") as f:
        f.write("paths = {" + ",".join(paths) + "}\n")
        f.write("local i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format('GET', paths[i])\nend\n")
PY
# Both lookups must answer with the key (a line), or the comparison means nothing.
for name in grouped direct; do
  path=$(python3 -c "import re,sys; print(re.search(r'\"(/api[^\"]*)\"', open('$DIR/$name.lua').read()).group(1))")
  [ -n "$(curl -sf "${H[@]}" "http://127.0.0.1:$PORT$path")" ] || { echo "$name lookup gave no line: $path" >&2; exit 1; }
done

for name in direct grouped; do
  echo; echo "== fingerprint lookup through a $name grant, 4 connections"
  wrk -t1 -c4 -d"${SECS}s" --latency -s "$DIR/$name.lua" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT" | sed -n '/Latency Distribution/,/Requests\/sec/p'
done
