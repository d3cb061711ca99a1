#!/usr/bin/env bash
# The one-node scenarios of docs/PERFORMANCE.md against the cluster of tests/api/cluster: one
# PostgreSQL in a temporary directory, three wxlogin nodes on it, one sandbox wxlogin as their
# WeChat and SMS gateway, HAProxy round robin in front (docs/examples/haproxy.cfg, with
# /sandbox/ sent to the sandbox so the tool reads the codes there). Each rate is printed beside
# the same run's /healthz rate through HAProxy.
#
#   cargo build --release --bins && benches/cluster.sh            # what docs/PERFORMANCE.md shows
#   WXLOGIN_BIN_DIR=target/debug benches/cluster.sh --quick       # a few seconds, to try it
#
# Arguments go to wxlogin-bench (default scenarios: 1,2,3,5,6; 4 and 7 measure one node's
# memory and disk and start their own); then scenario 2 in safe mode, the nodes restarted with
# the tool's AES key. Needs PostgreSQL's server binaries (initdb) and haproxy;
# run as root, the servers run as nobody.
set -euo pipefail
cd "$(dirname "$0")/.."

# HAProxy holds two descriptors for each connection (the browser's side, the node's) and sizes
# its maxconn from its open-file limit: at 20,000 (this machine's hard limit, which even root may
# not raise here) it takes no connection past ~10,000, so 10,000 held long-polls leave the scans
# that would wake them waiting outside until the polls time out. Scenario 3 holds as many as the
# limit leaves room for, at most the one-node run's 10,000.
ulimit -Hn 65536 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)"
long_polls=$(( $(ulimit -Sn) / 2 - 2000 ))
[ "$long_polls" -gt 10000 ] && long_polls=10000

bin=${WXLOGIN_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
for program in wxlogin wxlogin-bench; do
    [ -x "$bin/$program" ] || { echo "no $bin/$program: cargo build --release --bins" >&2; exit 2; }
done
initdb=$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
[ -n "$initdb" ] || { echo "no initdb: apt-get install postgresql" >&2; exit 2; }
pg_bin=$(dirname "$initdb")
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$haproxy" ] || { echo "no haproxy: apt-get install haproxy" >&2; exit 2; }

# The sandbox's account, which the nodes use as theirs; the tool signs pushes with this token.
appid=wxsandbox0000000
appsecret=cluster-bench-appsecret-0123456789
token=sandbox-token
# wxlogin-bench's safe-mode key (src/bin/wxlogin-bench/server.rs), for the safe-mode run.
aes_key=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG
# As wxlogin-bench sets for the servers it starts: limits never refuse the load.
limits_off=(WXLOGIN_QR_PER_IP_PER_MIN=0 WXLOGIN_MAX_SCENES=0 WXLOGIN_SMS_PER_PHONE_PER_HOUR=0 WXLOGIN_SMS_PER_IP_PER_HOUR=0)

work=$(mktemp -d)
chmod 755 "$work"
pids=()
as_server() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/pg/data/postmaster.pid" ] && as_server "$pg_bin/pg_ctl" -D "$work/pg/data" -m immediate -w stop >/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL on a Unix socket in $work only.
mkdir "$work/pg"
[ "$(id -u)" = 0 ] && chown nobody: "$work/pg"
as_server "$initdb" --no-sync --auth=trust --encoding=UTF8 --locale=C --username=wxlogin -D "$work/pg/data" >/dev/null
as_server "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w start \
    -o "-c listen_addresses='' -k $work/pg -c max_connections=200" >/dev/null
database="postgres:///postgres?host=$work/pg&user=wxlogin"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start NAME VAR=value...: a wxlogin on 127.0.0.1:0; its address in $started.
start() {
    local name=$1
    shift
    mkdir "$work/$name"
    env -i PATH="$PATH" RUST_LOG=warn WXLOGIN_BIND=127.0.0.1:0 WXLOGIN_DATA_DIR="$work/$name/data" "$@" \
        "$bin/wxlogin" >"$work/$name/out" 2>"$work/$name/log" &
    pids+=($!)
    started=
    for _ in $(seq 200); do
        started=$(sed -n 's|^wxlogin listening on http://||p' "$work/$name/out")
        [ -n "$started" ] && return
        sleep 0.1
    done
    cat "$work/$name/log" >&2
    echo "$name did not start" >&2
    exit 1
}

front=$(free_port)
start wechat WXLOGIN_TOKEN=$token WXLOGIN_SANDBOX_APPSECRET=$appsecret \
    WXLOGIN_SANDBOX_PUSH_URL="http://127.0.0.1:$front/wechat"
wechat=$started
nodes=()
node_pids=()
node_env=("${limits_off[@]}" WXLOGIN_DATABASE_URL="$database" WXLOGIN_APPID=$appid
    WXLOGIN_APPSECRET=$appsecret WXLOGIN_TOKEN=$token WXLOGIN_WECHAT_API="http://$wechat/sandbox/api"
    WXLOGIN_SMS_WEBHOOK="http://$wechat/sandbox/sms" WXLOGIN_TRUST_PROXY=1)
for n in 1 2 3; do
    start "node$n" "${node_env[@]}"
    nodes+=("$started")
    node_pids[n]=${pids[-1]}
done

# The documented config with this run's addresses (as tests/api/cluster replaces them).
sed -e 's|^    log /dev/log local0$|    log stderr format raw local0|' -e '/^    user haproxy$/d' -e '/^    group haproxy$/d' \
    -e "s|^    bind :80\$|    bind 127.0.0.1:$front\n    use_backend wechat if { path_beg /sandbox/ }|" \
    -e "s|^    server node1 10.0.0.11:8080\$|    server node1 ${nodes[0]}|" \
    -e "s|^    server node2 10.0.0.12:8080\$|    server node2 ${nodes[1]}|" \
    -e "s|^    server node3 10.0.0.13:8080\$|    server node3 ${nodes[2]}|" \
    docs/examples/haproxy.cfg >"$work/haproxy.cfg"
printf '\nbackend wechat\n    server wechat %s\n' "$wechat" >>"$work/haproxy.cfg"
for node in "${nodes[@]}"; do
    grep -q "server node. $node\$" "$work/haproxy.cfg" || { echo "docs/examples/haproxy.cfg changed: update $0" >&2; exit 1; }
done
# setpriv execs HAProxy in place, so $! is HAProxy's own pid for the cleanup to kill.
unprivileged=()
[ "$(id -u)" = 0 ] && unprivileged=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
"${unprivileged[@]}" "$haproxy" -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$front/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done

echo "cluster: HAProxy http://127.0.0.1:$front -> ${nodes[*]}; WeChat and SMS: http://$wechat" >&2
args=("$@")
printf '%s\n' "${args[@]}" | grep -qx -- --only || args+=(--only 1,2,3,5,6)
printf '%s\n' "${args[@]}" | grep -qx -- --quick || args+=(--long-polls "$long_polls")
echo "scenario 3 through HAProxy holds $long_polls long-polls (open-file limit $(ulimit -Sn))" >&2
status=0
"$bin/wxlogin-bench" --server "$bin/wxlogin" --url "http://127.0.0.1:$front" "${args[@]}" || status=$?
# The cross-node notification alone: long-polls held on node 1, scans pushed to node 2.
echo "cross-node notification: long-polls on node1, scans pushed to node2" >&2
quick=()
printf '%s\n' "${args[@]}" | grep -qx -- --quick && quick=(--quick)
"$bin/wxlogin-bench" --server "$bin/wxlogin" --url "http://${nodes[0]}" --push-url "http://${nodes[1]}" \
    --only 3 "${quick[@]}" || status=$?
# Safe mode: the same three nodes, restarted on their addresses with the tool's AES key (a node
# with one refuses plaintext pushes), behind the same HAProxy.
echo "safe mode: the nodes restarted with WXLOGIN_AES_KEY" >&2
for n in 1 2 3; do
    kill "${node_pids[$n]}" 2>/dev/null || true
    wait "${node_pids[$n]}" 2>/dev/null || true
done
for n in 1 2 3; do
    start "node${n}safe" "${node_env[@]}" WXLOGIN_BIND="${nodes[$((n - 1))]}" WXLOGIN_AES_KEY="$aes_key"
done
# HAProxy marked the nodes down while they were away: wait until it sends to all three again.
served=0
for _ in $(seq 100); do
    served=$(for _ in 1 2 3 4 5 6; do
        { curl -fsS -o /dev/null -D - "http://127.0.0.1:$front/healthz" 2>/dev/null || true; } |
            tr -d '\r' | sed -n 's/^x-served-by: //Ip'
    done | sort -u | wc -l)
    [ "$served" = 3 ] && break
    sleep 0.1
done
[ "$served" = 3 ] || { echo "HAProxy never sent to all three restarted nodes" >&2; status=1; }
"$bin/wxlogin-bench" --server "$bin/wxlogin" --url "http://127.0.0.1:$front" --safe \
    --only 2 "${quick[@]}" || status=$?
if [ "$status" != 0 ]; then
    for name in node1 node2 node3 node1safe node2safe node3safe; do echo "--- $name ---" >&2; tail -n 20 "$work/$name/log" >&2; done
fi
exit "$status"
