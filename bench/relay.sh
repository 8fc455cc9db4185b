#!/usr/bin/env bash
# readgate relay benchmark against DCMTK, on loopback only.
#
#   bench/relay.sh                 (a) storescu -> storescp
#                                  (b) storescu -> readgate (durable receive alone: the
#                                  deployed stable_after_secs = 10, so the study is still
#                                  receiving when storescu ends and nothing else runs)
#                                  (c) storescu -> readgate -> storescp (time until all arrive)
#                                  (s) = (c'): (c) through a streaming route (`forward =
#                                  "streaming"`), readgate as deployed (stable_after_secs =
#                                  10): until every instance is at storescp, long before
#                                  the study is complete
#                                  (A), (C): (a) and (c) over DICOM TLS on every link
#                                  (storescu +tls, storescp +tls requiring a client certificate)
#                                  (d): time to reader (readgate's own figure) of the study
#                                  as deployed (stable_after_secs = 10) with the modality's
#                                  MPPS (pynetdicom: N-CREATE, the images, N-SET COMPLETED
#                                  listing them), against (d0) the quiet wait without MPPS
#                                  (p): (b) with readgate's state in PostgreSQL (`[database]
#                                  url`; a server the script starts with initdb/pg_ctl in a
#                                  temp dir, fsync on, a fresh database per run), beside (b)
#   bench/relay.sh --big           one ~1 GB instance -> readgate alone; readgate's peak RSS
#
# Options:
#   --only LIST     run only these measurements, e.g. --only a or --only a,c,s,A,C,d
#   --runs N        repetitions per measurement, median reported (default 3)
#   --count N       number of CT instances (default 300)
#   --big-mb N      size of the --big instance in MiB (default 1024)
#   --no-gate-costs skip the gate's costs after the relay measurements (the policy
#                   evaluation and tagging benchmarks, which compile the release tests
#                   first: minutes on a cold target dir)
#   -h, --help
#
# Environment:
#   READGATE_BIN    readgate binary to use; unset: `cargo build --release` and use
#                   ${CARGO_TARGET_DIR:-target}/release/readgate
#   DCMTK_BIN       where DCMTK lives (default /usr/bin). DCMTK tools are always called by
#                   absolute path: pynetdicom installs storescu/storescp scripts that shadow
#                   DCMTK's on PATH.
#   BENCH_DATA_DIR  cache of generated instances, reused across runs
#                   (default ${TMPDIR:-/tmp}/readgate-bench-data)
#   BENCH_TIMEOUT   seconds before one transfer is declared stuck (default 300)
#   BIG_RSS_LIMIT_MB  --big fails (exit 1) when readgate's VmHWM exceeds this (default 100)
#   KEEP_TMP=1      keep the per-run temp dir (logs, received files) for inspection
#
# All traffic is on 127.0.0.1. DCMTK gets TCP_NODELAY=1 (Debian's DCMTK keeps Nagle on
# otherwise: ~40 ms per instance).
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
me=relay.sh
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

# ---------------------------------------------------------------- arguments
mode=relay only="a,b,c" runs=3 count=300 big_mb=1024 with_gate_costs=1
while (($#)); do
    case $1 in
        --big) mode=big ;;
        --only) only=${2:?--only needs a list}; shift ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --count) count=${2:?--count needs a number}; shift ;;
        --big-mb) big_mb=${2:?--big-mb needs a number}; shift ;;
        --no-gate-costs) with_gate_costs=0 ;;
        -h|--help) usage "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done
positive --runs "$runs"
positive --count "$count"
positive --big-mb "$big_mb"
check_only abcsACdp "a, b, c, s, A, C, d, p"

timeout_s=${BENCH_TIMEOUT:-300}
big_limit_mb=${BIG_RSS_LIMIT_MB:-100}

# ---------------------------------------------------------------- tools
dcmtk_bin=${DCMTK_BIN:-/usr/bin}
STORESCU=$dcmtk_bin/storescu
STORESCP=$dcmtk_bin/storescp
DCMDUMP=$dcmtk_bin/dcmdump
for t in "$STORESCU" "$STORESCP" "$DCMDUMP"; do
    [[ -x $t ]] || die "DCMTK tool $t not found: apt-get install dcmtk, or set DCMTK_BIN"
done
grep -qi dcmtk <<<"$("$STORESCU" --version 2>&1 || :)" ||
    die "$STORESCU is not DCMTK's storescu (pynetdicom's shadows it on PATH?); set DCMTK_BIN"
command -v python3 >/dev/null || die "python3 not found"
python3 -c 'import pydicom, numpy' 2>/dev/null ||
    die "python3 lacks pydicom/numpy (pip install pydicom numpy): needed to generate the data"
export TCP_NODELAY=1

need_readgate=1
[[ $mode == relay ]] && ! want b && ! want c && ! want s && ! want C && need_readgate=0
((need_readgate)) && readgate_bin

# ---------------------------------------------------------------- work dir
make_work readgate-bench

# ---------------------------------------------------------------- helpers

# ---------------------------------------------------------------- TLS
tls=0   # 1: every link of the next measurement runs over TLS
make_pki() {   # a CA and certificates for readgate, storescp and storescu in $work/pki
    pki=$work/pki
    [[ -f $pki/ca.pem ]] && return 0
    mkdir -p "$pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=bench CA" -keyout "$pki/ca-key.pem" -out "$pki/ca.pem" 2>/dev/null
    local who
    for who in readgate scp scu; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who" \
            -keyout "$pki/$who-key.pem" -out "$pki/$who.csr" 2>/dev/null
        openssl x509 -req -in "$pki/$who.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca-key.pem" \
            -CAcreateserial -days 2 -out "$pki/$who.pem" \
            -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1') 2>/dev/null
    done
}
# DCMTK's TLS options for WHO (scp or scu) when tls=1, one per line.
dcmtk_tls() { ((tls)) && printf '%s\n' +tls "$pki/$1-key.pem" "$pki/$1.pem" +cf "$pki/ca.pem"; return 0; }

start_storescp() {   # DIR PORT LOG -> sets scp_pid
    mkdir -p "$1"
    local -a t; mapfile -t t < <(dcmtk_tls scp)
    "$STORESCP" -aet RC1PACS "${t[@]}" -od "$1" "$2" >"$3" 2>&1 &
    scp_pid=$!
    pids+=("$scp_pid")
    wait_port "$2" "$scp_pid" storescp "$3"
}

start_readgate() {   # RUNDIR PORT DEST_PORT -> sets rg_pid, rg_log
    local dir=$1 port=$2 dport=$3
    if ((tls)); then
        # The plain listener elsewhere; PORT is the TLS one.
        write_config "$dir" "$(free_ports 1)"
        cat >>"$dir/readgate.toml" <<EOF
tls_listen = "127.0.0.1:$port"
tls_cert = "$pki/readgate.pem"
tls_key = "$pki/readgate-key.pem"
EOF
    else
        write_config "$dir" "$port"
    fi
    cat >>"$dir/readgate.toml" <<EOF
stable_after_secs = ${stable_secs:-0}

[[destinations]]
id = "rc1"
facility = "RC1"
ae_title = "RC1PACS"
host = "127.0.0.1"
port = $dport
EOF
    if ((tls)); then
        cat >>"$dir/readgate.toml" <<EOF
tls = true
tls_ca = "$pki/ca.pem"
tls_cert = "$pki/readgate.pem"
tls_key = "$pki/readgate-key.pem"
tls_server_name = "localhost"
EOF
    fi
    cat >>"$dir/readgate.toml" <<EOF

[[routes]]
destination = "rc1"
EOF
    if [[ -n ${route_forward:-} ]]; then
        printf 'forward = "%s"\n' "$route_forward" >>"$dir/readgate.toml"
    fi
    if [[ -n ${database_url:-} ]]; then
        printf '\n[database]\nurl = "%s"\n' "$database_url" >>"$dir/readgate.toml"
    fi
    rg_log=$dir/readgate.log
    (cd "$dir" && exec "$READGATE_BIN" serve --config "$dir/readgate.toml") >"$rg_log" 2>&1 &
    rg_pid=$!
    pids+=("$rg_pid")
    wait_port "$port" "$rg_pid" readgate "$rg_log"
}

# send_files CALLED_AE PORT LOG FILES...: DCMTK storescu, all files over one association,
# in the foreground.
send_files() {
    local aec=$1 port=$2 logf=$3; shift 3
    local -a t; mapfile -t t < <(dcmtk_tls scu)
    "$STORESCU" -v "${t[@]}" -aet BENCHSCU -aec "$aec" 127.0.0.1 "$port" "$@" >"$logf" 2>&1 ||
        { tail -n 20 "$logf" >&2; die "storescu to $aec on port $port failed (log above)"; }
    check_sent "$aec" "$logf" "$(($# ))"
}

# send_files_bg: the same in the background (sets scu_pid; the pid is storescu itself).
send_files_bg() {
    local aec=$1 port=$2 logf=$3; shift 3
    local -a t; mapfile -t t < <(dcmtk_tls scu)
    "$STORESCU" -v "${t[@]}" -aet BENCHSCU -aec "$aec" 127.0.0.1 "$port" "$@" >"$logf" 2>&1 &
    scu_pid=$!
    pids+=("$scu_pid")
}

# check_sent AE LOG N: every C-STORE response in LOG was Success, N of them.
check_sent() {
    local ok
    ok=$(grep -c 'Received Store Response (Success)' "$2" || :)
    if [[ $ok != "$3" ]]; then
        grep -E '^(E|W|F):|Store Response' "$2" | grep -v '(Success)' | head -n 10 >&2 || :
        die "$1 acknowledged $ok of $3 instances with Success (log: $2)"
    fi
}

# ---------------------------------------------------------------- measurements
run_a() {   # storescu -> storescp; storescu wall time
    local r=$work/a$1 port
    port=$(free_ports 1)
    start_storescp "$r/scp" "$port" "$r/storescp.log"
    local t0 t1
    t0=$(now_ns)
    send_files RC1PACS "$port" "$r/storescu.log" "${files[@]}"
    t1=$(now_ns)
    stop "$scp_pid"
    local got; got=$(count_files "$r/scp")
    ((got == count)) || die "(a) storescp holds $got of $count files"
    rm -rf "$r/scp"
    secs "$t0" "$t1"
}

run_b() {   # storescu -> readgate (receive alone); storescu wall time; sets last_rss_kb
    local r=$work/b$1 port dport
    read -r port dport < <(free_ports 2)
    stable_secs=10 start_readgate "$r" "$port" "$dport"
    local t0 t1
    t0=$(now_ns)
    send_files READGATE "$port" "$r/storescu.log" "${files[@]}"
    t1=$(now_ns)
    kill -0 "$rg_pid" 2>/dev/null || die "readgate died during (b) (log: $rg_log)"
    last_rss_kb=$(vmhwm_kb "$rg_pid")
    stop "$rg_pid"
    rm -rf "$r/var"
    secs "$t0" "$t1"
}

run_p() {   # (b) with the state in PostgreSQL: a fresh database per run
    local url
    url=$(new_database "rg_$1")
    database_url=$url run_b "p$1"
}

run_c() {   # storescu -> readgate -> storescp; until storescp holds every file; sets last_rss_kb
    # (c): stable_after_secs = 0. (s) = (c'): stable_secs=10 route_forward=streaming run_c sN
    local r=$work/c$1 port dport
    read -r port dport < <(free_ports 2)
    start_storescp "$r/scp" "$dport" "$r/storescp.log"
    start_readgate "$r" "$port" "$dport"
    local t0 t1 scu_pid deadline got=0
    t0=$(now_ns)
    send_files_bg READGATE "$port" "$r/storescu.log" "${files[@]}"
    deadline=$((SECONDS + timeout_s))
    while :; do
        got=$(count_files "$r/scp")
        ((got >= count)) && break
        kill -0 "$rg_pid" 2>/dev/null || die "readgate died during (c) (log: $rg_log)"
        if ((SECONDS >= deadline)); then
            log "(c) storescp holds $got of $count files after ${timeout_s} s; last readgate log lines:"
            tail -n 20 "$rg_log" >&2 || :
            die "(c) timed out"
        fi
        nap 0.01
    done
    t1=$(now_ns)
    wait "$scu_pid" || { tail -n 20 "$r/storescu.log" >&2; die "(c) storescu failed (log above)"; }
    forget_pid "$scu_pid"
    check_sent READGATE "$r/storescu.log" "$count"
    last_rss_kb=$(vmhwm_kb "$rg_pid")
    stop "$rg_pid"
    stop "$scp_pid"
    # Every forwarded file must be a readable DICOM file (checked outside the timing).
    local f bad=0
    for f in "$r/scp"/*; do "$DCMDUMP" -q "$f" >/dev/null 2>&1 || { bad=$((bad + 1)); log "(c) unreadable: $f"; }; done
    ((bad == 0)) || die "(c) $bad forwarded files unreadable by dcmdump"
    rm -rf "$r/scp" "$r/var"
    secs "$t0" "$t1"
}

# (d): a study's time to reader as readgate measures it (the `time_to_reader_ms` of its
# "study forwarded" line), readgate as deployed (stable_after_secs = 10): with MPPS, the
# modality (pynetdicom) opens its step before the images and completes it, listing them,
# right after; without (d0), the study waits for the quiet period.
run_d() {   # run_d N mpps|quiet -> seconds
    local r=$work/d$1-$2 port dport step="1.2.826.0.1.3680043.10.7299.$1" ms deadline
    read -r port dport < <(free_ports 2)
    start_storescp "$r/scp" "$dport" "$r/storescp.log"
    stable_secs=10 start_readgate "$r" "$port" "$dport"
    local mpps=("$repo/tests/peers/mpps_scu.py" 127.0.0.1 "$port" BENCHSCU READGATE)
    if [[ $2 == mpps ]]; then
        python3 "${mpps[@]}" "create:$step:$d_study" >"$r/mpps.log" 2>&1 ||
            die "(d) N-CREATE failed (log: $r/mpps.log)"
    fi
    send_files READGATE "$port" "$r/storescu.log" "${files[@]}"
    if [[ $2 == mpps ]]; then
        python3 "${mpps[@]}" "set:$step:COMPLETED:$d_series:$d_sops" >>"$r/mpps.log" 2>&1 ||
            die "(d) N-SET failed (log: $r/mpps.log)"
        grep -q "N-SET 0000" "$r/mpps.log" || die "(d) N-SET refused (log: $r/mpps.log)"
    fi
    deadline=$((SECONDS + timeout_s))
    until ms=$(grep -o 'time_to_reader_ms[=":]*[0-9]*' "$rg_log" | grep -o '[0-9]*$') && [[ -n $ms ]]; do
        ((SECONDS < deadline)) || die "(d) the study was not forwarded (log: $rg_log)"
        nap 0.1
    done
    stop "$rg_pid"
    stop "$scp_pid"
    rm -rf "$r/scp" "$r/var"
    awk -v m="$ms" 'BEGIN { printf "%.3f\n", m / 1000 }'
}

mbps() { awk -v b="$total_bytes" -v s="$1" 'BEGIN { if (s > 0) printf "%.1f", b / 1e6 / s; else print "inf" }'; }

relay_mode() {
    ensure_ct_data
    printf 'readgate relay benchmark: %d CT instances, %.1f MB (1 MB = 10^6 bytes), one association,\n' \
        "$count" "$(awk -v b="$total_bytes" 'BEGIN { print b / 1e6 }')"
    printf '%d run(s) per measurement, median shown. DCMTK: %s; readgate: %s\n\n' \
        "$runs" "$dcmtk_bin" "${READGATE_BIN:-(not used)}"
    local i t ta="" tb="" tc="" ts="" tA="" tC="" tp="" rss_b=0 rss_c=0 rss_s=0 rss_C=0 rss_p=0
    local -a A=() B=() C=() S=() TA=() TC=() D=() D0=() P=()
    if want p; then start_postgres; fi
    if want A || want C; then make_pki; fi
    if want d; then
        # The study's UIDs for the MPPS messages (make_study-like bench data: one series).
        read -r d_study d_series d_sops < <(python3 - "${files[@]}" <<'PY'
import sys
from pydicom import dcmread
heads = [dcmread(f, stop_before_pixels=True) for f in sys.argv[1:]]
print(heads[0].StudyInstanceUID, heads[0].SeriesInstanceUID, ",".join(h.SOPInstanceUID for h in heads))
PY
)
        [[ -n ${d_sops:-} ]] || die "(d) cannot read the bench study's UIDs"
    fi
    for ((i = 1; i <= runs; i++)); do
        if want A; then
            tls=1; run_a "A$i" >"$work/t"; tls=0; t=$(<"$work/t"); TA+=("$t"); log "(A) run $i: $t s"
        fi
        if want C; then
            tls=1; run_c "C$i" >"$work/t"; tls=0; t=$(<"$work/t"); TC+=("$t")
            ((last_rss_kb > rss_C)) && rss_C=$last_rss_kb
            log "(C) run $i: $t s, readgate VmHWM $(mb_of_kb "$last_rss_kb") MiB"
        fi
        if want a; then run_a "$i" >"$work/t"; t=$(<"$work/t"); A+=("$t"); log "(a) run $i: $t s"; fi
        if want b; then
            run_b "$i" >"$work/t"; t=$(<"$work/t"); B+=("$t")
            ((last_rss_kb > rss_b)) && rss_b=$last_rss_kb
            log "(b) run $i: $t s, readgate VmHWM $(mb_of_kb "$last_rss_kb") MiB"
        fi
        if want p; then
            run_p "$i" >"$work/t"; t=$(<"$work/t"); P+=("$t")
            ((last_rss_kb > rss_p)) && rss_p=$last_rss_kb
            log "(p) run $i: $t s, readgate VmHWM $(mb_of_kb "$last_rss_kb") MiB"
        fi
        if want c; then
            run_c "$i" >"$work/t"; t=$(<"$work/t"); C+=("$t")
            ((last_rss_kb > rss_c)) && rss_c=$last_rss_kb
            log "(c) run $i: $t s, readgate VmHWM $(mb_of_kb "$last_rss_kb") MiB"
        fi
        if want s; then
            stable_secs=10 route_forward=streaming run_c "s$i" >"$work/t"; t=$(<"$work/t"); S+=("$t")
            ((last_rss_kb > rss_s)) && rss_s=$last_rss_kb
            log "(c') run $i: $t s, readgate VmHWM $(mb_of_kb "$last_rss_kb") MiB"
        fi
        if want d; then
            run_d "$i" mpps >"$work/t"; t=$(<"$work/t"); D+=("$t")
            run_d "$i" quiet >"$work/t"; D0+=("$(<"$work/t")")
            log "(d) run $i: time to reader $t s with MPPS, $(<"$work/t") s with the quiet wait"
        fi
    done
    echo
    if want a; then
        ta=$(median "${A[@]}")
        printf '(a) storescu -> storescp              %7.3f s  %7s MB/s   runs: %s\n' "$ta" "$(mbps "$ta")" "${A[*]}"
    fi
    if want b; then
        tb=$(median "${B[@]}")
        printf '(b) storescu -> readgate (store only) %7.3f s  %7s MB/s   runs: %s\n' "$tb" "$(mbps "$tb")" "${B[*]}"
    fi
    if want p; then
        stop_postgres
        tp=$(median "${P[@]}")
        printf '(p) (b), state in PostgreSQL          %7.3f s  %7s MB/s   runs: %s\n' "$tp" "$(mbps "$tp")" "${P[*]}"
    fi
    if want c; then
        tc=$(median "${C[@]}")
        printf '(c) storescu -> readgate -> storescp  %7.3f s  %7s MB/s   runs: %s\n' "$tc" "$(mbps "$tc")" "${C[*]}"
    fi
    if want s; then
        ts=$(median "${S[@]}")
        printf "(c') (c), streaming route            %7.3f s  %7s MB/s   runs: %s\n" "$ts" "$(mbps "$ts")" "${S[*]}"
    fi
    if want A; then
        tA=$(median "${TA[@]}")
        printf '(A) (a) over TLS                      %7.3f s  %7s MB/s   runs: %s\n' "$tA" "$(mbps "$tA")" "${TA[*]}"
    fi
    if want C; then
        tC=$(median "${TC[@]}")
        printf '(C) (c) over TLS, in and out          %7.3f s  %7s MB/s   runs: %s\n' "$tC" "$(mbps "$tC")" "${TC[*]}"
    fi
    if want d; then
        printf '(d) time to reader, MPPS COMPLETED    %7.3f s   runs: %s\n' "$(median "${D[@]}")" "${D[*]}"
        printf '(d0) time to reader, quiet wait (10 s) %6.3f s   runs: %s\n' "$(median "${D0[@]}")" "${D0[*]}"
    fi
    echo
    [[ -n $tA && -n $tC ]] && printf 'ratio C/A: %s\n' "$(ratio "$tC" "$tA")"
    [[ -n $ta && -n $tA ]] && printf 'ratio A/a (TLS cost for DCMTK): %s\n' "$(ratio "$tA" "$ta")"
    [[ -n $tc && -n $tC ]] && printf 'ratio C/c (TLS cost for readgate): %s\n' "$(ratio "$tC" "$tc")"
    want C && printf 'readgate peak RSS (VmHWM, max over runs) in (C): %s MiB\n' "$(mb_of_kb "$rss_C")"
    [[ -n $ta && -n $tb ]] && printf 'ratio b/a: %s\n' "$(ratio "$tb" "$ta")"
    [[ -n $ta && -n $tc ]] && printf 'ratio c/a: %s\n' "$(ratio "$tc" "$ta")"
    [[ -n $ta && -n $tp ]] && printf 'ratio p/a: %s\n' "$(ratio "$tp" "$ta")"
    [[ -n $tb && -n $tp ]] && printf 'ratio p/b (PostgreSQL against SQLite): %s\n' "$(ratio "$tp" "$tb")"
    if [[ -n $ta && -n $ts ]]; then
        printf "ratio c'/a: %s   (b/a: %s, c/a: %s)\n" "$(ratio "$ts" "$ta")" \
            "$(if [[ -n $tb ]]; then ratio "$tb" "$ta"; else echo -; fi)" \
            "$(if [[ -n $tc ]]; then ratio "$tc" "$ta"; else echo -; fi)"
    fi
    want b && printf 'readgate peak RSS (VmHWM, max over runs) in (b): %s MiB\n' "$(mb_of_kb "$rss_b")"
    want p && printf 'readgate peak RSS (VmHWM, max over runs) in (p): %s MiB\n' "$(mb_of_kb "$rss_p")"
    want c && printf 'readgate peak RSS (VmHWM, max over runs) in (c): %s MiB\n' "$(mb_of_kb "$rss_c")"
    want s && printf "readgate peak RSS (VmHWM, max over runs) in (c'): %s MiB\n" "$(mb_of_kb "$rss_s")"
    return 0
}

big_complete() { [[ -f $f ]]; }   # f: big_mode's instance

big_mode() {
    local dir=$data_root/big-$big_mb f
    f=$dir/BIG${big_mb}MB.dcm
    generated "$dir" big_complete "one ~$big_mb MiB instance" --big-instance "$big_mb"
    total_bytes=$(stat -c %s "$f")
    local avail_kb
    avail_kb=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
    ((avail_kb / 1024 > big_mb + 1024)) ||
        die "need ~$((big_mb + 1024)) MiB free under $work for readgate's spool, have $((avail_kb / 1024)) MiB"
    local r=$work/big port dport t0 t1 t rss
    read -r port dport < <(free_ports 2)
    start_readgate "$r" "$port" "$dport"
    t0=$(now_ns)
    send_files READGATE "$port" "$r/storescu.log" "$f"
    t1=$(now_ns)
    t=$(secs "$t0" "$t1")
    kill -0 "$rg_pid" 2>/dev/null || die "readgate died during --big (log: $rg_log)"
    rss=$(vmhwm_kb "$rg_pid")
    stop "$rg_pid"
    printf 'readgate big-instance benchmark: one %.1f MB instance (%s), storescu -> readgate alone\n' \
        "$(awk -v b="$total_bytes" 'BEGIN { print b / 1e6 }')" "$(basename "$f")"
    printf 'storescu time: %.3f s  (%s MB/s)\n' "$t" "$(mbps "$t")"
    printf 'readgate peak RSS (VmHWM): %s MiB (target < %s MiB)\n' "$(mb_of_kb "$rss")" "$big_limit_mb"
    if ((rss > big_limit_mb * 1024)); then
        echo "FAIL: readgate's peak RSS exceeds ${big_limit_mb} MiB"
        return 1
    fi
    echo "OK"
}

# The gate's own costs, next to the relay they sit in: policy evaluation per study, and
# tagging 300 bench instances against a plain copy of the same files (issue: evaluation well
# under 1 ms of CPU; tagging < 10 % of relay time).
gate_costs() {
    log "measuring the gate's costs (release build of the unit and tag benchmarks)"
    local out
    out=$(cd "$repo" && cargo test --release -q --lib evaluation_cost_per_study -- --nocapture 2>&1) ||
        die "the policy evaluation benchmark failed: $out"
    grep -E "policy evaluation:" <<<"$out" || die "the policy evaluation benchmark printed no figure: $out"
    (cd "$repo" && cargo run --release -q --example tag_bench -- "$data_root/ct-$count") ||
        die "the tagging benchmark failed"
}

if [[ $mode == big ]]; then
    big_mode
else
    relay_mode
    if ((with_gate_costs)); then gate_costs; fi
fi
