#!/usr/bin/env bash
# Ledger benchmark: fills a month of 100,000 forwarded studies, their HL7 reports and
# 300,000 REST read events (examples/ledger_bench.rs, which also times recording one read
# event in-process and over HTTP) into each backend, then times `readgate report` for the
# month in each format, against a database shell running the equivalent aggregate query
# (the same joins, grouped per study, without roster, places or rules) as the baseline:
#   SQLite      the data dir's readgate.db; baseline the sqlite3 CLI
#   PostgreSQL  a server of the script's own (initdb/pg_ctl in a temp dir, loopback, fsync
#               on), a new database; baseline psql
#
#   bench/ledger.sh [STUDIES] [REST_EVENTS_PER_STUDY]    (defaults 100000 3)
#   LEDGER_BACKENDS    sqlite, postgres or sqlite,postgres (default both)
#   READGATE_BIN / LEDGER_BENCH_BIN: prebuilt binaries; KEEP_TMP=1 keeps the data dirs.
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
me=ledger.sh
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

STUDIES="${1:-100000}"
PER_STUDY="${2:-3}"
positive STUDIES "$STUDIES"
[[ $PER_STUDY =~ ^[0-9]+$ ]] || die "REST_EVENTS_PER_STUDY must be a non-negative integer"
only=${LEDGER_BACKENDS:-sqlite,postgres}
[[ $only =~ ^(sqlite|postgres)(,(sqlite|postgres))*$ ]] ||
    die "LEDGER_BACKENDS takes sqlite, postgres or both, comma separated"
if [[ -z "${READGATE_BIN:-}" || -z "${LEDGER_BENCH_BIN:-}" ]]; then
  (cd "$repo" && cargo build --release --locked --bin readgate --example ledger_bench >&2)
  target_dir=$(release_target_dir)
  READGATE_BIN="${READGATE_BIN:-$target_dir/release/readgate}"
  LEDGER_BENCH_BIN="${LEDGER_BENCH_BIN:-$target_dir/release/examples/ledger_bench}"
fi
want sqlite && { command -v sqlite3 >/dev/null || die "sqlite3 CLI missing (apt-get install sqlite3)"; }

make_work readgate-ledger-bench

time_cmd() { # prints seconds of wall time
  local s e
  s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" 'BEGIN { print e - s }'
}
median3() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

START=$(( $(date -d '2026-06-01T00:00:00+09:00' +%s) * 1000 ))
END=$(( $(date -d '2026-07-01T00:00:00+09:00' +%s) * 1000 ))
# The baseline's query, in neutral SQL (CASE rather than summing booleans).
SQL="WITH s AS (SELECT study_uid, accession FROM studies WHERE first_received_at >= $START AND first_received_at < $END),
ev AS (SELECT s.study_uid, COUNT(*) n, SUM(CASE WHEN e.action='opened' THEN 1 ELSE 0 END) opened, COUNT(DISTINCT e.reader_id) readers
       FROM s JOIN read_events e ON e.study_uid = s.study_uid GROUP BY s.study_uid),
rp AS (SELECT s.study_uid, SUM(CASE WHEN r.status='F' THEN 1 ELSE 0 END) finals, SUM(CASE WHEN r.status='P' THEN 1 ELSE 0 END) prelims, MAX(length(r.text)) textlen
       FROM s JOIN reports r ON r.accession = s.accession GROUP BY s.study_uid)
SELECT s.study_uid, s.accession, ev.n, ev.opened, ev.readers, rp.finals, rp.prelims, rp.textlen
FROM s LEFT JOIN ev ON ev.study_uid = s.study_uid LEFT JOIN rp ON rp.study_uid = s.study_uid;"

declare -A report_s
# run_backend NAME DIR [DATABASE_URL]: fill, time readgate report per format and the
# baseline; report_s[NAME_FORMAT] and report_s[NAME_baseline] hold the medians.
run_backend() {
  local name=$1 dir=$2 url=${3:-} fmt t rows
  echo "== $name: fill and in-process timings"
  "$LEDGER_BENCH_BIN" "$dir" "$STUDIES" "$PER_STUDY" ${url:+"$url"}
  echo
  echo "== $name: readgate report --month 2026-06 (median of 3, wall time, output to a file)"
  for fmt in json csv html; do
    t=$(for _ in 1 2 3; do time_cmd "$READGATE_BIN" report --config "$dir/readgate.toml" --month 2026-06 --format "$fmt" --out "$dir/report.$fmt"; done | median3)
    report_s[${name}_$fmt]=$t
    printf "  %-5s %6.2f s  (%s bytes)\n" "$fmt" "$t" "$(stat -c %s "$dir/report.$fmt")"
  done
  echo
  if [[ -z $url ]]; then
    echo "== $name: baseline, the sqlite3 CLI running the month's joins aggregated per study (median of 3)"
    t=$(for _ in 1 2 3; do time_cmd sqlite3 -csv "$dir/var/readgate.db" "$SQL"; done | median3)
    rows=$(sqlite3 -csv "$dir/var/readgate.db" "$SQL" | wc -l)
  else
    echo "== $name: baseline, psql running the month's joins aggregated per study (median of 3)"
    t=$(for _ in 1 2 3; do time_cmd "$pg_bin/psql" -q -A -F, -t -d "$url" -c "$SQL"; done | median3)
    rows=$("$pg_bin/psql" -q -A -F, -t -d "$url" -c "$SQL" | wc -l)
  fi
  report_s[${name}_baseline]=$t
  printf "  baseline %6.2f s  (%s rows)\n\n" "$t" "$rows"
}

if want sqlite; then
  run_backend SQLite "$work/sqlite"
fi
if want postgres; then
  start_postgres
  run_backend PostgreSQL "$work/postgres" "$(new_database ledger)"
  stop_postgres
fi

echo "== side by side: readgate report (s), and against its backend's shell"
printf '  %-11s %7s %7s %7s %9s %12s\n' backend json csv html baseline "json/baseline"
for name in SQLite PostgreSQL; do
  [[ -n ${report_s[${name}_json]:-} ]] || continue
  printf '  %-11s %7.2f %7.2f %7.2f %9.2f %12.2f\n' "$name" "${report_s[${name}_json]}" \
    "${report_s[${name}_csv]}" "${report_s[${name}_html]}" "${report_s[${name}_baseline]}" \
    "$(awk -v a="${report_s[${name}_json]}" -v b="${report_s[${name}_baseline]}" 'BEGIN { print a / b }')"
done
status=0
if [[ -n ${report_s[PostgreSQL_json]:-} ]]; then
  for fmt in json csv html; do
    ok=$(awk -v t="${report_s[PostgreSQL_$fmt]}" 'BEGIN { print (t < 5) ? "PASS" : "FAIL" }')
    printf 'target: report for %s studies on PostgreSQL under 5 s (%s): %s\n' "$STUDIES" "$fmt" "$ok"
  done
fi
exit "$status"
