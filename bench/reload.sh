#!/usr/bin/env bash
# Reload benchmark: a configuration change while a transfer runs, readgate against Orthanc
# (Debian's `orthanc`) in the same run.
#
#   (r) readgate serve receives N synthetic CT instances from DCMTK storescu in one
#       association; once a third are acknowledged, a peer is added to its config file and
#       `readgate reload` is timed (it answers when the new configuration is in force).
#   (o) Orthanc receives the same instances the same way; once a third are acknowledged, a
#       modality is added to its configuration file and `POST /tools/reset` (Orthanc's way
#       to read its configuration again: a restart inside the process) is timed until its
#       REST API and DICOM port answer again.
#
# For each: the time until the new configuration is in force, whether the running
# transfer survived (storescu ended with every instance acknowledged Success), how many
# instances it got acknowledged, and readgate's peak RSS. Medians of --runs.
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
#   ORTHANC_BIN     Orthanc (default /usr/sbin/Orthanc)
#   BENCH_DATA_DIR  cache of generated instances, shared with the other benches
#                   (default ${TMPDIR:-/tmp}/readgate-bench-data)
#   KEEP_TMP=1      keep the temp dir for inspection
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
me=reload.sh
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

runs_and_count "${BASH_SOURCE[0]}" "$@"

STORESCU=${DCMTK_BIN:-/usr/bin}/storescu
ORTHANC=${ORTHANC_BIN:-/usr/sbin/Orthanc}
[[ -x $STORESCU ]] || die "no DCMTK storescu at $STORESCU (apt-get install dcmtk, or set DCMTK_BIN)"
[[ -x $ORTHANC ]] || die "no Orthanc at $ORTHANC (apt-get install orthanc, or set ORTHANC_BIN)"
command -v curl >/dev/null || die "curl not found (apt-get install curl)"
export TCP_NODELAY=1
readgate_bin
ensure_ct_data
make_work readgate-reload

# acked LOG: C-STORE responses with Success in storescu's verbose log.
acked() {
    local n
    n=$(grep -c 'Received Store Response (Success)' "$1" 2>/dev/null) || n=0
    echo "${n:-0}"
}

# send_bg AE PORT LOG: storescu sends every file in one association (sets scu_pid).
send_bg() {
    "$STORESCU" -v -aet BENCHSCU -aec "$1" 127.0.0.1 "$2" "${files[@]}" >"$3" 2>&1 &
    scu_pid=$!
    pids+=("$scu_pid")
}

# until_third LOG: waits until a third of the instances are acknowledged.
until_third() {
    local deadline=$((SECONDS + 120))
    until (($(acked "$1") * 3 >= count)); do
        kill -0 "$scu_pid" 2>/dev/null || die "storescu ended early (log: $1)"
        ((SECONDS < deadline)) || die "storescu too slow (log: $1)"
        nap 0.02
    done
}

# finish LOG: waits for storescu; sets res_acked and res_ok (1: every instance Success).
finish() {
    local rc=0
    wait "$scu_pid" || rc=$?
    forget_pid "$scu_pid"
    res_acked=$(acked "$1")
    res_ok=0
    ((rc == 0 && res_acked == count)) && res_ok=1
    return 0
}

run_readgate() {   # sets res_secs, res_ok, res_acked, res_rss
    local r=$work/r$1 port
    port=$(free_ports 1)
    serve_down "$r" "$port"
    local rg=$rg_pid
    send_bg READGATE "$port" "$r/storescu.log"
    until_third "$r/storescu.log"
    printf '\n[[dicom.peers]]\nae_title = "NEWPEER"\n' >>"$r/readgate.toml"
    local t0 t1 said
    t0=$(now_ns)
    said=$("$READGATE_BIN" reload --config "$r/readgate.toml") || die "readgate reload failed: $said"
    t1=$(now_ns)
    [[ $said == *"in force now: dicom"* ]] || die "unexpected reload answer: $said"
    finish "$r/storescu.log"
    res_rss=$(vmhwm_kb "$rg")
    res_secs=$(secs "$t0" "$t1")
    stop "$rg"
    rm -rf "$r"
}

orthanc_config() {   # orthanc_config HOME DICOM HTTP [EXTRA_MODALITY]
    local modalities='"readgate": ["READGATE", "127.0.0.1", 11112]'
    [[ -n ${4:-} ]] && modalities+=', "newpeer": ["NEWPEER", "127.0.0.1", 11113]'
    cat >"$1/orthanc.json" <<EOF
{
  "Name": "reload-bench",
  "StorageDirectory": "$1/storage",
  "IndexDirectory": "$1/index",
  "HttpPort": $3,
  "DicomPort": $2,
  "DicomAet": "ORTHANC",
  "RemoteAccessAllowed": false,
  "DicomAlwaysAllowStore": true,
  "DicomModalities": { $modalities },
  "Plugins": []
}
EOF
}

run_orthanc() {   # sets res_secs, res_ok, res_acked
    local o=$work/o$1 port http
    read -r port http < <(free_ports 2)
    mkdir -p "$o"
    orthanc_config "$o" "$port" "$http"
    "$ORTHANC" "$o/orthanc.json" >"$o/orthanc.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    wait_port "$port" "$pid" Orthanc "$o/orthanc.log"
    wait_port "$http" "$pid" Orthanc "$o/orthanc.log"
    send_bg ORTHANC "$port" "$o/storescu.log"
    until_third "$o/storescu.log"
    orthanc_config "$o" "$port" "$http" newpeer
    local t0 t1 deadline=$((SECONDS + 60))
    t0=$(now_ns)
    curl -fsS -X POST "http://127.0.0.1:$http/tools/reset" >/dev/null || die "Orthanc refused /tools/reset"
    # Back when its REST API lists the new modality and its DICOM port listens.
    until curl -fsS "http://127.0.0.1:$http/modalities" 2>/dev/null | grep -q newpeer && listening "$port"; do
        ((SECONDS < deadline)) || die "Orthanc did not come back (log: $o/orthanc.log)"
        nap 0.01
    done
    t1=$(now_ns)
    finish "$o/storescu.log"
    res_secs=$(secs "$t0" "$t1")
    stop "$pid"
    rm -rf "$o"
}

log "$runs runs of $count instances each"
r_secs=() r_survived=0 r_acked=() r_rss=0
o_secs=() o_survived=0 o_acked=()
for i in $(seq "$runs"); do
    run_readgate "$i"
    r_secs+=("$res_secs") r_acked+=("$res_acked")
    r_survived=$((r_survived + res_ok))
    ((res_rss > r_rss)) && r_rss=$res_rss
    log "run $i (r) readgate reload: $res_secs s, transfer survived: $res_ok ($res_acked acknowledged)"
    run_orthanc "$i"
    o_secs+=("$res_secs") o_acked+=("$res_acked")
    o_survived=$((o_survived + res_ok))
    log "run $i (o) Orthanc /tools/reset: $res_secs s, transfer survived: $res_ok ($res_acked acknowledged)"
done

rs=$(median "${r_secs[@]}") os=$(median "${o_secs[@]}")
printf '\nreload while storescu sends %d instances (medians of %d)\n' "$count" "$runs"
printf '  %-34s %8s  %-22s %s\n' "" "in force" "transfers survived" "instances acknowledged"
printf '  %-34s %7s s  %-22s %s\n' "(r) readgate reload" "$rs" "$r_survived of $runs" "$(median "${r_acked[@]}") of $count"
printf '  %-34s %7s s  %-22s %s\n' "(o) Orthanc POST /tools/reset" "$os" "$o_survived of $runs" "$(median "${o_acked[@]}") of $count"
printf '  o/r %s; readgate peak RSS %s MiB\n' "$(ratio "$os" "$rs")" "$(mb_of_kb "$r_rss")"
