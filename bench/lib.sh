# shellcheck shell=bash
# bench/lib.sh — helpers for bench/run: processes, ports, HTTP waits, wrk, medians.
# Sourced, not executed. Expects OUT (results dir) and WORK (scratch dir) to be set.

log() { printf '%s bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
	log "FAILED: $*"
	exit 1
}

# --- processes -------------------------------------------------------------
# Every process bench/run starts is recorded in PIDS; stop_all (the EXIT trap)
# stops exactly those, by PID, and nothing else.
PIDS=()
LAST_PID=

# start_bg LOG CMD... — start CMD in the background with stdout+stderr to LOG.
# Use `env VAR=x cmd` for environment so that $! is the program itself.
start_bg() {
	local logfile=$1
	shift
	"$@" >"$logfile" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

stop_pid() {
	local pid=$1 _
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

stop_all() {
	local pid
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	PIDS=()
}

# alloc_port VAR — a free loopback TCP port (20000-29999, below the ephemeral
# range that wrk's client sockets use), never handed out twice in one run.
declare -A USED_PORTS=()
alloc_port() {
	local p _
	for _ in $(seq 500); do
		p=$((20000 + RANDOM % 10000))
		[[ -z ${USED_PORTS[$p]:-} ]] || continue
		if [[ -z $(ss -Htan "sport = :$p") ]]; then
			USED_PORTS[$p]=1
			printf -v "$1" '%d' "$p"
			return 0
		fi
	done
	die "no free port found"
}

# wait_http URL PID LOG [SECONDS] — wait until URL answers 2xx while PID lives.
wait_http() {
	local url=$1 pid=$2 logfile=$3 limit=${4:-60} _
	for _ in $(seq $((limit * 10))); do
		if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$logfile" >&2 || true
			die "process $pid exited before $url answered (log: $logfile)"
		fi
		sleep 0.1
	done
	tail -n 20 "$logfile" >&2 || true
	die "$url did not answer within ${limit}s (log: $logfile)"
}

# vm_hwm_kb PID — peak resident set size of a running process, in kB.
vm_hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# --- load generation ---------------------------------------------------------
# A target is a name with a method, URL, optional body file and headers.
declare -A T_METHOD=() T_URL=() T_BODY=() T_AUTH=()

# target NAME METHOD URL [BODY_FILE] [AUTH_HEADER]
target() {
	T_METHOD[$1]=$2
	T_URL[$1]=$3
	T_BODY[$1]=${4:-}
	T_AUTH[$1]=${5:-}
}

# load NAME SECONDS LOGFILE — run wrk against target NAME; prints
# "rps p50_us p99_us requests failed", rps counting 2xx answers only. A socket
# error, or non-2xx answers to more than 1% of the requests, fails the run.
load() {
	local name=$1 secs=$2 logfile=$3
	local -a hdrs=()
	[[ -n ${T_BODY[$name]} ]] && hdrs+=(-H "Content-Type: application/json")
	[[ -n ${T_AUTH[$name]} ]] && hdrs+=(-H "${T_AUTH[$name]}")
	WRK_METHOD=${T_METHOD[$name]} WRK_BODY_FILE=${T_BODY[$name]} \
		wrk -t "$THREADS" -c "$CONNS" -d "${secs}s" --timeout 10s -s "$BENCH_DIR/wrk.lua" \
		"${hdrs[@]}" "${T_URL[$name]}" >"$logfile" 2>&1 ||
		die "wrk failed against $name (log: $logfile)"
	local line
	line=$(grep '^WRK_RESULT' "$logfile") || die "wrk printed no result for $name (log: $logfile)"
	local -A r=()
	local kv
	for kv in ${line#WRK_RESULT }; do r[${kv%%=*}]=${kv#*=}; done
	((r[requests] > 0)) || die "no request completed against $name (log: $logfile)"
	((r[socket_errors] == 0)) || die "$name had ${r[socket_errors]} socket errors (log: $logfile)"
	((r[non2xx] * 100 <= r[requests])) ||
		die "$name answered ${r[non2xx]} of ${r[requests]} requests with an error (log: $logfile)"
	local ok_rps
	ok_rps=$(awk -v n="${r[requests]}" -v f="${r[non2xx]}" -v d="${r[duration_us]}" 'BEGIN {printf "%.1f", (n - f) / (d / 1e6)}')
	echo "$ok_rps ${r[p50_us]} ${r[p99_us]} ${r[requests]} ${r[non2xx]}"
}

# --- statistics ---------------------------------------------------------------
# median — the median of the numbers on stdin (one a line).
median() {
	sort -g | awk '{a[NR] = $1} END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
