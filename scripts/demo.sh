#!/bin/sh
# npm run demo: our tcpserver on 127.0.0.1 serving the demo line service, in-process.
# Try it from another terminal:  tcpclient -RH 127.0.0.1 7000 sh -c 'printf "hi\r\nquit\r\n" >&7; cat <&6'
#                          or:   nc 127.0.0.1 7000
set -e
cd "$(dirname "$0")/.."
port=${PORT:-7000}
echo "ucspi-tls demo: tcpserver on 127.0.0.1:$port runs ucspi-demo for each connection (Ctrl-C stops it)" >&2
printf '%s\n' "  try: bin/tcpclient -RH 127.0.0.1 $port sh -c 'printf \"hello\\r\\nquit\\r\\n\" >&7; cat <&6'" >&2
PATH="$PWD/bin:$PATH" exec bin/tcpserver -v -R -H -l 0 127.0.0.1 "$port" ucspi-demo
