#!/usr/bin/env bash
# readgate audit-trail benchmark: append rate and `readgate audit verify` over a large trail.
#
#   bench/audit.sh [--entries N] [--batch N] [--runs N] [--enforce-targets]
#
# 1. examples/audit_fill appends N synthetic entries (default 1,000,000; a realistic mix of
#    kinds with JSON details) to a fresh database in batches (default 1000 per transaction,
#    synchronous = FULL), then 200 single appends (one fsync each); it prints both costs.
# 2. `readgate audit verify` (release build) walks the whole chain: the median of --runs
#    (default 3) wall times is printed with entries/s.
# 3. Peers on the same bytes, same runs:
#    (p1) `sha256sum` over the database file: raw SHA-256 speed over (more than) the bytes
#         verify reads;
#    (p2) the sqlite3 shell reading every column of every row (`SELECT * … | sha256sum`):
#         what "read the table and hash it" costs without readgate.
#    The ratios verify/p1 and verify/p2 are printed.
# Targets: verify < 10 s for 1,000,000 entries; a batched append well under 1 ms per entry.
#
# Environment:
#   READGATE_BIN, AUDIT_FILL_BIN  binaries; when either is unset:
#                   `cargo build --release --bin readgate --example audit_fill`
#   KEEP_TMP=1      keep the temp dir (database, config)
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { printf 'audit.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'audit.sh: %s\n' "$*" >&2; }

entries=1000000 batch=1000 runs=3 enforce=0
while [ $# -gt 0 ]; do
  case "$1" in
    --entries) entries=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --enforce-targets) enforce=1; shift ;;
    -h|--help) sed -n '2,/^set -E/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

if [ -z "${READGATE_BIN:-}" ] || [ -z "${AUDIT_FILL_BIN:-}" ]; then
  log "building release binaries"
  (cd "$repo" && cargo build --release --quiet --bin readgate --example audit_fill)
  target=${CARGO_TARGET_DIR:-$repo/target}
  READGATE_BIN=${READGATE_BIN:-$target/release/readgate}
  AUDIT_FILL_BIN=${AUDIT_FILL_BIN:-$target/release/examples/audit_fill}
fi
[ -x "$READGATE_BIN" ] || die "no readgate binary at $READGATE_BIN"
command -v sqlite3 >/dev/null || die "sqlite3 is needed for peer (p2): apt-get install sqlite3"

tmp=$(mktemp -d)
cleanup() { if [ "${KEEP_TMP:-}" = 1 ]; then log "kept $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT
mkdir -p "$tmp/var"
cat >"$tmp/readgate.toml" <<EOF
[gateway]
id = "bench"
data_dir = "$tmp/var"
sending_facility = "HOSP-A"
[dicom]
ae_title = "READGATE"
listen = "127.0.0.1:0"
allow_any_calling_ae = true
EOF
db=$tmp/var/readgate.db

log "appending $entries entries (batches of $batch)"
fill=$("$AUDIT_FILL_BIN" "$db" "$entries" "$batch")
printf '%s\n' "$fill"
# Checkpoint the WAL so every run reads the same single file.
sqlite3 "$db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
total=$(sqlite3 "$db" "SELECT COUNT(*) FROM audit_log;")
size=$(stat -c %s "$db")

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_of() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc -l; }

verify_times=() p1_times=() p2_times=()
for r in $(seq 1 "$runs"); do
  t0=$(now)
  "$READGATE_BIN" audit verify --config "$tmp/readgate.toml" >"$tmp/verify.out" || die "verify failed: $(cat "$tmp/verify.out")"
  t1=$(now)
  grep -q "chain intact" "$tmp/verify.out" || die "verify did not report an intact chain"
  verify_times+=("$(echo "$t1 - $t0" | bc -l)")
  p1_times+=("$(time_of sha256sum "$db")")
  t0=$(now)
  sqlite3 "$db" "SELECT * FROM audit_log ORDER BY seq;" | sha256sum >/dev/null
  t1=$(now)
  p2_times+=("$(echo "$t1 - $t0" | bc -l)")
  log "run $r: verify ${verify_times[-1]} s, sha256sum ${p1_times[-1]} s, sqlite3|sha256sum ${p2_times[-1]} s"
done
v=$(printf '%s\n' "${verify_times[@]}" | median)
p1=$(printf '%s\n' "${p1_times[@]}" | median)
p2=$(printf '%s\n' "${p2_times[@]}" | median)

printf '\n'
printf 'audit trail: %d entries, database %.1f MB\n' "$total" "$(echo "$size / 1000000" | bc -l)"
printf '%-44s %8.2f s  %10.0f entries/s\n' "readgate audit verify (median of $runs)" "$v" "$(echo "$total / $v" | bc -l)"
printf '%-44s %8.2f s  (verify/p1 = %.2f)\n' "(p1) sha256sum over the database file" "$p1" "$(echo "$v / $p1" | bc -l)"
printf '%-44s %8.2f s  (verify/p2 = %.2f)\n' "(p2) sqlite3 SELECT * | sha256sum" "$p2" "$(echo "$v / $p2" | bc -l)"
sed -n '1p' "$tmp/verify.out" >/dev/null
grep -E "^checked" "$tmp/verify.out" | sed 's/^/readgate says: /'

if [ "$enforce" = 1 ]; then
  scaled=$(echo "$v * 1000000 / $total" | bc -l)
  if [ "$(echo "$scaled >= 10" | bc -l)" = 1 ]; then
    die "target missed: verify would take $scaled s per 1,000,000 entries (target < 10 s)"
  fi
fi
