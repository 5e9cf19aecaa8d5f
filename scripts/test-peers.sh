#!/bin/sh
# The real peers the tests compare us with: djb's ucspi-tcp (installed from Debian) and Debian's
# ucspi-tcp-ipv6, which conflicts with it and is therefore unpacked into build/peers/.
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
v6=build/peers/ucspi-tcp-ipv6
if [ ! -x "$v6/usr/bin/tcpserver" ]; then
  mkdir -p build/peers
  (cd build/peers && rm -f ucspi-tcp-ipv6_*.deb && apt-get download ucspi-tcp-ipv6 >/dev/null) || {
    echo "test-peers: fatal: unable to download Debian's ucspi-tcp-ipv6 (apt-get download)" >&2
    exit 111
  }
  dpkg-deb -x build/peers/ucspi-tcp-ipv6_*.deb "$v6"
fi
# Debian's ucspi-tcp as a .deb: the package test installs it beside ours in a scratch root.
if ! ls build/peers/debs/ucspi-tcp_*.deb >/dev/null 2>&1; then
  mkdir -p build/peers/debs
  (cd build/peers/debs && apt-get download ucspi-tcp >/dev/null 2>&1) || {
    echo "test-peers: fatal: unable to download Debian's ucspi-tcp (apt-get download)" >&2
    exit 111
  }
fi
