#!/usr/bin/env bash
# Runs savesync locally on its embedded defaults with everything the
# companion needs, on loopback only: what `make run` does.
#
#   the service            http://127.0.0.1:8080  (dev key: dev-server-key)
#   the Auth emulator      http://127.0.0.1:9099  (npm firebase-tools)
#   the companion page     http://127.0.0.1:5173  (web/companion, built here)
#   the support console    http://127.0.0.1:5174  (web/support, built here)
#
# Ctrl-C stops them all. Data is kept in .data/ and survives restarts
# (the Auth emulator's accounts do not: sign up again after a restart).
# The console's staff accounts are made at each start (scripts/staff-accounts.mjs):
# support@example.com and admin@example.com, password staff-123.
#
# Environment: PORT (8080), COMPANION_PORT (5173), SUPPORT_PORT (5174),
# AUTH_EMULATOR_PORT (9099),
# and every SAVESYNC_* variable of the service (README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

api_port=${PORT:-8080}
page_port=${COMPANION_PORT:-5173}
support_port=${SUPPORT_PORT:-5174}
export AUTH_EMULATOR_PORT=${AUTH_EMULATOR_PORT:-9099}

if [[ ${1:-} != --inside ]]; then
	for tool in go node npm; do
		if ! command -v "$tool" >/dev/null; then
			echo "dev: $tool is not on PATH (Go 1.26, Node.js 20 and npm are needed)" >&2
			exit 1
		fi
	done

	# The same installs as make test, once.
	if [[ ! -x node_modules/.bin/firebase ]]; then
		echo "--- npm ci (Firebase Auth emulator)"
		npm ci --no-audit --no-fund --omit=optional
	fi
	if [[ ! -x web/node_modules/.bin/esbuild ]]; then
		echo "--- npm ci --prefix web (companion page)"
		npm ci --prefix web --no-audit --no-fund
	fi
	echo "--- build the companion page and the support console"
	npm --prefix web run --silent build
	go build -o .data/bin/savesync ./cmd/savesync

	echo "--- start the Auth emulator on 127.0.0.1:$AUTH_EMULATOR_PORT"
	exec scripts/auth-emulator.sh "$0" --inside
fi

# From here on FIREBASE_AUTH_EMULATOR_HOST names the running emulator.
dist=web/companion/dist
support_dist=web/support/dist
for d in "$dist" "$support_dist"; do
	cat >"$d/config.json" <<EOF
{
  "apiBase": "http://127.0.0.1:$api_port",
  "firebase": {"apiKey": "demo-api-key", "authDomain": "demo-savesync.firebaseapp.com", "projectId": "demo-savesync"},
  "authEmulatorUrl": "http://$FIREBASE_AUTH_EMULATOR_HOST"
}
EOF
done
node scripts/staff-accounts.mjs

pids=()
cleanup() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	# The rest of this script's children (the sleep feeding esbuild).
	pkill -TERM -P $$ 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# esbuild serves until its stdin closes: give it one that stays open.
sleep infinity | web/node_modules/.bin/esbuild --servedir="$dist" --serve="127.0.0.1:$page_port" --log-level=warning &
pids+=($!)
sleep infinity | web/node_modules/.bin/esbuild --servedir="$support_dist" --serve="127.0.0.1:$support_port" --log-level=warning &
pids+=($!)

# The pages' origins must be allowed by CORS; the default allows
# http://127.0.0.1 and http://localhost on 5173 and 5174.
if [[ ($page_port != 5173 || $support_port != 5174) && -z ${SAVESYNC_CORS_ORIGINS:-} ]]; then
	export SAVESYNC_CORS_ORIGINS="http://127.0.0.1:$page_port,http://localhost:$page_port,http://127.0.0.1:$support_port,http://localhost:$support_port"
fi

cat <<EOF

  companion page   http://127.0.0.1:$page_port   (sign up with any email and password)
  support console  http://127.0.0.1:$support_port   (support@ or admin@example.com, password staff-123)
  service          http://127.0.0.1:$api_port   (game-server key: dev-server-key)
  Auth emulator    http://$FIREBASE_AUTH_EMULATOR_HOST

  Link the page's account to Roblox user 42 as a game server would:
    curl -X POST 127.0.0.1:$api_port/v1/link-codes/CODE/redeem \\
      -H 'Authorization: Bearer dev-server-key' -d '{"userId":42}'

EOF
PORT=$api_port .data/bin/savesync &
pids+=($!)
status=0
wait -n "${pids[@]}" || status=$?
echo "dev: a process stopped (status $status): stopping the rest" >&2
exit "$status"
