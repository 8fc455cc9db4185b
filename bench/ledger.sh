#!/usr/bin/env bash
# Ledger benchmark: fills a temp data dir with a month of 100,000 forwarded studies, their
# HL7 reports and 300,000 REST read events (examples/ledger_bench.rs, which also times
# recording one read event in-process and over HTTP), then times `readgate report` for the
# month in each format, and the sqlite3 CLI running the equivalent aggregate query (the
# same joins, grouped per study, without roster, places or rules) as the baseline.
#
#   bench/ledger.sh [STUDIES] [REST_EVENTS_PER_STUDY]    (defaults 100000 3)
#   READGATE_BIN / LEDGER_BENCH_BIN: prebuilt binaries; KEEP_TMP=1 keeps the data dir.
set -euo pipefail
cd "$(dirname "$0")/.."
STUDIES="${1:-100000}"
PER_STUDY="${2:-3}"
TARGET="${CARGO_TARGET_DIR:-target}"
if [[ -z "${READGATE_BIN:-}" || -z "${LEDGER_BENCH_BIN:-}" ]]; then
  cargo build --release --bin readgate --example ledger_bench >&2
fi
READGATE_BIN="${READGATE_BIN:-$TARGET/release/readgate}"
LEDGER_BENCH_BIN="${LEDGER_BENCH_BIN:-$TARGET/release/examples/ledger_bench}"
command -v sqlite3 >/dev/null || { echo "sqlite3 CLI missing (apt-get install sqlite3)" >&2; exit 1; }

DIR="$(mktemp -d /tmp/readgate-ledger-bench.XXXXXX)"
cleanup() { [[ "${KEEP_TMP:-0}" == 1 ]] && echo "kept $DIR" >&2 || rm -rf "$DIR"; }
trap cleanup EXIT

echo "== fill and in-process timings"
"$LEDGER_BENCH_BIN" "$DIR" "$STUDIES" "$PER_STUDY"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_cmd() { # prints seconds of wall time
  local s e
  s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N)
  awk -v s="$s" -v e="$e" 'BEGIN { print e - s }'
}

echo
echo "== readgate report --month 2026-06 (median of 3, wall time, output to a file)"
for fmt in json csv html; do
  t=$(for i in 1 2 3; do time_cmd "$READGATE_BIN" report --config "$DIR/readgate.toml" --month 2026-06 --format "$fmt" --out "$DIR/report.$fmt"; done | median)
  printf "  %-5s %6.2f s  (%s bytes)\n" "$fmt" "$t" "$(stat -c %s "$DIR/report.$fmt")"
done

echo
echo "== baseline: sqlite3 CLI, the same month's joins aggregated per study (median of 3)"
START=$(( $(date -d '2026-06-01T00:00:00+09:00' +%s) * 1000 ))
END=$(( $(date -d '2026-07-01T00:00:00+09:00' +%s) * 1000 ))
SQL="WITH s AS (SELECT study_uid, accession FROM studies WHERE first_received_at >= $START AND first_received_at < $END),
ev AS (SELECT s.study_uid, COUNT(*) n, SUM(e.action='opened') opened, COUNT(DISTINCT e.reader_id) readers
       FROM s CROSS JOIN read_events e ON e.study_uid = s.study_uid GROUP BY s.study_uid),
rp AS (SELECT s.study_uid, SUM(r.status='F') finals, SUM(r.status='P') prelims, MAX(length(r.text)) textlen
       FROM s CROSS JOIN reports r ON r.accession = s.accession GROUP BY s.study_uid)
SELECT s.study_uid, s.accession, ev.n, ev.opened, ev.readers, rp.finals, rp.prelims, rp.textlen
FROM s LEFT JOIN ev ON ev.study_uid = s.study_uid LEFT JOIN rp ON rp.study_uid = s.study_uid;"
t=$(for i in 1 2 3; do time_cmd sqlite3 -csv "$DIR/var/readgate.db" "$SQL"; done | median)
rows=$(sqlite3 -csv "$DIR/var/readgate.db" "$SQL" | wc -l)
printf "  sqlite3 %6.2f s  (%s rows)\n" "$t" "$rows"
