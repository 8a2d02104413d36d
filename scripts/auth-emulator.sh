#!/usr/bin/env bash
# Runs the Firebase Auth emulator (npm firebase-tools, installed by `npm ci`)
# on free loopback ports, for tests and local runs of the companion API.
#
#   scripts/auth-emulator.sh              start it, print
#                                         FIREBASE_AUTH_EMULATOR_HOST=127.0.0.1:PORT
#                                         once it answers, run until stopped
#   scripts/auth-emulator.sh CMD [ARG...] start it, run CMD with
#                                         FIREBASE_AUTH_EMULATOR_HOST set, stop it,
#                                         exit with CMD's status
#
# Environment:
#   AUTH_EMULATOR_PROJECT    project id (default demo-savesync; a demo- project
#                            never reaches a real Firebase project)
#   AUTH_EMULATOR_PORT       port for the emulator (default: a free one)
#   AUTH_EMULATOR_WATCH_PID  stop when this process is gone (the Go tests set it
#                            to their own pid so a killed test leaves nothing behind)
#
# The emulator gets its own firebase.json in a temporary directory (UI off,
# hub and logging on free ports), so several copies can run side by side and
# the repository's firebase.json, if any, is not needed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
firebase="$root/node_modules/.bin/firebase"
project=${AUTH_EMULATOR_PROJECT:-demo-savesync}
ready_timeout_s=120
max_lifetime_s=21600

if [[ ! -x $firebase ]]; then
	echo "auth-emulator: $firebase is missing: run 'npm ci' in $root first (Node 20 or newer)" >&2
	exit 1
fi
if ! command -v node >/dev/null; then
	echo "auth-emulator: node is not on PATH: install Node.js 20 or newer" >&2
	exit 1
fi

# free_ports prints n distinct free loopback TCP ports.
free_ports() {
	node -e '
const net = require("net");
const n = Number(process.argv[1]);
const servers = [];
let open = 0;
for (let i = 0; i < n; i++) {
  const s = net.createServer();
  servers.push(s);
  s.listen(0, "127.0.0.1", () => {
    if (++open === n) {
      console.log(servers.map((x) => x.address().port).join(" "));
      servers.forEach((x) => x.close());
    }
  });
}' "$1"
}

read -r auth_port hub_port logging_port < <(free_ports 3)
auth_port=${AUTH_EMULATOR_PORT:-$auth_port}
host="127.0.0.1:$auth_port"

dir=$(mktemp -d "${TMPDIR:-/tmp}/savesync-auth-emulator.XXXXXX")
cat >"$dir/firebase.json" <<EOF
{
  "emulators": {
    "auth": {"host": "127.0.0.1", "port": $auth_port},
    "hub": {"host": "127.0.0.1", "port": $hub_port},
    "logging": {"host": "127.0.0.1", "port": $logging_port},
    "ui": {"enabled": false},
    "singleProjectMode": true
  }
}
EOF

(cd "$dir" && CI=true exec "$firebase" emulators:start --only auth --project "$project" >"$dir/emulator.log" 2>&1) &
emulator_pid=$!

cleanup() {
	trap - EXIT INT TERM
	if kill -0 "$emulator_pid" 2>/dev/null; then
		kill -INT "$emulator_pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$emulator_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$emulator_pid" 2>/dev/null || true
	fi
	wait "$emulator_pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# answers reports whether the emulator is up and says it is ready.
answers() {
	node -e '
fetch(process.argv[1]).then((r) => r.json()).then((j) => process.exit(j.authEmulator && j.authEmulator.ready ? 0 : 1), () => process.exit(1));' "http://$host/"
}

deadline=$((SECONDS + ready_timeout_s))
until answers; do
	if ! kill -0 "$emulator_pid" 2>/dev/null; then
		echo "auth-emulator: the emulator exited before it was ready:" >&2
		cat "$dir/emulator.log" >&2
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		echo "auth-emulator: not ready on $host after ${ready_timeout_s}s:" >&2
		cat "$dir/emulator.log" >&2
		exit 1
	fi
	sleep 0.25
done

if (($# > 0)); then
	status=0
	FIREBASE_AUTH_EMULATOR_HOST=$host "$@" || status=$?
	exit "$status"
fi

echo "FIREBASE_AUTH_EMULATOR_HOST=$host"
stop_at=$((SECONDS + max_lifetime_s))
while kill -0 "$emulator_pid" 2>/dev/null && ((SECONDS < stop_at)); do
	if [[ -n ${AUTH_EMULATOR_WATCH_PID:-} ]] && ! kill -0 "$AUTH_EMULATOR_WATCH_PID" 2>/dev/null; then
		break
	fi
	sleep 1
done
