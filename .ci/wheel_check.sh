#!/usr/bin/env bash
# Build the wheel, check that it holds everything, install it in a fresh venv and put one request
# through a router and a connector started from that venv (not from the checkout).
# Every step is bounded; every process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        timeout 20 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
    echo "wheel check: $*" >&2
    for log in "$WORK"/*.log; do
        [ -f "$log" ] && { echo "--- $log" >&2; tail -n 20 "$log" >&2; }
    done
    exit 1
}

# wait_line FILE PATTERN: the first line of FILE matching PATTERN, within 30 s
wait_line() {
    local i line
    for i in $(seq 150); do
        line=$(grep -m1 -E "$2" "$1" 2>/dev/null || true)
        if [ -n "$line" ]; then echo "$line"; return 0; fi
        sleep 0.2
    done
    fail "no line matching '$2' in $1 within 30 s"
}

echo "wheel check: building"
# from a copy of the files git holds (or would): no stale build/ directory, nothing ignored
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$WORK/src"
timeout 300 "$PYTHON" -m pip wheel --quiet --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL=$(ls "$WORK"/dist/crank_sync-*.whl)
CONTENTS=$("$PYTHON" -m zipfile -l "$WHEEL")
for wanted in crank_sync/router/dashboard.html crank_sync/py.typed "dist-info/licenses/LICENSE"; do
    grep -q "$wanted" <<<"$CONTENTS" || fail "$(basename "$WHEEL") lacks $wanted"
done

echo "wheel check: installing $(basename "$WHEEL") in a fresh venv"
timeout 60 "$PYTHON" -m venv "$WORK/venv"
VENV=$WORK/venv/bin
timeout 300 "$VENV/python" -m pip install --quiet "$WHEEL"

# from here on, run outside the checkout so that nothing imports it by accident
cd "$WORK"
LOCATION=$("$VENV/python" -c "import crank_sync; print(crank_sync.__file__)")
case "$LOCATION" in
    "$WORK"/venv/*) ;;
    *) fail "crank_sync imported from $LOCATION, not from the venv" ;;
esac

mkdir -p site/wheel-check
echo "hello from the wheel check" > site/wheel-check/index.html
"$VENV/python" -u -m http.server 0 --bind 127.0.0.1 --directory site >"$WORK/service.log" 2>&1 &
PIDS+=($!)
"$VENV/crank-router" --http-port 0 --registration-port 0 >"$WORK/router.log" 2>&1 &
ROUTER=$!
PIDS+=("$ROUTER")

SERVICE_PORT=$(wait_line "$WORK/service.log" "port [0-9]+" | sed -E 's/.*port ([0-9]+).*/\1/')
HTTP_PORT=$(wait_line "$WORK/router.log" "^router http port:" | awk '{print $4}')
REGISTRATION_PORT=$(wait_line "$WORK/router.log" "^router registration port:" | awk '{print $4}')

"$VENV/crank-connector" --router "ws://127.0.0.1:$REGISTRATION_PORT" --route wheel-check \
    --target "http://127.0.0.1:$SERVICE_PORT" >"$WORK/connector.log" 2>&1 &
CONNECTOR=$!
PIDS+=("$CONNECTOR")
wait_line "$WORK/connector.log" "serving route wheel-check" >/dev/null

BODY=$("$VENV/python" - "$HTTP_PORT" <<'EOF'
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(f"http://127.0.0.1:{sys.argv[1]}/wheel-check/", timeout=10) as resp:
    assert resp.status == 200, resp.status
    print(resp.read().decode().strip())
EOF
) || fail "no 200 through the router"
[ "$BODY" = "hello from the wheel check" ] || fail "unexpected body: $BODY"

# both stop cleanly on SIGTERM (exit status 0)
for pid in "$CONNECTOR" "$ROUTER"; do
    kill -TERM "$pid"
    status=0
    timeout 30 tail --pid="$pid" -f /dev/null || fail "process $pid did not stop within 30 s"
    wait "$pid" || status=$?
    [ "$status" -eq 0 ] || fail "process $pid exited with status $status"
done
echo "wheel check: ok (router, connector and a 200 from the installed wheel)"
