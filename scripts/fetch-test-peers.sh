#!/bin/sh
# Fetches the test peers that Debian ships but that cannot be installed beside the others
# (apt-get download: the network, and fresh package lists): Debian's ucspi-tcp-ipv6, which
# conflicts with ucspi-tcp and is therefore unpacked into build/peers/, and ucspi-tcp as a .deb,
# which the package test installs beside ours in a scratch root. .ci/run runs it before the
# tests; npm test itself needs no network (scripts/test-peers.sh only checks).
set -e
cd "$(dirname "$0")/.."
v6=build/peers/ucspi-tcp-ipv6
if [ ! -x "$v6/usr/bin/tcpserver" ]; then
  mkdir -p build/peers
  (cd build/peers && rm -f ucspi-tcp-ipv6_*.deb && apt-get download ucspi-tcp-ipv6 >/dev/null) || {
    echo "fetch-test-peers: fatal: unable to download Debian's ucspi-tcp-ipv6 (apt-get download)" >&2
    exit 111
  }
  dpkg-deb -x build/peers/ucspi-tcp-ipv6_*.deb "$v6"
fi
if ! ls build/peers/debs/ucspi-tcp_*.deb >/dev/null 2>&1; then
  mkdir -p build/peers/debs
  (cd build/peers/debs && apt-get download ucspi-tcp >/dev/null 2>&1) || {
    echo "fetch-test-peers: fatal: unable to download Debian's ucspi-tcp (apt-get download)" >&2
    exit 111
  }
fi
