#!/usr/bin/env bash
# What each part of a stored key costs PostgreSQL on the import path: the import's INSERT
# (batches of 2,000 rows, ON CONFLICT on the fingerprint, RETURNING, as store::keys::insert_many)
# timed inside a transaction that first drops one part (an index, a constraint, a trigger) and
# is then rolled back, so every variant runs against the same committed table. Variants are
# interleaved round by round; prints each one's median and its difference from the schema as is.
#   bench/import_parts.sh [ROUNDS] [KEYS] [PREFILL]      (defaults 7, 40000, 200000)
#   KEYPORTAL_BENCH_BIN=path  another binary (a baseline); else this checkout's release build
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-7}
KEYS=${2:-40000}
PREFILL=${3:-200000}
if [ -n "${KEYPORTAL_BENCH_BIN:-}" ]; then bin=$KEYPORTAL_BENCH_BIN; else cargo build --release -q --bin keyportal --example scale_keys; bin=$PWD/target/release/keyportal; fi
keygen=$PWD/target/release/examples/scale_keys
[ -x "$keygen" ] || cargo build --release -q --example scale_keys
. bench/portal.sh
work=$(mktemp -d /tmp/kp-parts.XXXXXX)
chmod 755 "$work"
trap 'portal_stop "$work"' EXIT
unset DATABASE_URL
portal_start "$bin" "$work"
root=$work/data
if [ -f "$work/data/cluster-location" ]; then root=$(cat "$work/data/cluster-location"); fi
sock=$(dirname "$(find "$root" -name '.s.PGSQL.5432' | head -1)")
sql() { psql -h "$sock" -U postgres -d keyportal -v ON_ERROR_STOP=1 -qAt "$@"; }

mkdir -m 755 "$work/keys"
"$keygen" "$work/keys" 1 $((PREFILL + KEYS)) >/dev/null
chmod 644 "$work/keys/keys0"
# The rows the service would bind: fingerprints computed by PostgreSQL from the same bytes.
sql <<SQL
INSERT INTO users (username) SELECT 'imp' || i FROM generate_series(1, 20) i;
CREATE TABLE stage_raw (n BIGSERIAL, line TEXT);
\copy stage_raw (line) FROM '$work/keys/keys0'
CREATE TABLE stage AS
SELECT n, (SELECT min(id) FROM users WHERE username LIKE 'imp%') + n % 20 AS user_id,
       '' AS title, 'ssh-ed25519' AS algorithm, 256 AS bits,
       split_part(line, ' ', 1) || ' ' || split_part(line, ' ', 2) AS public_key,
       split_part(line, ' ', 3) AS comment,
       'SHA256:' || rtrim(encode(sha256(decode(split_part(line, ' ', 2), 'base64')), 'base64'), '=') AS fp,
       'MD5:' || regexp_replace(md5(decode(split_part(line, ' ', 2), 'base64')), '(..)(?!$)', '\1:', 'g') AS md5,
       -- UUIDv7-shaped and increasing, as Uuid::now_v7 gives
       (lpad(to_hex(1760000000000 + n), 12, '0') || '7000' || '8000' || lpad(to_hex(n), 12, '0'))::uuid AS id
  FROM stage_raw;
CREATE INDEX ON stage (n);
INSERT INTO ssh_keys (user_id, title, algorithm, bits, public_key, comment, fingerprint_sha256, fingerprint_md5, expires_at, id, compromise_checks)
SELECT user_id, title, algorithm, bits, public_key, comment, fp, md5, NULL, id, 1::int2 FROM stage WHERE n <= $PREFILL;
VACUUM ANALYZE;
CHECKPOINT;
SQL

# name|DDL run first in the rolled-back transaction
variants=(
  "as is|SELECT 1"
  "no shape index|DROP INDEX ssh_keys_shape_idx"
  "no (user_id, created_at, id) index|DROP INDEX ssh_keys_user_created_idx"
  "no (id, user_id) unique|ALTER TABLE ssh_keys DROP CONSTRAINT ssh_keys_id_user_key CASCADE"
  "no expiry index|DROP INDEX ssh_keys_expires_idx"
  "no users foreign key|ALTER TABLE ssh_keys DROP CONSTRAINT ssh_keys_user_id_fkey"
  "no public_key CHECK|ALTER TABLE ssh_keys DROP CONSTRAINT ssh_keys_public_key_check"
  "no fingerprint CHECKs|ALTER TABLE ssh_keys DROP CONSTRAINT ssh_keys_fingerprint_sha256_check, DROP CONSTRAINT ssh_keys_fingerprint_md5_check"
  "no comment CHECK|ALTER TABLE ssh_keys DROP CONSTRAINT ssh_keys_comment_check"
  "no CHECKs|ALTER TABLE ssh_keys DROP CONSTRAINT ssh_keys_public_key_check, DROP CONSTRAINT ssh_keys_fingerprint_sha256_check, DROP CONSTRAINT ssh_keys_fingerprint_md5_check, DROP CONSTRAINT ssh_keys_algorithm_check, DROP CONSTRAINT ssh_keys_comment_check, DROP CONSTRAINT ssh_keys_title_check"
  "no tally trigger|DROP TRIGGER ssh_keys_tally_added ON ssh_keys"
  "no blocklist triggers|DROP TRIGGER ssh_keys_link_blocklist ON ssh_keys; DROP TRIGGER ssh_keys_lock_blocklist ON ssh_keys"
  "no ON CONFLICT|NOCONFLICT"
)
insert() {
  local conflict="ON CONFLICT ON CONSTRAINT ssh_keys_fingerprint_sha256_key DO NOTHING"
  [ "$1" = NOCONFLICT ] && conflict=""
  local from=$((PREFILL + 1)) to=$((PREFILL + KEYS))
  echo "DO \$\$ DECLARE b BIGINT; t0 TIMESTAMPTZ; r BIGINT; BEGIN
    t0 := clock_timestamp();
    FOR b IN SELECT generate_series($from, $to, 2000) LOOP
      WITH ins AS (
        INSERT INTO ssh_keys (user_id, title, algorithm, bits, public_key, comment, fingerprint_sha256, fingerprint_md5, expires_at, id, compromise_checks)
        SELECT user_id, title, algorithm, bits, public_key, comment, fp, md5, NULL, id, 1::int2
          FROM stage WHERE n >= b AND n < b + 2000 AND n <= $to
        $conflict RETURNING fingerprint_sha256, id)
      SELECT count(*) INTO r FROM ins;
    END LOOP;
    RAISE NOTICE 'ms=%', extract(epoch FROM clock_timestamp() - t0) * 1000;
  END \$\$;"
}
out=$work/times
: >"$out"
for round in $(seq 1 "$ROUNDS"); do
  for v in "${variants[@]}"; do
    name=${v%%|*}; ddl=${v#*|}
    pre=$ddl; [ "$ddl" = NOCONFLICT ] && pre="SELECT 1"
    ms=$( { echo "BEGIN; $pre;"; insert "$ddl"; echo "ROLLBACK;"; } | sql 2>&1 | sed -n 's/.*ms=\([0-9.]*\).*/\1/p')
    echo "$name|$ms" >>"$out"
    sql -c "VACUUM ssh_keys" >/dev/null
  done
  echo "round $round done" >&2
done
python3 - "$out" "$KEYS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1]) if "|" in l]
keys = int(sys.argv[2])
names = list(dict.fromkeys(n for n, _ in rows))
med = {n: statistics.median(float(ms) for m, ms in rows if m == n) for n in names}
base = med[names[0]]
print(f"{keys} keys per round, {len(rows) // len(names)} rounds, median ms; us/key; saved vs as is")
for n in names:
    print(f"{n:40s} {med[n]:9.1f} ms {1000 * med[n] / keys:7.2f} us/key {100 * (base - med[n]) / base:6.1f} %")
PY
