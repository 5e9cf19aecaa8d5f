#!/bin/sh
# Checks that the real peers the tests compare us with are there: djb's ucspi-tcp (installed
# from Debian), pebble, testssl.sh, and the two that scripts/fetch-test-peers.sh fetches into
# build/peers/ (Debian's ucspi-tcp-ipv6, and ucspi-tcp as a .deb). It fetches nothing.
set -e
cd "$(dirname "$0")/.."
for p in tcpserver tcpclient tcprules tcprulescheck; do
  if [ ! -x "/usr/bin/$p" ]; then
    echo "test-peers: fatal: /usr/bin/$p is missing: apt-get install ucspi-tcp" >&2
    exit 111
  fi
done
for p in pebble pebble-challtestsrv; do
  if ! command -v "$p" >/dev/null; then
    echo "test-peers: fatal: $p is missing: apt-get install pebble" >&2
    exit 111
  fi
done
if [ ! -x /usr/bin/testssl ]; then
  echo "test-peers: fatal: /usr/bin/testssl is missing: apt-get install testssl.sh" >&2
  exit 111
fi
# Fetched by scripts/fetch-test-peers.sh (.ci/run runs it): the tests themselves need no network.
if [ ! -x build/peers/ucspi-tcp-ipv6/usr/bin/tcpserver ] || ! ls build/peers/debs/ucspi-tcp_*.deb >/dev/null 2>&1; then
  echo "test-peers: fatal: Debian's ucspi-tcp-ipv6 and ucspi-tcp .deb are not in build/peers/: sh scripts/fetch-test-peers.sh (apt-get download)" >&2
  exit 111
fi
