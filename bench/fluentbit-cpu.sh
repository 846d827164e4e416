#!/usr/bin/env bash
# Whole-process CPU (user+sys) of a real Fluent Bit reading the same 1,024,000
# loghub lines with tail, once per pipeline:
#   tail -> null                       (the baseline)
#   tail -> keyalert, 32 keywords      (one instance; counts checked in Redis)
#   tail -> grep, one 32-keyword regex -> null   (skipped with GREP=0)
# Each pipeline runs RUNS times (default 3); the table shows the median.
#
#   FLUENT_BIT=/path/to/fluent-bit bash bench/fluentbit-cpu.sh
#
# It builds nothing but `make plugin`: Fluent Bit itself is not part of this
# repository, so without FLUENT_BIT the script says "skipped" and exits 0; it
# does the same when ../shared/loghub or redis-server is absent. It starts its
# own redis-server on a free loopback port in a temp dir and removes both at
# the end. Figures and how they were taken: bench/fluentbit.md.
# Other knobs: LINES (default 1024000), RUNS (3), GREP (1), TIMEOUT (600 s per
# run), KEEP_TMP=1 keeps the temp dir (configs, input, Fluent Bit logs).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
loghub=$repo/../shared/loghub
LINES=${LINES:-1024000}
RUNS=${RUNS:-3}
GREP=${GREP:-1}
TIMEOUT=${TIMEOUT:-600}
export LC_ALL=C

skip() { echo "skipped: $*"; exit 0; }
die() { echo "fluentbit-cpu: $*" >&2; exit 1; }

if [[ -z ${FLUENT_BIT:-} ]]; then
	skip "set FLUENT_BIT=/path/to/fluent-bit (a Fluent Bit built with FLB_PROXY_GO=On, the tail input and the null output)"
fi
[[ -x $FLUENT_BIT ]] || die "FLUENT_BIT=$FLUENT_BIT is not an executable file"
shopt -s nullglob
logs=("$loghub"/*.log)
shopt -u nullglob
((${#logs[@]} > 0)) || skip "no loghub samples in $loghub (expected next to the checkout)"
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	skip "redis-server/redis-cli not found (make redis installs them)"
fi
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS=$RUNS: want a positive integer"
[[ $LINES =~ ^[1-9][0-9]*$ ]] || die "LINES=$LINES: want a positive integer"

make -s -C "$repo" plugin
so=$repo/build/keyalert.so
[[ -f $so ]] || die "make plugin did not produce $so"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keyalert-flb-bench.XXXXXX")
redis_pid=
cleanup() {
	if [[ -n $redis_pid ]]; then
		kill "$redis_pid" 2>/dev/null || true
		wait "$redis_pid" 2>/dev/null || true
	fi
	if [[ ${KEEP_TMP:-0} == 1 ]]; then
		echo "kept $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT

# --- input: the loghub lines repeated (CRLF -> LF) up to LINES lines ---------
per_pass=0
for f in "${logs[@]}"; do
	per_pass=$((per_pass + $(awk 'END { print NR }' "$f")))
done
passes=$(((LINES + per_pass - 1) / per_pass))
args=()
for ((i = 0; i < passes; i++)); do args+=("${logs[@]}"); done
input=$tmp/input.log
awk -v n="$LINES" '{ sub(/\r$/, ""); print; if (++c >= n) exit }' "${args[@]}" >"$input"
echo "input: $(wc -l <"$input") lines, $(($(wc -c <"$input") / 1024 / 1024)) MiB from ${#logs[@]} loghub files"

# --- Redis on a free loopback port -------------------------------------------
redis_port=
for ((attempt = 0; attempt < 20; attempt++)); do
	port=$((20000 + RANDOM % 40000))
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi # taken
	redis-server --bind 127.0.0.1 --port "$port" --dir "$tmp" --save '' --appendonly no \
		--logfile "$tmp/redis.log" --daemonize no &
	redis_pid=$!
	for ((w = 0; w < 50; w++)); do
		if [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]]; then redis_port=$port; break; fi
		kill -0 "$redis_pid" 2>/dev/null || break
		sleep 0.1
	done
	[[ -n $redis_port ]] && break
	kill "$redis_pid" 2>/dev/null || true
	wait "$redis_pid" 2>/dev/null || true
	redis_pid=
done
[[ -n $redis_port ]] || die "could not start redis-server on a free loopback port (see $tmp/redis.log)"
rcli() { redis-cli -p "$redis_port" "$@"; }

# --- pipelines ---------------------------------------------------------------
# 32 keywords one sees in alerting setups, matched case-sensitively as
# substrings by one keyalert instance and by one grep regex.
keywords=(Exception ERROR WARN error FATAL CRITICAL SEVERE Traceback panic
	OutOfMemoryError NullPointerException StackOverflowError timeout "timed out"
	"Connection refused" "Connection reset" "Permission denied" "authentication failure"
	"Failed password" "Invalid user" segfault "core dumped" "Killed process" deadlock
	corrupt "No space left on device" unreachable "Broken pipe" abort failed denied refused)
((${#keywords[@]} == 32)) || die "want 32 keywords, have ${#keywords[@]}"
kw_list=$(IFS=,; echo "${keywords[*]}")
kw_regex="($(IFS='|'; echo "${keywords[*]}"))"
stream_key=keyalert:bench

# Every pipeline reads the input with the same tail settings.
write_conf() { # name, output sections...
	local name=$1
	shift
	cat >"$tmp/$name.conf" <<EOF
[SERVICE]
    Flush        1
    Grace        30
    Log_Level    info
    plugins_file $tmp/plugins.conf

[INPUT]
    Name              tail
    Tag               bench
    Path              $input
    Read_From_Head    true
    Exit_On_Eof       on
    Buffer_Chunk_Size 1M
    Buffer_Max_Size   1M
    Skip_Long_Lines   on

$*
EOF
}
printf '[PLUGINS]\n    Path %s\n' "$so" >"$tmp/plugins.conf"

write_conf null "[OUTPUT]
    Name  null
    Match *"
write_conf keyalert "[OUTPUT]
    Name        keyalert
    Match       *
    Redis_URL   redis://127.0.0.1:$redis_port/0
    Stream      $stream_key
    Hostname    bench
    Keywords    $kw_list"
write_conf grep "[FILTER]
    Name  grep
    Match *
    Regex log $kw_regex

[OUTPUT]
    Name  null
    Match *"

# run_once name: runs Fluent Bit on $tmp/name.conf, prints "user+sys" seconds.
run_once() {
	local name=$1 log=$tmp/$1.log rc=0 t
	local TIMEFORMAT='%3U %3S'
	{ time timeout "$TIMEOUT" "$FLUENT_BIT" -c "$tmp/$name.conf" >"$log" 2>&1; } 2>"$tmp/time" || rc=$?
	((rc == 0)) || { tail -n 20 "$log" >&2; die "$name: fluent-bit exited with status $rc (log above, full log with KEEP_TMP=1)"; }
	grep -q 'ended, stop' "$log" || { tail -n 20 "$log" >&2; die "$name: tail never reached the end of the input"; }
	# A retried chunk would still count right, but it is not the run we measure.
	local bad='\[error\]|level=ERROR|failed to flush|retry'
	if grep -Eq "$bad" "$log"; then
		grep -E "$bad" "$log" | head -n 5 >&2
		die "$name: Fluent Bit logged errors or retries"
	fi
	read -r u s <"$tmp/time"
	awk -v u="$u" -v s="$s" 'BEGIN { printf "%.3f\n", u + s }'
}

# Sums the stream's counts per keyword, each (batch, keyword, tag, host,
# minute) series once, as the backend would apply them.
count_lua='
local seen, sum, n = {}, {}, 0
for _, m in ipairs(redis.call("XRANGE", KEYS[1], "-", "+")) do
  local f, v = m[2], {}
  for i = 1, #f, 2 do v[f[i]] = f[i + 1] end
  if v.e then -- entry format version 2: [batch, kw, match, icase, tag, host, minute, count, ...]
    local a = cjson.decode(v.e)
    v = {batch = a[1], kw = a[2], tag = a[5], host = a[6], minute = tostring(a[7]), count = a[8]}
  end
  local id = table.concat({v.batch or "", v.kw or "", v.tag or "", v.host or "", v.minute or ""}, "|")
  n = n + 1
  if v.kw and not seen[id] then
    seen[id] = true
    sum[v.kw] = (sum[v.kw] or 0) + (tonumber(v.count) or 0)
  end
end
local out = {"#entries", tostring(n)}
for k, c in pairs(sum) do out[#out + 1] = k; out[#out + 1] = tostring(c) end
return out'

# Lines containing each keyword, as the plugin should count them.
declare -A want
for kw in "${keywords[@]}"; do
	want[$kw]=$(grep -acF -- "$kw" "$input" || true)
done

check_counts() {
	local -A got=()
	local k v entries=0 bad=0 total=0 wtotal=0
	while IFS= read -r k && IFS= read -r v; do
		if [[ $k == "#entries" ]]; then entries=$v; else got[$k]=$v; fi
	done < <(rcli --raw EVAL "$count_lua" 1 "$stream_key")
	for kw in "${keywords[@]}"; do
		total=$((total + ${got[$kw]:-0}))
		wtotal=$((wtotal + want[$kw]))
		if [[ ${got[$kw]:-0} != "${want[$kw]}" ]]; then
			echo "  count mismatch for \"$kw\": Redis ${got[$kw]:-0}, input lines ${want[$kw]}" >&2
			bad=1
		fi
	done
	for k in "${!got[@]}"; do
		[[ -v "want[$k]" ]] || { echo "  unexpected keyword in stream: \"$k\"" >&2; bad=1; }
	done
	((total > 0)) || { echo "  no counts in stream $stream_key" >&2; bad=1; }
	((bad == 0)) || die "keyalert counts in Redis are wrong (see above)"
	echo "  counts ok: $entries stream entries, $total keyword hits = grep -cF over the input ($wtotal)" >&2
}

pipelines=(null keyalert)
((GREP == 1)) && pipelines+=(grep)
declare -A label=(
	[null]="tail -> null"
	[keyalert]="tail -> keyalert (32 keywords, 1 instance)"
	[grep]="tail -> grep (one 32-keyword regex) -> null"
)
declare -A median
for p in "${pipelines[@]}"; do
	samples=()
	for ((r = 1; r <= RUNS; r++)); do
		[[ $p == keyalert ]] && rcli DEL "$stream_key" >/dev/null
		t=$(run_once "$p")
		samples+=("$t")
		echo "$p run $r: $t s" >&2
		[[ $p == keyalert ]] && check_counts
	done
	median[$p]=$(printf '%s\n' "${samples[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
done

version=$("$FLUENT_BIT" --version 2>/dev/null | head -n 1 || true)
echo
echo "$version, $(wc -l <"$input") lines, median of $RUNS runs, whole-process user+sys CPU"
echo
echo "| pipeline | CPU seconds | vs null |"
echo "|---|---|---|"
for p in "${pipelines[@]}"; do
	awk -v l="${label[$p]}" -v t="${median[$p]}" -v n="${median[null]}" \
		'BEGIN { printf "| %s | %.2f | %.2fx |\n", l, t, (n > 0 ? t / n : 0) }'
done
