# Shared helpers of the bench scripts (bench/*.sh); sourced, not run.
#
# The sourcing script sets `me` (its name, for messages) and `repo` first. Provides:
# die/log, usage, option checks (positive, runs_and_count, check_only, want), the release target dir, a
# work dir removed on exit with every process in `pids` stopped, stop/forget_pid, nap,
# free_ports, listening, wait_port, write_config, now_ns, secs, median, count_files,
# vmhwm_kb, mb_of_kb; readgate_bin; the generated CT data (generated, ensure_ct_data: the
# caller sets `count`); serve_down (a gateway whose destination is down); a PostgreSQL
# server of the bench's own (start_postgres, new_database, stop_postgres). free_ports runs
# ${PYTHON:-python3}.

die() { printf '%s: error: %s\n' "$me" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$me" "$*" >&2; }

# usage SCRIPT: the script's header comment (line 2 up to `set -E`), without the `# `.
usage() { sed -n '2,/^set -E/p' "$1" | sed '$d; s/^# \{0,1\}//'; }

# positive OPTION VALUE: die unless VALUE is a positive integer.
positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer"; }

# runs_and_count SCRIPT ARGS...: the options of a bench that takes only --runs and
# --count (and --help); sets `runs` (default 5) and `count` (default 300).
runs_and_count() {
    local script=$1
    shift
    runs=5 count=300
    while (($#)); do
        case $1 in
            --runs) runs=${2:?--runs needs a number}; shift ;;
            --count) count=${2:?--count needs a number}; shift ;;
            -h|--help) usage "$script"; exit 0 ;;
            *) die "unknown argument '$1' (try --help)" ;;
        esac
        shift
    done
    positive --runs "$runs"
    positive --count "$count"
}

# check_only LETTERS TEXT: die unless $only is a comma list of LETTERS (TEXT lists them).
check_only() { [[ $only =~ ^[$1](,[$1])*$ ]] || die "--only takes a comma list of $2"; }

# want X: is X in the comma list $only?
want() { [[ ",$only," == *",$1,"* ]]; }

# cargo's target dir as an absolute path (CARGO_TARGET_DIR, relative to the repo, or target).
release_target_dir() {
    local t=${CARGO_TARGET_DIR:-$repo/target}
    [[ $t == /* ]] || t=$repo/$t
    printf '%s\n' "$t"
}

# ---------------------------------------------------------------- clean-up
pids=()
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || :; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || :
        wait "$p" 2>/dev/null || :
    done
    if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
    exit "$rc"
}

# make_work NAME: sets work to a fresh temp dir ${TMPDIR:-/tmp}/NAME.XXXXXX, removed on exit
# (KEEP_TMP=1 keeps it) after every process in `pids` is stopped.
make_work() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

forget_pid() { local p keep=(); for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done; pids=("${keep[@]}"); }

# Stop one process we started: TERM, up to 10 s, then KILL.
stop() {
    local p=$1
    kill -TERM "$p" 2>/dev/null || :
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || :
    wait "$p" 2>/dev/null || :
    forget_pid "$p"
}

# ---------------------------------------------------------------- helpers
exec {nap_fd}<> <(:)                 # sleep without forking: read with a timeout
nap() { read -r -t "$1" -u "$nap_fd" || :; }

free_ports() {   # N free TCP ports on 127.0.0.1, bound at the same time so they differ
    "${PYTHON:-python3}" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

listening() {   # is something listening on 127.0.0.1:$1 ?
    if command -v ss >/dev/null; then
        [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# wait_port PORT PID NAME LOG: until PORT accepts connections; fail if PID dies.
wait_port() {
    local port=$1 pid=$2 name=$3 logf=$4 deadline=$((SECONDS + 30))
    until listening "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited before listening on port $port; last lines of $logf:"
            tail -n 30 "$logf" >&2 || :
            die "$name did not start"
        fi
        ((SECONDS < deadline)) || die "$name not listening on 127.0.0.1:$port after 30 s (log: $logf)"
        nap 0.05
    done
}

# start_postgres: a PostgreSQL server for the (p) measurements, in a temp dir of its own
# (initdb refuses root: run as the postgres user then), loopback, fsync on; sets pg_port,
# pg_dir, pg_bin. stop_postgres stops it and removes its directory; new_database NAME
# creates a database and prints its URL.
start_postgres() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -x $pg_bin/initdb ]] || die "needs PostgreSQL's server (scripts/install-test-deps installs it)"
    pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/readgate-bench-pg.XXXXXX")
    chmod 755 "$pg_dir"
    as_pg=()
    if [[ $(id -u) == 0 ]]; then chown postgres "$pg_dir"; as_pg=(runuser -u postgres --); fi
    "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -A trust -E UTF8 --no-locale -U readgate >"$pg_dir/initdb.log" 2>&1 ||
        die "PostgreSQL initdb failed (log: $pg_dir/initdb.log)"
    pg_port=$(free_ports 1)
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
        -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null ||
        die "PostgreSQL did not start (log: $pg_dir/server.log)"
    pids+=("$(head -n 1 "$pg_dir/data/postmaster.pid")")
}

stop_postgres() {
    [[ -n ${pg_dir:-} ]] || return 0
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || :
    rm -rf "$pg_dir"
}

new_database() {
    "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U readgate -d postgres \
        -c "CREATE DATABASE $1" >/dev/null || die "PostgreSQL: cannot create database $1"
    printf 'postgresql://readgate@127.0.0.1:%s/%s\n' "$pg_port" "$1"
}

# write_config DIR DICOM_PORT: DIR/readgate.toml with the [gateway] section (data in DIR/var)
# and the [dicom] one every bench uses; the caller appends the rest (lines before its first
# header still belong to [dicom]).
write_config() {
    mkdir -p "$1/var"
    cat >"$1/readgate.toml" <<EOF
[gateway]
id = "bench"
data_dir = "$1/var"
sending_facility = "BENCH"

[dicom]
ae_title = "READGATE"
listen = "127.0.0.1:$2"
allow_any_calling_ae = true
EOF
}

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); if (NR % 2) print v[m]; else printf "%.3f\n", (v[m] + v[m + 1]) / 2 }'; }

count_files() {   # regular files directly in $1 (no forks)
    local f n=0
    for f in "$1"/*; do [[ -f $f ]] && n=$((n + 1)); done
    echo "$n"
}

ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (y > 0) printf "%.2f", x / y; else print "n/a" }'; }

vmhwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
mb_of_kb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# readgate_bin: sets READGATE_BIN to an absolute path; unset, builds the release binary
# first (`cargo build --release --locked --bin readgate`).
readgate_bin() {
    if [[ -z ${READGATE_BIN:-} ]]; then
        command -v cargo >/dev/null || die "cargo not found and READGATE_BIN not set"
        log "building readgate (cargo build --release) ..."
        (cd "$repo" && cargo build --release --locked --quiet --bin readgate) || die "cargo build --release failed"
        READGATE_BIN=$(release_target_dir)/release/readgate
    fi
    [[ -x $READGATE_BIN ]] || die "readgate binary '$READGATE_BIN' not found or not executable"
    READGATE_BIN=$(cd "$(dirname "$READGATE_BIN")" && pwd)/$(basename "$READGATE_BIN")
}

# ---------------------------------------------------------------- data
data_root=${BENCH_DATA_DIR:-${TMPDIR:-/tmp}/readgate-bench-data}
gen_stamp=$(sha256sum "$repo/sample-dicom/generate.py" | cut -c1-16)

# generated DIR COMPLETE WHAT ARGS...: DIR holds `generate.py ARGS... DIR`'s output, reused
# when stamped by this generate.py and the command COMPLETE succeeds, else made afresh.
generated() {
    local dir=$1 complete=$2 what=$3 stamp=$1/.generated-by-$gen_stamp
    shift 3
    if [[ -e $stamp ]] && "$complete"; then
        log "reusing $what in $dir"
    else
        log "generating $what into $dir ..."
        rm -rf "$dir"
        python3 "$repo/sample-dicom/generate.py" "$@" "$dir" >/dev/null
        touch "$stamp"
    fi
}

ct_complete() { (($(count_files "$data_dir") == count)); }

ensure_ct_data() {   # sets data_dir, files, total_bytes
    data_dir=$data_root/ct-$count
    generated "$data_dir" ct_complete "$count bench CT instances" --bench-ct "$count"
    files=("$data_dir"/CT*.dcm)
    ((${#files[@]} == count)) || die "expected $count files in $data_dir, found ${#files[@]}"
    total_bytes=$(stat -c %s "${files[@]}" | awk '{ s += $1 } END { print s }')
}

# serve_down DIR PORT: readgate serve on 127.0.0.1:PORT with its data in DIR/var, its only
# destination down (everything received stays in the spool); sets rg_pid once it listens.
serve_down() {
    local dir=$1 port=$2 dport
    dport=$(free_ports 1)
    write_config "$dir" "$port"
    cat >>"$dir/readgate.toml" <<EOF

[storage]
min_free_mb = 1

[[destinations]]
id = "down"
facility = "NOWHERE"
ae_title = "DOWN"
host = "127.0.0.1"
port = $dport

[[routes]]
destination = "down"
EOF
    (cd "$dir" && exec "$READGATE_BIN" serve --config "$dir/readgate.toml") >"$dir/readgate.log" 2>&1 &
    rg_pid=$!
    pids+=("$rg_pid")
    wait_port "$port" "$rg_pid" readgate "$dir/readgate.log"
}
