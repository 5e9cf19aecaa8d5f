#!/bin/sh
# npm run demo: a TLS demo on 127.0.0.1. tls-keygen makes a self-signed certificate on first
# run (in .demo/), and our tcpserver runs tlsd and the demo line service in one process.
set -e
cd "$(dirname "$0")/.."
port=${PORT:-7000}
dir=${UCSPI_DEMO_DIR:-.demo}
mkdir -p "$dir"
bin/tls-keygen ensure -n localhost "$dir/cert.pem" "$dir/key.pem"
cat >&2 <<MSG
ucspi-tls demo: TLS on 127.0.0.1:$port, tcpserver + tlsd + ucspi-demo in one process (Ctrl-C stops it)
  try: CAFILE=$dir/cert.pem bin/tcpclient -RH 127.0.0.1 $port bin/tlsc -k localhost sh -c 'printf "hello\\r\\nquit\\r\\n" >&7; cat <&6'
   or: openssl s_client -quiet -connect 127.0.0.1:$port -CAfile $dir/cert.pem
MSG
CERTFILE="$dir/cert.pem" KEYFILE="$dir/key.pem" PATH="$PWD/bin:$PATH" \
  exec bin/tcpserver -v -R -H -l 0 127.0.0.1 "$port" tlsd ucspi-demo
