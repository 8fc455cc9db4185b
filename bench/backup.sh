#!/usr/bin/env bash
# readgate backup benchmark: `readgate backup` of a serving gateway's data dir against
# plain copies of the same data, in the same run.
#
#   bench/backup.sh     readgate serve receives N synthetic CT instances (storescu; its
#                       destination is down, so all stay in the spool), then, while it
#                       keeps running:
#                       (p) cp -a of the spool + sqlite3 .backup of the database
#                       (q) (p), then sha256sum of every copied file and sync -f
#                           (checksums and durability, as readgate does; not consistent)
#                       (r) readgate backup
#                       (R) readgate restore of one such backup into an empty data dir
#
# Each measurement writes into a fresh directory (removed after it), after a `sync` outside
# the timing. Printed: medians, MB/s, r/p and r/q, and peak RSS (`/usr/bin/time -v`,
# "Maximum resident set size" of the largest process).
#
# Options:
#   --runs N        repetitions per measurement, median reported (default 5)
#   --count N       number of CT instances (default 300, ~514 KB each)
#   -h, --help
#
# Environment:
#   READGATE_BIN    readgate binary to use; unset: `cargo build --release` and use
#                   ${CARGO_TARGET_DIR:-target}/release/readgate
#   DCMTK_BIN       where DCMTK lives (default /usr/bin)
#   BENCH_DATA_DIR  cache of generated instances, shared with bench/relay.sh
#                   (default ${TMPDIR:-/tmp}/readgate-bench-data)
#   KEEP_TMP=1      keep the temp dir for inspection
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
me=backup.sh
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

runs_and_count "${BASH_SOURCE[0]}" "$@"

dcmtk_bin=${DCMTK_BIN:-/usr/bin}
STORESCU=$dcmtk_bin/storescu
[[ -x $STORESCU ]] || die "no DCMTK storescu at $STORESCU (apt-get install dcmtk, or set DCMTK_BIN)"
command -v sqlite3 >/dev/null || die "sqlite3 not found (apt-get install sqlite3)"
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (apt-get install time)"
readgate_bin

make_work readgate-backup-bench

# ---------------------------------------------------------------- data (as bench/relay.sh)
ensure_ct_data

# ---------------------------------------------------------------- the gateway
gw=$work/gw
port=$(free_ports 1)
serve_down "$gw" "$port"
TCP_NODELAY=1 "$STORESCU" -v -aet BENCHSCU -aec READGATE 127.0.0.1 "$port" "${files[@]}" \
    >"$work/storescu.log" 2>&1 || { tail -n 20 "$work/storescu.log" >&2; die "storescu failed"; }
ok=$(grep -c 'Received Store Response (Success)' "$work/storescu.log" || :)
((ok == count)) || die "readgate acknowledged $ok of $count instances"
spool_bytes=$(find "$gw/var/spool/objects" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
db_bytes=$(stat -c %s "$gw/var/readgate.db")
total_bytes=$((spool_bytes + db_bytes))

# timed CMD...: runs CMD under /usr/bin/time -v; prints "SECONDS RSS_KB"; dies on failure.
timed() {
    local t0 t1 rss
    sync
    t0=$(now_ns)
    /usr/bin/time -v -o "$work/time.txt" "$@" >"$work/out.txt" 2>&1 ||
        { cat "$work/out.txt" "$work/time.txt" >&2; die "failed: $*"; }
    t1=$(now_ns)
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time.txt")
    printf '%s %s\n' "$(secs "$t0" "$t1")" "$rss"
}

plain_copy() {   # DEST: what an administrator would type
    mkdir -p "$1"
    cp -a "$gw/var/spool" "$1/spool"
    sqlite3 "$gw/var/readgate.db" ".backup '$1/readgate.db'"
}
checked_copy() {   # DEST: the same, with a SHA-256 of every file and the data on disk
    plain_copy "$1"
    (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum >"$work/sums.txt")
    sync -f "$1"
}
export -f plain_copy checked_copy
export gw work

declare -a P=() Q=() R=() RR=()
rss_p=0 rss_q=0 rss_r=0 rss_R=0
# shellcheck disable=SC2016 # $0 is expanded by the inner bash
for ((i = 1; i <= runs; i++)); do
    timed bash -c 'plain_copy "$0"' "$work/p$i" >"$work/t"; read -r t rss <"$work/t"
    P+=("$t"); ((rss > rss_p)) && rss_p=$rss; rm -rf "$work/p$i"
    timed bash -c 'checked_copy "$0"' "$work/q$i" >"$work/t"; read -r t rss <"$work/t"
    Q+=("$t"); ((rss > rss_q)) && rss_q=$rss; rm -rf "$work/q$i"
    timed "$READGATE_BIN" backup --config "$gw/readgate.toml" "$work/r$i" >"$work/t"
    read -r t rss <"$work/t"
    R+=("$t"); ((rss > rss_r)) && rss_r=$rss
    # (R): a second data dir restored from this backup.
    mkdir -p "$work/restored$i"
    sed "s#data_dir = \"$gw/var\"#data_dir = \"$work/restored$i/var\"#" "$gw/readgate.toml" >"$work/restored$i/readgate.toml"
    timed "$READGATE_BIN" restore --config "$work/restored$i/readgate.toml" "$work/r$i" >"$work/t"
    read -r t rss <"$work/t"
    RR+=("$t"); ((rss > rss_R)) && rss_R=$rss
    rm -rf "$work/r$i" "$work/restored$i"
    log "run $i: (p) ${P[-1]} s, (q) ${Q[-1]} s, (r) ${R[-1]} s, (R) ${RR[-1]} s"
done
kill -0 "$rg_pid" 2>/dev/null || die "readgate serve died during the runs (log: $gw/readgate.log)"

mbps() { awk -v b="$total_bytes" -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", b / 1e6 / s; else print "inf" }'; }
tp=$(median "${P[@]}") tq=$(median "${Q[@]}") tr=$(median "${R[@]}") tR=$(median "${RR[@]}")
printf '\nreadgate backup benchmark: %d instances, spool %.1f MB + database %.1f MB (1 MB = 10^6 bytes)\n' \
    "$count" "$(awk -v b="$spool_bytes" 'BEGIN { print b / 1e6 }')" "$(awk -v b="$db_bytes" 'BEGIN { print b / 1e6 }')"
printf '%d runs each, median shown; readgate serve running throughout\n\n' "$runs"
printf '(p) cp -a + sqlite3 .backup            %7.3f s  %5s MB/s  peak RSS %6.1f MiB  runs: %s\n' "$tp" "$(mbps "$tp")" "$(mb_of_kb "$rss_p")" "${P[*]}"
printf '(q) (p) + sha256sum + sync -f          %7.3f s  %5s MB/s  peak RSS %6.1f MiB  runs: %s\n' "$tq" "$(mbps "$tq")" "$(mb_of_kb "$rss_q")" "${Q[*]}"
printf '(r) readgate backup                    %7.3f s  %5s MB/s  peak RSS %6.1f MiB  runs: %s\n' "$tr" "$(mbps "$tr")" "$(mb_of_kb "$rss_r")" "${R[*]}"
printf '(R) readgate restore                   %7.3f s  %5s MB/s  peak RSS %6.1f MiB  runs: %s\n' "$tR" "$(mbps "$tR")" "$(mb_of_kb "$rss_R")" "${RR[*]}"
printf '\nratio r/p: %s   r/q: %s\n' "$(ratio "$tr" "$tp")" "$(ratio "$tr" "$tq")"
