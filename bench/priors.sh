#!/usr/bin/env bash
# Prior retrieval benchmark: readgate against DCMTK fetching the same study from the same
# PACS (DCMTK dcmqrscp), on loopback only.
#
#   bench/priors.sh     (g) DCMTK getscu: C-GET of the study into a directory
#                       (m) DCMTK movescu: C-MOVE of the study to a DCMTK storescp
#                       (r) readgate pacs get: C-GET into readgate's priors spool (one
#                           syncfs for the study); its peak RSS
#                       (v) readgate serve, [[pacs]] retrieve = "move": a study of the same
#                           patient arrives, and readgate moves the study above (its prior)
#                           through its own DICOM listener before sending both on; the
#                           time of that C-MOVE (from readgate's "prior retrieved" log line,
#                           C-MOVE-RQ to final response plus the syncfs), and the server's
#                           peak RSS (VmHWM). A fresh data directory per run.
#                       (w) the study's wait from its decision ("study complete: queued")
#                           to "study forwarded" in the same server: (w1) its prior fetched
#                           ahead on its order (ORM before the images, priors.prefetch),
#                           (w0) retrieved as the study leaves (prefetch = false). (v) is
#                           measured in the (w0) runs.
#
# Options:
#   --runs N        repetitions per measurement, median reported (default 5)
#   --count N       number of CT instances of the study (default 300, ~512 KB each)
#   -h, --help
#
# Environment:
#   READGATE_BIN    readgate binary to use; unset: `cargo build --release` and use
#                   ${CARGO_TARGET_DIR:-target}/release/readgate
#   DCMTK_BIN       where DCMTK lives (default /usr/bin)
#   BENCH_DATA_DIR  cache of generated instances (default ${TMPDIR:-/tmp}/readgate-bench-data)
#   KEEP_TMP=1      keep the per-run temp dir (logs) for inspection
set -Eeuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
me=priors.sh
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

runs_and_count "${BASH_SOURCE[0]}" "$@"

dcmtk_bin=${DCMTK_BIN:-/usr/bin}
for t in storescu storescp dcmqrscp getscu movescu dcmdump; do
    [[ -x $dcmtk_bin/$t ]] || die "DCMTK tool $dcmtk_bin/$t not found: apt-get install dcmtk, or set DCMTK_BIN"
done
python3 -c 'import pydicom, numpy' 2>/dev/null ||
    die "python3 lacks pydicom/numpy (pip install pydicom numpy): needed to generate the data"
export TCP_NODELAY=1
readgate_bin

make_work readgate-priors

# ---------------------------------------------------------------- the PACS, loaded once
ensure_ct_data
study=$("$dcmtk_bin/dcmdump" +P StudyInstanceUID "${files[0]}" | sed 's/.*\[\(.*\)\].*/\1/')
[[ -n $study ]] || die "no Study Instance UID in ${files[0]}"

read -r qr_port scp_port rg_port sv_port sv_hl7 sink_port < <(free_ports 6)
mkdir -p "$work/db"
cat >"$work/dcmqrscp.cfg" <<EOF
NetworkTCPPort = $qr_port
MaxPDUSize = 65536
MaxAssociations = 16
HostTable BEGIN
storescp = (MOVEDEST, 127.0.0.1, $scp_port)
readgate = (READGATE, 127.0.0.1, $sv_port)
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
PACS $work/db RW (2000, 4096mb) ANY
AETable END
EOF
"$dcmtk_bin/dcmqrscp" -c "$work/dcmqrscp.cfg" >"$work/dcmqrscp.log" 2>&1 &
pids+=($!)
wait_port "$qr_port" "${pids[-1]}" dcmqrscp "$work/dcmqrscp.log"
log "loading the study ($count instances, $((total_bytes / 1048576)) MiB) into dcmqrscp ..."
"$dcmtk_bin/storescu" -aet LOADER -aec PACS 127.0.0.1 "$qr_port" "${files[@]}" >"$work/load.log" 2>&1 ||
    die "loading dcmqrscp failed (log: $work/load.log)"

write_config "$work/rg" "$rg_port"
cat >>"$work/rg/readgate.toml" <<EOF
[storage]
min_free_mb = 1

[[destinations]]
id = "none"
facility = "NONE"
ae_title = "NONE"
host = "127.0.0.1"
port = 9

[[routes]]
destination = "none"

[[pacs]]
id = "bench"
ae_title = "PACS"
host = "127.0.0.1"
port = $qr_port
timeout_secs = 60
EOF

# ---------------------------------------------------------------- measurements
run_g() {
    local out=$work/g$1 t0 t1
    mkdir -p "$out"
    t0=$(now_ns)
    "$dcmtk_bin/getscu" -aet BENCHGET -aec PACS -S -k QueryRetrieveLevel=STUDY \
        -k "StudyInstanceUID=$study" -od "$out" 127.0.0.1 "$qr_port" >"$out.log" 2>&1 ||
        die "getscu failed (log: $out.log)"
    t1=$(now_ns)
    [[ $(count_files "$out") == "$count" ]] || die "(g) getscu stored $(count_files "$out") of $count"
    rm -rf "$out"
    secs "$t0" "$t1"
}

run_m() {
    local out=$work/m$1 t0 t1 scp
    mkdir -p "$out"
    "$dcmtk_bin/storescp" -aet MOVEDEST -od "$out" "$scp_port" >"$out.scp.log" 2>&1 &
    scp=$!
    pids+=("$scp")
    wait_port "$scp_port" "$scp" storescp "$out.scp.log"
    t0=$(now_ns)
    "$dcmtk_bin/movescu" -aet BENCHMOVE -aec PACS -aem MOVEDEST -S -k QueryRetrieveLevel=STUDY \
        -k "StudyInstanceUID=$study" 127.0.0.1 "$qr_port" >"$out.log" 2>&1 ||
        die "movescu failed (log: $out.log)"
    t1=$(now_ns)
    stop "$scp"
    [[ $(count_files "$out") == "$count" ]] || die "(m) storescp holds $(count_files "$out") of $count"
    rm -rf "$out"
    secs "$t0" "$t1"
}

run_r() {   # prints "SECONDS PEAK_RSS_KB"
    local out=$work/r$1 t0 t1
    t0=$(now_ns)
    /usr/bin/time -f %M -o "$out.rss" "$READGATE_BIN" pacs get --config "$work/rg/readgate.toml" \
        --study "$study" --out "$out" --format json >"$out.json" 2>"$out.log" ||
        die "readgate pacs get failed (log: $out.log)"
    t1=$(now_ns)
    local got
    got=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["instances"]))' "$out.json")
    [[ $got == "$count" ]] || die "(r) readgate retrieved $got of $count"
    rm -rf "$out"
    printf '%s %s\n' "$(secs "$t0" "$t1")" "$(tail -n 1 "$out.rss")"
}

# (v): readgate serve moving the prior through its listener, a storescp as the facility.
write_config "$work/sv" "$sv_port"
cat >>"$work/sv/readgate.toml" <<EOF
stable_after_secs = 1

[storage]
min_free_mb = 1

[log]
format = "json"

[hl7]
listen = "127.0.0.1:$sv_hl7"
default_charset = "utf8"

[[destinations]]
id = "facility"
facility = "RC1"
ae_title = "SINK"
host = "127.0.0.1"
port = $sink_port

[[routes]]
destination = "facility"

[[policy.rules]]
name = "priors"
checks = ["prior_reports"]

[[pacs]]
id = "bench"
ae_title = "PACS"
host = "127.0.0.1"
port = $qr_port
retrieve = "move"
timeout_secs = 60
EOF
# The bench data are dated 2025: the order (asked about from today) reaches back to them.
cat >>"$work/sv/readgate.toml" <<EOF

[policy.priors]
lookback_days = 3650
EOF
cp "$work/sv/readgate.toml" "$work/sv/ahead.toml"
cat >>"$work/sv/readgate.toml" <<EOF

[priors]
prefetch = false
EOF
# The prior's report (so the study passes), its order, and a one-image study of the same
# patient.
oru=$(printf '%s\r' \
    "MSH|^~\\&|RIS|BENCH|READGATE|RAD|20250601120000||ORU^R01|BENCH-ORU-1|P|2.5" \
    "PID|||SYN-BENCH||Bench^Patient" \
    "ORC|RE|PL-B1|FL-B1" \
    "OBR|1|PL-B1|FL-B1|CT|||20250410080000|||||||||||SYNBENCH01||||20250410120000|||F" \
    "OBX|1|TX|GDT^Report^LOCAL||No change.||||||F")
orm=$(printf '%s\r' \
    "MSH|^~\\&|RIS|BENCH|READGATE|RAD|20250601110000||ORM^O01|BENCH-ORM-2|P|2.5" \
    "PID|||SYN-BENCH||Bench^Patient" \
    "ORC|NW|PL-B2|||SC" \
    "OBR|1|PL-B2||CT|||20250601110000|||||||||||SYNBENCH02||||||CT")
current_dir=$work/current
python3 "$repo/tests/peers/make_study.py" "$current_dir" --study-uid 2.25.1234567890123 --count 1 \
    --patient-id SYN-BENCH --accession SYNBENCH02 --study-date 20250601 >/dev/null ||
    die "make_study.py failed"

# The time between two of the server's JSON log lines: the first "study complete: queued"
# and the first "study forwarded" (the study; priors do not log it).
decision_wait() {
    python3 - "$1" <<'PY'
import json, sys
from datetime import datetime
at = {}
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    message = entry.get("fields", {}).get("message")
    if message in ("study complete: queued", "study forwarded") and message not in at:
        at[message] = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
if len(at) < 2:
    sys.exit("no decision and forward in " + sys.argv[1])
print("%.3f" % (at["study forwarded"] - at["study complete: queued"]).total_seconds())
PY
}

hl7_send() {   # hl7_send MESSAGE: one MLLP frame, waits for the ACK's first byte
    exec 3<>"/dev/tcp/127.0.0.1/$sv_hl7"
    printf '\x0b%s\x1c\x0d' "$1" >&3
    timeout 10 head -c 1 <&3 >/dev/null || die "no ACK from readgate's HL7 listener"
    exec 3>&-
}

run_v() {   # run_v N ahead|at_send: prints "MOVE_SECONDS WAIT_SECONDS PEAK_RSS_KB"
    local dir=$work/sv sink=$work/sink$1 pid scp ms rss deadline config=$work/sv/readgate.toml
    local log=$work/sv/serve$1-$2.log
    [[ $2 == ahead ]] && config=$work/sv/ahead.toml
    rm -rf "$dir/var" "$sink"
    mkdir -p "$dir/var" "$sink"
    "$dcmtk_bin/storescp" -aet SINK -od "$sink" "$sink_port" >"$sink.log" 2>&1 &
    scp=$!
    pids+=("$scp")
    wait_port "$sink_port" "$scp" storescp "$sink.log"
    "$READGATE_BIN" serve --config "$config" >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$sv_hl7" "$pid" "readgate serve" "$log"
    wait_port "$sv_port" "$pid" "readgate serve" "$log"
    hl7_send "$oru"
    [[ $2 == ahead ]] && hl7_send "$orm"
    deadline=$((SECONDS + 120))
    until [[ $2 != ahead ]] || grep -q '"prior retrieved"' "$log"; do
        ((SECONDS < deadline)) || die "(w1) no prior fetched on the order within 120 s (log: $log)"
        sleep 0.1
    done
    "$dcmtk_bin/storescu" -aet CT01 -aec READGATE 127.0.0.1 "$sv_port" "$current_dir"/*.dcm \
        >"$dir/current$1.log" 2>&1 || die "(v) storescu of the current study failed"
    until ms=$(grep '"prior retrieved"' "$log" | grep -o '"elapsed_ms":[0-9]*' |
        head -n 1 | cut -d: -f2) && [[ -n $ms ]]; do
        ((SECONDS < deadline)) || die "(v) no prior retrieved within 120 s (log: $log)"
        sleep 0.2
    done
    grep '"prior retrieved"' "$log" | grep -q "\"instances\":$count" ||
        die "(v) readgate did not move all $count instances (log: $log)"
    until grep -q '"study forwarded"' "$log"; do
        ((SECONDS < deadline)) || die "(w) the study was not forwarded within 120 s (log: $log)"
        sleep 0.1
    done
    [[ $(grep -c '"prior retrieved"' "$log") == 1 ]] || die "(w) the prior was retrieved more than once (log: $log)"
    rss=$(vmhwm_kb "$pid")
    stop "$pid"
    stop "$scp"
    printf '%s %s %s\n' "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')" \
        "$(decision_wait "$log")" "$rss"
}

[[ -x /usr/bin/time ]] || die "/usr/bin/time not found: apt-get install time"
g=() m=() r=() rss=() v=() vrss=() w0=() w1=()
for i in $(seq "$runs"); do
    g+=("$(run_g "$i")")
    m+=("$(run_m "$i")")
    out_r=$(run_r "$i")
    r+=("${out_r% *}")
    rss+=("${out_r#* }")
    out_v=$(run_v "$i" at_send) || exit 1
    read -r mv wait kb <<<"$out_v"
    v+=("$mv") w0+=("$wait") vrss+=("$kb")
    out_v=$(run_v "$i" ahead) || exit 1
    read -r _ wait _ <<<"$out_v"
    w1+=("$wait")
    log "run $i/$runs: getscu ${g[-1]} s, movescu ${m[-1]} s, readgate get ${r[-1]} s, readgate serve move ${v[-1]} s, wait at decision ${w1[-1]} s ahead / ${w0[-1]} s at send"
done
G=$(median "${g[@]}") M=$(median "${m[@]}") R=$(median "${r[@]}") RSS=$(median "${rss[@]}")
V=$(median "${v[@]}") VRSS=$(median "${vrss[@]}") W0=$(median "${w0[@]}") W1=$(median "${w1[@]}")
printf '%s\n' "prior retrieval: $count instances, $((total_bytes / 1048576)) MiB, medians of $runs"
printf '  (g) getscu  C-GET        %s s\n' "$G"
printf '  (m) movescu C-MOVE       %s s\n' "$M"
printf '  (r) readgate pacs get    %s s   r/m %s   r/g %s   peak RSS %s MiB\n' \
    "$R" "$(ratio "$R" "$M")" "$(ratio "$R" "$G")" "$(mb_of_kb "$RSS")"
printf '  (v) readgate serve move  %s s   v/m %s   peak RSS %s MiB (the whole server)\n' \
    "$V" "$(ratio "$V" "$M")" "$(mb_of_kb "$VRSS")"
printf '  (w) decision -> forwarded  %s s with the prior fetched on its order, %s s retrieved at send\n' \
    "$W1" "$W0"
