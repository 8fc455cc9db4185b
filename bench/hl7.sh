#!/usr/bin/env bash
# readgate HL7 MLLP intake benchmark, on loopback only.
#
#   bench/hl7.sh                   (a) hl7_load -> Python `hl7` asyncio MLLP server (AA, stores nothing)
#                                  (b) hl7_load -> readgate serve ([hl7] listener)
#   bench/hl7.sh --only b,p        (p) hl7_load -> two readgate nodes sharing one PostgreSQL
#                                      database (the connections alternate between them); a
#                                      server of the script's own (initdb/pg_ctl, loopback,
#                                      fsync on), a fresh database per run
#
# examples/hl7_load sends N order messages (unique MSH-10 / accession each) over C
# connections, each connection waiting for the ACK before sending the next message, and
# reports msgs/s and latency percentiles. Both peers are measured with 1 and 8 connections
# (--connections). Printed: msgs/s, p50, p99 per peer, the ratio readgate/baseline, and
# readgate's peak RSS (VmHWM). Targets: >= 5000 msg/s over 8 connections, p99 <= 5 ms.
#
# Options:
#   --messages N        messages per measurement (default 20000)
#   --connections LIST  connection counts, comma separated (default 1,8)
#   --runs N            repetitions per measurement, the median run (by msgs/s) is shown
#                       (default 1)
#   --only LIST         a (baseline), b (readgate, SQLite), p (two readgate nodes on
#                       PostgreSQL), comma separated (default a,b)
#   --template FILE     order message template for hl7_load (default: its built-in ORM^O01)
#   --warmup N          messages per connection before measuring (default 200)
#   --enforce-targets   exit 1 when readgate misses a target
#   -h, --help
#
# Environment:
#   READGATE_BIN    readgate binary; HL7_LOAD_BIN  load generator binary. When either is
#                   unset: `cargo build --release --bin readgate --example hl7_load` and the
#                   binaries under ${CARGO_TARGET_DIR:-target}/release
#   PYTHON          python3 to run bench/hl7_ack_server.py (needs `pip install hl7`)
#   BENCH_TIMEOUT   seconds one measurement may take (default 600)
#   KEEP_TMP=1      keep the temp dir (configs, logs, JSON results)
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
me=hl7.sh
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

# ---------------------------------------------------------------- arguments
messages=20000 conns="1,8" runs=1 only="a,b" template="" warmup=200 enforce=0
while (($#)); do
    case $1 in
        --messages) messages=${2:?--messages needs a number}; shift ;;
        --connections) conns=${2:?--connections needs a list}; shift ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --only) only=${2:?--only needs a list}; shift ;;
        --template) template=${2:?--template needs a file}; shift ;;
        --warmup) warmup=${2:?--warmup needs a number}; shift ;;
        --enforce-targets) enforce=1 ;;
        -h|--help) usage "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done
positive --messages "$messages"
positive --runs "$runs"
[[ $warmup =~ ^[0-9]+$ ]] || die "--warmup must be a non-negative integer"
[[ $conns =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "--connections takes a comma list of positive integers"
check_only abp "a, b, p"
IFS=, read -r -a conn_list <<<"$conns"
if [[ -n $template ]]; then
    [[ -r $template ]] || die "template '$template' not readable"
    template=$(cd "$(dirname "$template")" && pwd)/$(basename "$template")
fi
timeout_s=${BENCH_TIMEOUT:-600}

# ---------------------------------------------------------------- tools
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"
"$PYTHON" -c 'import json, socket' || die "$PYTHON cannot import json/socket"
if want a; then
    "$PYTHON" -c 'import hl7.mllp' 2>/dev/null ||
        die "$PYTHON lacks the 'hl7' package (pip install 'hl7>=0.4.5'): needed for the baseline"
fi

if [[ -z ${READGATE_BIN:-} || -z ${HL7_LOAD_BIN:-} ]]; then
    command -v cargo >/dev/null || die "cargo not found and READGATE_BIN / HL7_LOAD_BIN not set"
    log "building (cargo build --release --bin readgate --example hl7_load) ..."
    (cd "$repo" && cargo build --release --quiet --bin readgate --example hl7_load) ||
        die "cargo build --release failed"
    target_dir=$(release_target_dir)
    READGATE_BIN=${READGATE_BIN:-$target_dir/release/readgate}
    HL7_LOAD_BIN=${HL7_LOAD_BIN:-$target_dir/release/examples/hl7_load}
fi
[[ -x $HL7_LOAD_BIN ]] || die "load generator '$HL7_LOAD_BIN' not found or not executable"
if want b || want p; then
    [[ -x $READGATE_BIN ]] || die "readgate binary '$READGATE_BIN' not found or not executable"
    READGATE_BIN=$(realpath "$READGATE_BIN") # readgate runs in its own work dir
fi
HL7_LOAD_BIN=$(realpath "$HL7_LOAD_BIN")

# ---------------------------------------------------------------- work dir
make_work readgate-hl7bench

# ---------------------------------------------------------------- helpers
# json FILE EXPR: a value from hl7_load's JSON result (EXPR in Python, `r` is the object).
json() { "$PYTHON" -c 'import json, sys; r = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# load PORTS CONNECTIONS OUT NAME: run hl7_load against 127.0.0.1:PORT for each of the
# comma-separated PORTS (connections alternate), JSON into OUT; fail loudly on any error.
load() {
    local ports=$1 c=$2 out=$3 name=$4 args=() addrs
    [[ -n $template ]] && args+=(--template "$template")
    addrs=$(sed 's/\([0-9]*\)/127.0.0.1:\1/g' <<<"$ports")
    if ! timeout "$timeout_s" "$HL7_LOAD_BIN" --addr "$addrs" --connections "$c" \
        --messages "$messages" --warmup "$warmup" --json "${args[@]}" >"$out" 2>"$out.err"; then
        cat "$out.err" >&2
        die "$name: hl7_load with $c connection(s) failed (exit above; timeout ${timeout_s} s)"
    fi
    local bad
    bad=$(json "$out" 'r["acks"]["AE"] + r["acks"]["AR"] + r["acks"]["other"]')
    ((bad == 0)) || die "$name answered $bad of $messages messages with something else than AA: $(json "$out" 'r["acks"]')"
}

# ---------------------------------------------------------------- peers
# start_baseline DIR, start_readgate DIR: start the peer on free ports; both set peer_pid,
# peer_port (its MLLP port), peer_log and peer_name.
start_baseline() {
    local dir=$1
    mkdir -p "$dir"
    peer_port=$(free_ports 1) peer_log=$dir/server.log peer_name=hl7_ack_server.py
    "$PYTHON" "$here/hl7_ack_server.py" --port "$peer_port" >"$peer_log" 2>&1 &
    peer_pid=$!
    pids+=("$peer_pid")
    wait_port "$peer_port" "$peer_pid" "$peer_name" "$peer_log"
}

write_readgate_config() {   # DIR DICOM_PORT HL7_PORT
    local dir=$1 dport=$2 hport=$3
    write_config "$dir" "$dport"
    cat >>"$dir/readgate.toml" <<EOF

[hl7]
listen = "127.0.0.1:$hport"
allowed_hosts = []
max_frame_bytes = 1048576
idle_timeout_secs = 300
default_charset = "ascii"
EOF
}

# readgate must know the [hl7] section; config-check says so without starting anything.
# Sets rg_missing (the reason) when it does not.
rg_missing=""
check_readgate_hl7() {
    local dir=$work/check
    write_readgate_config "$dir" 1 2
    if ! "$READGATE_BIN" config-check --config "$dir/readgate.toml" >"$dir/check.log" 2>&1; then
        if grep -q 'hl7' "$dir/check.log"; then
            rg_missing="this readgate ($READGATE_BIN) has no HL7 MLLP listener yet: config-check says: $(tail -n 1 "$dir/check.log")"
            return 0
        fi
        cat "$dir/check.log" >&2
        die "readgate config-check rejected the benchmark config (above)"
    fi
}

start_readgate() {
    local dir=$1 dport
    read -r dport peer_port < <(free_ports 2)
    write_readgate_config "$dir" "$dport" "$peer_port"
    peer_log=$dir/readgate.log peer_name=readgate
    (cd "$dir" && RUST_LOG=${RUST_LOG:-warn} exec "$READGATE_BIN" serve --config "$dir/readgate.toml") >"$peer_log" 2>&1 &
    peer_pid=$!
    pids+=("$peer_pid")
    wait_port "$peer_port" "$peer_pid" "$peer_name" "$peer_log"
}

# start_cluster DIR: nodes bench-1 and bench-2 (DIR/n1, DIR/n2) on a new database of the
# bench's PostgreSQL server, sharing DIR/spool; peer_port = "PORT1,PORT2", peer_pid =
# "PID1 PID2" (for the RSS and stop below, node 1's log as peer_log).
cluster_runs=0
start_cluster() {
    local dir=$1 url n dport hport ports=() node_pids=()
    cluster_runs=$((cluster_runs + 1))
    url=$(new_database "hl7_$cluster_runs")
    for n in 1 2; do
        read -r dport hport < <(free_ports 2)
        write_readgate_config "$dir/n$n" "$dport" "$hport"
        sed -i "s/^id = \"bench\"/id = \"bench-$n\"/" "$dir/n$n/readgate.toml"
        printf '\n[database]\nurl = "%s"\n\n[storage]\nspool_dir = "%s"\n' "$url" "$dir/spool" \
            >>"$dir/n$n/readgate.toml"
        (cd "$dir/n$n" && RUST_LOG=${RUST_LOG:-warn} exec "$READGATE_BIN" serve --config "$dir/n$n/readgate.toml") \
            >"$dir/n$n/readgate.log" 2>&1 &
        node_pids+=("$!")
        pids+=("$!")
        wait_port "$hport" "$!" "readgate node $n" "$dir/n$n/readgate.log"
        ports+=("$hport")
    done
    peer_port=$(IFS=,; echo "${ports[*]}") peer_pid="${node_pids[*]}"
    peer_log=$dir/n1/readgate.log peer_name="readgate nodes"
}

# ---------------------------------------------------------------- measurements
# Results: res_<peer>_<conns> = path of the median run's JSON.
median_run() {   # FILES... -> the file whose msgs/s is the median
    local f
    for f in "$@"; do printf '%s %s\n' "$(json "$f" 'r["msgs_per_s"]')" "$f"; done |
        sort -g | awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }'
}

declare -A res
rss_kb=0 py_rss_kb=0

# measure PEER LABEL START RSS_VAR: PEER (a or b) at every connection count, `runs` times
# each, started afresh by START DIR for every run; res[PEER_<conns>] = the median run's JSON,
# RSS_VAR = the peer's largest VmHWM (kB) over the runs.
measure() {
    local peer=$1 label=$2 start=$3 rss_var=$4 c i k files dir out pid
    for c in "${conn_list[@]}"; do
        files=()
        for ((i = 1; i <= runs; i++)); do
            dir=$work/$peer-$c-$i
            "$start" "$dir"
            out=$dir/result.json
            load "$peer_port" "$c" "$out" "$label"
            for pid in $peer_pid; do
                kill -0 "$pid" 2>/dev/null || die "$peer_name died during the run (log: $peer_log)"
                k=$(vmhwm_kb "$pid"); ((k > ${!rss_var})) && printf -v "$rss_var" '%s' "$k"
                stop "$pid"
            done
            files+=("$out")
            log "($peer) $label, $c connection(s), run $i: $(json "$out" '"%.0f msg/s, p50 %.3f ms, p99 %.3f ms" % (r["msgs_per_s"], r["latency_ms"]["p50"], r["latency_ms"]["p99"])') (VmHWM $(mb_of_kb "$k") MiB)"
        done
        res[${peer}_$c]=$(median_run "${files[@]}")
    done
}
run_baseline() { measure a baseline start_baseline py_rss_kb; }
run_readgate() { measure b readgate start_readgate rss_kb; }
pg_rss_kb=0
run_cluster() { measure p "two nodes on PostgreSQL" start_cluster pg_rss_kb; }

printf 'readgate HL7 MLLP intake benchmark: %d messages per measurement (+%d warm-up per connection),\n' "$messages" "$warmup"
printf 'template: %s; %d run(s) per measurement, median shown. Each connection waits for the ACK before the next message.\n\n' \
    "${template:-built-in ORM^O01 (tests/hl7/orm_o01_ihe.hl7)}" "$runs"
want a && run_baseline
if want b; then
    check_readgate_hl7
    if [[ -n $rg_missing ]]; then
        log "(b) skipped: $rg_missing"
        only=${only//b/}   # report what was measured, then fail below
    else
        run_readgate
    fi
fi
if want p; then
    start_postgres
    run_cluster
    stop_postgres
fi

# ---------------------------------------------------------------- report
fmt_row() {   # LABEL CONNS FILE
    printf '%-34s %5s %10s %9s %9s %9s\n' "$1" "$2" \
        "$(json "$3" '"%.0f" % r["msgs_per_s"]')" \
        "$(json "$3" '"%.3f" % r["latency_ms"]["p50"]')" \
        "$(json "$3" '"%.3f" % r["latency_ms"]["p99"]')" \
        "$(json "$3" '"%.3f" % r["latency_ms"]["max"]')"
}
echo
printf '%-34s %5s %10s %9s %9s %9s\n' "" conns "msgs/s" "p50 ms" "p99 ms" "max ms"
for c in "${conn_list[@]}"; do
    want a && fmt_row "(a) Python hl7 MLLP server (AA)" "$c" "${res[a_$c]}"
    want b && fmt_row "(b) readgate serve [hl7]" "$c" "${res[b_$c]}"
    want p && fmt_row "(p) 2 readgate nodes, PostgreSQL" "$c" "${res[p_$c]}"
done
echo
if want a && want b; then
    for c in "${conn_list[@]}"; do
        printf 'ratio readgate/baseline, %s connection(s): msgs/s %s, p99 %s\n' "$c" \
            "$(awk -v x="$(json "${res[b_$c]}" 'r["msgs_per_s"]')" -v y="$(json "${res[a_$c]}" 'r["msgs_per_s"]')" 'BEGIN { printf "%.2f", x / y }')" \
            "$(awk -v x="$(json "${res[b_$c]}" 'r["latency_ms"]["p99"]')" -v y="$(json "${res[a_$c]}" 'r["latency_ms"]["p99"]')" 'BEGIN { printf "%.2f", x / y }')"
    done
fi
if want b && want p; then
    for c in "${conn_list[@]}"; do
        printf 'ratio two nodes on PostgreSQL / one on SQLite, %s connection(s): msgs/s %s\n' "$c" \
            "$(awk -v x="$(json "${res[p_$c]}" 'r["msgs_per_s"]')" -v y="$(json "${res[b_$c]}" 'r["msgs_per_s"]')" 'BEGIN { printf "%.2f", x / y }')"
    done
fi
want a && printf 'baseline peak RSS (VmHWM, max over runs): %s MiB\n' "$(mb_of_kb "$py_rss_kb")"
status=0
if want b; then
    printf 'readgate peak RSS (VmHWM, max over runs): %s MiB\n' "$(mb_of_kb "$rss_kb")"
    # Targets from the issue, judged on the largest connection count measured.
    c_max=$(printf '%s\n' "${conn_list[@]}" | sort -n | tail -n 1)
    rate=$(json "${res[b_$c_max]}" 'r["msgs_per_s"]')
    p99=$(json "${res[b_$c_max]}" 'r["latency_ms"]["p99"]')
    ok_rate=$(awk -v r="$rate" 'BEGIN { print (r >= 5000) ? "PASS" : "FAIL" }')
    ok_p99=$(awk -v p="$p99" 'BEGIN { print (p <= 5) ? "PASS" : "FAIL" }')
    ((c_max >= 8)) || log "note: the throughput target is for 8 connections; the largest measured is $c_max"
    printf 'target >= 5000 msg/s over %s connections: %s (%.0f)\n' "$c_max" "$ok_rate" "$rate"
    printf 'target p99 <= 5 ms over %s connections: %s (%.3f ms)\n' "$c_max" "$ok_p99" "$p99"
    if [[ $ok_rate == FAIL || $ok_p99 == FAIL ]] && ((enforce)); then status=1; fi
fi
if want p; then
    printf 'readgate node peak RSS on PostgreSQL (VmHWM, max over nodes and runs): %s MiB\n' "$(mb_of_kb "$pg_rss_kb")"
    c_max=$(printf '%s\n' "${conn_list[@]}" | sort -n | tail -n 1)
    rate=$(json "${res[p_$c_max]}" 'r["msgs_per_s"]')
    ok_rate=$(awk -v r="$rate" 'BEGIN { print (r >= 5000) ? "PASS" : "FAIL" }')
    printf 'target >= 5000 msg/s with two nodes on PostgreSQL over %s connections: %s (%.0f)\n' "$c_max" "$ok_rate" "$rate"
    if [[ $ok_rate == FAIL ]] && ((enforce)); then status=1; fi
fi
[[ -z $rg_missing ]] || die "(b) readgate not measured: $rg_missing"
exit "$status"
