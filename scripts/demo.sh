#!/bin/sh
# npm run demo: TLS demos on 127.0.0.1. tls-keygen makes a self-signed certificate on first
# run (in .demo/); our tcpserver runs tlsd and the demo line service in one process on port
# 7000, on port 2525 starttls-wrapper gives the demo SMTP sink STARTTLS (local mode), and on
# port 8080 tls-sniff serves the demo web page over TLS and plaintext alike.
set -e
cd "$(dirname "$0")/.."
port=${PORT:-7000}
smtp=${SMTP_PORT:-2525}
web=${WEB_PORT:-8080}
dir=${UCSPI_DEMO_DIR:-.demo}
mkdir -p "$dir"
bin/tls-keygen ensure -n localhost "$dir/cert.pem" "$dir/key.pem"
cat >&2 <<MSG
ucspi-tls demo (Ctrl-C stops it):
  TLS on 127.0.0.1:$port, tcpserver + tlsd + ucspi-demo in one process
    try: CAFILE=$dir/cert.pem bin/tcpclient -RH 127.0.0.1 $port bin/tlsc -k localhost sh -c 'printf "hello\\r\\nquit\\r\\n" >&7; cat <&6'
     or: openssl s_client -quiet -connect 127.0.0.1:$port -CAfile $dir/cert.pem
  SMTP with STARTTLS on 127.0.0.1:$smtp, starttls-wrapper in front of an SMTP sink
    try: swaks --server 127.0.0.1:$smtp --tls --tls-ca-path $dir/cert.pem --tls-verify --to you@example.org
     or: openssl s_client -quiet -starttls smtp -connect 127.0.0.1:$smtp -CAfile $dir/cert.pem
  HTTP and HTTPS on the same port 127.0.0.1:$web, tls-sniff in front of tlsd and a demo page
    try: curl http://127.0.0.1:$web/ and curl --cacert $dir/cert.pem https://localhost:$web/
MSG
export CERTFILE="$dir/cert.pem" KEYFILE="$dir/key.pem" PATH="$PWD/bin:$PATH"
bin/tcpserver -v -R -H -l 0 127.0.0.1 "$smtp" starttls-wrapper ucspi-demo smtp &
smtp_pid=$!
bin/tcpserver -v -R -H -l 0 127.0.0.1 "$web" tls-sniff --plain { ucspi-demo http } tlsd ucspi-demo http &
web_pid=$!
bin/tcpserver -v -R -H -l 0 127.0.0.1 "$port" tlsd ucspi-demo &
main_pid=$!
trap 'kill $smtp_pid $web_pid $main_pid 2>/dev/null || :' EXIT INT TERM
# npm does not pass its own end on: killed, it would leave the demo running. The demo ends
# with whatever started it, or when its main server does. package.json's script execs this
# one, so that its parent is npm itself: the `sh -c` npm starts outlives npm.
parent=$PPID
while kill -0 "$parent" 2>/dev/null && kill -0 "$main_pid" 2>/dev/null; do sleep 1; done
# The main server ended by itself (a port in use, say): its status is the demo's.
status=0
if ! kill -0 "$main_pid" 2>/dev/null; then wait "$main_pid" || status=$?; fi
exit "$status"
