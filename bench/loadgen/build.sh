#!/bin/sh
# Builds the load generator (the .go files here) with Debian's Go and gorilla/websocket, in GOPATH mode:
# nothing is downloaded. Installs the two Debian packages with apt-get when they are missing, and
# Debian's wrk (the HTTP workload's client) with them.
#
#   sh bench/loadgen/build.sh [OUTPUT]     # default OUTPUT: build/bench/loadgen in the checkout
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../build/bench/loadgen}
gorilla=/usr/share/gocode/src/github.com/gorilla/websocket
if ! command -v go >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1 || [ ! -d "$gorilla" ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-go golang-github-gorilla-websocket-dev wrk
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/loadgen" "$(dirname "$out")"
cp "$here"/*.go "$work/src/loadgen/"
cd "$work/src/loadgen"
GO111MODULE=off GOPATH="$work:/usr/share/gocode" GOCACHE="$work/cache" GOFLAGS= go build -o "$work/loadgen" .
mv "$work/loadgen" "$out"
echo "built $out"
