#!/usr/bin/env bash
# Runs every check and test of the project: what `make test` and CI run.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "--- go mod download"
go mod download
(cd emulator && go mod download)

echo "--- gofmt"
unformatted="$(find . \( -path ./.git -o -path ./node_modules -o -path ./.data \) -prune -o -name '*.go' -print | xargs gofmt -l)"
if [ -n "$unformatted" ]; then
	echo "these files need gofmt -w:" >&2
	echo "$unformatted" >&2
	exit 1
fi

echo "--- go vet"
go vet ./...
(cd emulator && go vet ./...)

# The race detector needs cgo and a C compiler; without them the tests
# still run, only without it.
race=-race
if [ "$(go env CGO_ENABLED)" != 1 ] || ! command -v "$(go env CC)" >/dev/null 2>&1; then
	echo "no C compiler for cgo: running the tests without -race" >&2
	race=
fi

# The companion tests verify real ID tokens from the Firebase Auth
# emulator (npm firebase-tools, pinned in package-lock.json); the tests
# start it themselves through scripts/auth-emulator.sh.
echo "--- npm ci (Firebase Auth emulator)"
# --omit=optional skips firebase-tools' optional native modules (re2, for
# the Hosting emulator), which would be compiled from C++ on every fresh
# machine; the Auth emulator does not use them.
if [ ! -x node_modules/.bin/firebase ]; then
	npm ci --no-audit --no-fund --omit=optional
fi

# The companion page (web/, its own npm workspace with esbuild, the
# Firebase JS SDK, openapi-typescript and TypeScript).
echo "--- npm ci --prefix web (companion page and its typed client)"
if [ ! -x web/node_modules/.bin/esbuild ]; then
	npm ci --prefix web --no-audit --no-fund
fi
echo "--- web: the client's types match openapi.yaml, and type-check"
npm --prefix web run --silent check
echo "--- web: the client's tests (node --test)"
npm --prefix web test --silent

# The browser tests drive Debian's Chromium (nothing downloaded from
# elsewhere).
echo "--- chromium (browser tests)"
if ! command -v chromium >/dev/null 2>&1; then
	sudo=
	if [ "$(id -u)" != 0 ]; then
		sudo=sudo
	fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y -qq chromium >/dev/null ||
		{ $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null; }
fi
chromium --version

echo "--- go test"
# One Auth emulator for every package (each would otherwise start its own).
scripts/auth-emulator.sh go test $race -count=1 -timeout 15m ./...

# The Firestore emulator is a module of its own (emulator/go.mod).
echo "--- go test (emulator module)"
(cd emulator && go test $race -count=1 -timeout 10m ./...)
