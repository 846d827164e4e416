#!/usr/bin/env bash
# `make run`: the whole pipeline on this machine, end to end.
#   Redis (data under var/) -> keyalertd -> a PagerDuty-compatible receiver that
#   prints each page (or the real PagerDuty when PAGERDUTY_ROUTING_KEY is set),
#   a demo rule created through the REST API, and a log generator whose lines go
#   through the plugin: the real Fluent Bit ($FLUENT_BIT, or `fluent-bit` on PATH)
#   with conf/fluent-bit-multiline.conf, else build/flbhost, which loads build/keyalert.so exactly as Fluent Bit does.
# Ctrl-C stops everything it started, and the script then exits 0: stopping
# the demo is how it is meant to end, not an error for make to report.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
var=${KEYALERT_DEMO_VAR:-$root/var}
redis_port=${KEYALERT_DEMO_REDIS_PORT:-6390}
api_addr=${KEYALERT_DEMO_LISTEN:-127.0.0.1:8080}
pd_addr=${KEYALERT_DEMO_RECEIVER:-127.0.0.1:8090}
token=demo-token
demo_minutes=${KEYALERT_DEMO_MINUTES:-0} # 0 = until Ctrl-C

say() { printf '\033[1m[demo]\033[0m %s\n' "$*"; }
pids=()
cleanup() {
	trap - INT TERM EXIT
	say "stopping"
	for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[i]}" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	say "stopped; data is in var/ (make clean-demo removes it)"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

command -v curl >/dev/null 2>&1 || { echo "demo: curl is needed (sudo apt-get install -y curl)" >&2; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }
for a in "127.0.0.1:$redis_port" "$api_addr" "$pd_addr"; do
	port_free "$a" || { echo "demo: $a is already in use (another 'make run'?). Stop it or set KEYALERT_DEMO_* ports." >&2; exit 1; }
done

wait_http() { # url, seconds
	for _ in $(seq 1 $(( $2 * 10 ))); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
	echo "demo: $1 did not come up" >&2; return 1
}

# Each run starts from an empty demo database, so rules and counts of an
# earlier run do not pile up; var/ keeps the last run's data for inspection.
rm -rf "$var/redis"
mkdir -p "$var/redis" "$var/demo" "$var/log"
: >"$var/demo/app.log"

redis_bin=$(command -v redis-server || echo /usr/bin/redis-server)
say "redis-server on 127.0.0.1:$redis_port (data in var/redis)"
"$redis_bin" --port "$redis_port" --bind 127.0.0.1 --dir "$var/redis" --appendonly yes --appendfsync everysec \
	--save "" --daemonize no --logfile "$var/log/redis.log" &
pids+=($!)
for _ in $(seq 1 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis_url="redis://127.0.0.1:$redis_port/0"

routing_key=${PAGERDUTY_ROUTING_KEY:-}
if [ -n "$routing_key" ]; then
	pd_url=${KEYALERT_PAGERDUTY_URL:-https://events.pagerduty.com/v2/enqueue}
	say "pages go to PagerDuty at $pd_url"
else
	routing_key=demo0routing0key0000000000000000
	pd_url="http://$pd_addr/v2/enqueue"
	say "PagerDuty-compatible receiver on $pd_addr: each page is printed below as"
	say "  <time> 202 trigger|acknowledge|resolve dedup=<alert> …  (202 Accepted is PagerDuty's answer to an event it took)"
	build/pdreceiver -addr "$pd_addr" &
	pids+=($!)
fi

say "keyalertd on $api_addr (log: var/log/keyalertd.log)"
KEYALERT_REDIS_URL=$redis_url KEYALERT_LISTEN=$api_addr KEYALERT_API_TOKENS=$token \
KEYALERT_PAGERDUTY_URL=$pd_url KEYALERT_PUBLIC_URL="http://$api_addr" \
	build/keyalertd >"$var/log/keyalertd.log" 2>&1 &
pids+=($!)
wait_http "http://$api_addr/readyz" 20

say "creating demo rules through the API"
for rule in \
	'{"name":"java exceptions","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},"group_by":"host","severity":"critical","pagerduty":{"routing_key":"'"$routing_key"'"},"repeat_interval":"1h","resolve_after":"5m","enabled":true,"runbook_url":"https://example.com/runbooks/java-exceptions"}' \
	'{"name":"disk full","keywords":["Disk Full"],"ignore_case":true,"condition":{"type":"threshold","count":1,"window":"5m"},"group_by":"host","severity":"error","pagerduty":{"routing_key":"'"$routing_key"'"},"repeat_interval":"1h","resolve_after":"5m","enabled":true}'; do
	curl -fsS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
		-d "$rule" "http://$api_addr/api/v1/rules" | sed 's/^/       /'; echo
done

say "log generator -> $var/demo/app.log (bursts of Exception every ${KEYALERT_DEMO_BURST_EVERY:-30s}, Disk Full now and then)"
build/keyalert-demo loggen -o "$var/demo/app.log" -host web-12 -burst-every "${KEYALERT_DEMO_BURST_EVERY:-30s}" &
pids+=($!)

fluent_bit=${FLUENT_BIT:-$(command -v fluent-bit || true)}
if [ -n "$fluent_bit" ]; then
	say "feeding through the real Fluent Bit ($fluent_bit) with conf/fluent-bit-multiline.conf (log: var/log/fluent-bit.log)"
	rm -f "$var/fluent-bit-java.db"*
	# The same labels as the test-host mode: tag app.demo, host web-12 (the
	# shipped file tags by path and takes the machine's host name).
	sed -e 's|^\( *Tag  *\)java\.\*|\1app.demo|' -e 's|^\( *Match  *\)java\.\*|\1app.demo|' \
		-e "s|^\\( *DB  *\\).*|\\1$var/fluent-bit-java.db|" \
		-e "s|^\\( *P[a-z]*_File  *\\)conf/|\\1$root/conf/|" \
		-e 's|^\( *Redis_URL .*\)|\1\n    Hostname     web-12|' conf/fluent-bit-multiline.conf >"$var/demo/fluent-bit.conf"
	KEYALERT_LOG_PATH="$var/demo/app.log" KEYALERT_REDIS_URL=$redis_url \
		"$fluent_bit" -c "$var/demo/fluent-bit.conf" >"$var/log/fluent-bit.log" 2>&1 &
else
	say "fluent-bit is not on PATH: feeding through build/flbhost + build/keyalert.so (log: var/log/plugin.log)"
	build/keyalert-demo feed -p "Redis_URL=$redis_url" -p Keywords=Exception -p Samples=3 -host web-12 \
		-tag app.demo "$var/demo/app.log" >"$var/log/plugin.log" 2>&1 &
fi
pids+=($!)

say "counts per minute of every rule's series, printed when they change, and each alert as its state"
say "changes (silenced ones marked so); Ctrl-C to stop. Meanwhile, in another terminal:"
say "  export KEYALERT_URL=http://$api_addr KEYALERT_TOKEN=$token; build/keyalert alerts"
KEYALERT_TOKEN=$token build/keyalert watch -url "http://$api_addr" &
pids+=($!)
if [ "$demo_minutes" != 0 ]; then sleep $(( demo_minutes * 60 )); else wait "${pids[-1]}"; fi
