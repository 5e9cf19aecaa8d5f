// Every shell recipe of README.md and docs/*.md, run as a reader would copy it, so that none
// can rot: each command of each ```sh block is in RECIPES below, and is run (with the servers
// it starts checked by a real client), or says why it cannot run here and which test covers it
// instead. A recipe added to a page, or changed, fails this test until it is looked at here.
//
// Where they run: a network namespace of their own (every port free, 25 and 443 included,
// nothing of the host's touched), a mount namespace in which /etc/hosts names the recipes'
// hosts (example.org, mx.example.org, ...) on loopback, and a scratch directory per page as
// the working directory. Absolute paths the recipes name (/etc/ssl/..., /var/lib/tlsd/...) are
// moved into that directory; every certificate they name is made there on first use, by a CA
// that the clients trust (CAFILE, or the system store through SSL_CERT_FILE); the ACME recipes
// order from Debian's pebble there instead of Let's Encrypt. The programs a
// recipe serves (httpd, imapd, qmail-smtpd, ...) are small stand-ins that say who they are,
// with their TLS facts; imap4d and pop3d are Debian's real ones. Needs root (CI runs as root).
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync } from "node:fs";
import { writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { recipeBlocks } from "../helpers/recipes.ts";
import type { Block, Command } from "../helpers/recipes.ts";
import { makeLab } from "../helpers/netns.ts";
import { PG_BIN } from "../helpers/postgres.ts";
import { LDAP_ADMIN } from "../helpers/slapd.ts";
import type { Lab } from "../helpers/netns.ts";
import { BIN, ROOT, run } from "../helpers/programs.ts";
import type { RunResult } from "../helpers/programs.ts";
import { scratchDir } from "../helpers/scratch.ts";

/** A client run in the namespace while a server of a recipe serves: its stdout must match.
 * `from: "outside"`: from the other end of the veth pair (another host, to which NAT and
 * TPROXY rules apply), to the recipes' namespace at 10.77.0.1. */
interface Check {
  client: string;
  expect: RegExp;
  from?: "outside";
}

type Spec =
  /** Runs to completion with status 0 (stdout matching `expect`), after `helpers` start (and
   * `ready` succeeds, as for a server). */
  | { once: true; expect?: RegExp; helpers?: string[]; ready?: string; cwd?: "root"; after?: Check }
  /** A server: it is started, the checks run against it, and it is stopped (a background
   * command stays until the end of its block); `after` runs once it is stopped. */
  | {
      serve: Check[];
      after?: Check;
      helpers?: string[];
      listening?: number[];
      /** A command tried (at most 100 times, 100 ms apart) until it succeeds, before the
       * checks: a helper that takes a while to start (PostgreSQL). */
      ready?: string;
    }
  /** Not run here: why, and what tests it instead. */
  | { skip: string };

/** Quoted for sh. */
const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
/** A UCSPI client dialogue (test/fixtures/client-steps): [send, read until] pairs. */
const steps = (...pairs: [string, string][]) => `client-steps ${q(JSON.stringify(pairs))}`;
/** The first line of whatever answers: the stand-ins say who they are in it. */
const FIRST_LINE = steps(["", "\n"]);
const plain = (port: number, host = "127.0.0.1", dialogue = FIRST_LINE) =>
  `tcpclient -RH ${host} ${port} ${dialogue}`;
const tls = (port: number, name = "localhost", extra = "", dialogue = FIRST_LINE) =>
  `CAFILE="$RECIPES/ca.pem" tcpclient -RH 127.0.0.1 ${port} tlsc -k ${name} ${extra} ${dialogue}`;
const HTTP_GET = steps(["GET / HTTP/1.0\r\n\r\n", "\n"]);
const EHLO = steps(["EHLO client.example\r\n", "\r\n250 "], ["QUIT\r\n", "221"]);
const smtpStarttls = (port: number) => tls(port, "localhost", "--starttls smtp", EHLO);
/** A PROXY v1 header from 10.0.0.7, then an SMTP QUIT, sent as one client would. */
const proxied = (port: number) =>
  `python3 -c ${q(
    `import socket; s = socket.create_connection(("127.0.0.1", ${port})); ` +
      `s.sendall(b"PROXY TCP4 10.0.0.7 127.0.0.1 40000 ${port}\\r\\nQUIT\\r\\n"); ` +
      `import sys; sys.stdout.write(s.makefile("rb").read().decode())`,
  )}`;
/** Runs one of the recipes' own servers for a client recipe to talk to. */
const helper = (command: string) => `CERTFILE="$RECIPES/ca-server.pem" KEYFILE="$RECIPES/ca-server.key" ${command}`;

const SERVED_BY_STANDIN = (name: string, tlsVersion = "TLSv1.3") =>
  new RegExp(`${name} TLS=${tlsVersion}`);
const PLAIN_STANDIN = (name: string) => new RegExp(`${name} TLS= `);

/** Where the recipes' public ACME CA (Let's Encrypt) is replaced by Debian's pebble, which
 * runs in the recipes' namespace for the whole test, its DNS (pebble-challtestsrv) answering
 * 127.0.0.1 for every name: it validates on ports 80 and 443 there. */
const PUBLIC_ACME = "ACME_DIRECTORY=https://acme-v02.api.letsencrypt.org/directory";
const PEBBLE_ACME = 'ACME_CAFILE="$RECIPES/ca.pem" ACME_DIRECTORY=https://127.0.0.1:14000/dir';
/** A client that trusts only this run's pebble root: served a certificate tlsd ordered. */
const ordered = (name: string) => ({
  client: `CAFILE="$RECIPES/pebble-root.pem" tcpclient -RH 127.0.0.1 443 tlsc -k ${name} ${FIRST_LINE}`,
  expect: SERVED_BY_STANDIN("httpd"),
});
/** tlsd with certificates on demand for example.org and the names below it. */
const ON_DEMAND: Spec = { serve: [ordered("example.org"), ordered("www.example.org")] };
const INSTALLS =
  "installs on this machine: test/packaging/deb.test.ts and npm-install.test.ts build and install the package into scratch roots";
const SUPERVISORS =
  "a supervisor of this machine: test/packaging/supervisors.test.ts runs the shipped units and service directories under runsv and systemd-socket-activate";

/** tls-everywhere's rules are in: it puts them in once its chains listen. */
const RULES_IN = "nft list table inet tls_everywhere";

/** What a plaintext httpd stand-in says when our TLS is in front of it. */
const OUR_TLS_THEN_PLAIN = /SSL_PROTOCOL=TLSv1\.3[^]*httpd TLS= /;

/** A TLS client from the other end of the veth pair to 10.77.0.1:port, verifying the test
 * CA's certificate for localhost. */
const outsideTls = (port: number, expect = OUR_TLS_THEN_PLAIN): Check => ({
  client: `CAFILE="$RECIPES/ca.pem" tcpclient -RH 10.77.0.1 ${port} tlsc -k localhost ${FIRST_LINE}`,
  expect,
  from: "outside",
});

/** The transparent chain by hand (tls-everywhere's, without the tool), for a service on
 * 10.77.0.1:8000: the rules it needs, as `tls-everywhere --dry-run` prints them for its port and
 * marks, put in by a helper (and taken out when it stops) as a reader would run them. */
const RULES_OPTIONS = "--listen 9999 --mark 1 --ports 8000,8001";
const BY_HAND: Spec = {
  helpers: [
    `tls-everywhere --dry-run ${RULES_OPTIONS} | sh -e; trap 'tls-everywhere --remove --dry-run ${RULES_OPTIONS} | sh; exit 0' TERM; sleep 600 & wait`,
    "tcpserver -R -H 10.77.0.1 8000 httpd",
    // A service with TLS of its own: its clients' TLS reaches it as it is.
    "tcpserver -R -H 10.77.0.1 8001 tlsd httpd",
  ],
  listening: [8000, 8001, 9999],
  ready: RULES_IN,
  serve: [
    outsideTls(8000),
    { client: plain(8000, "10.77.0.1"), expect: PLAIN_STANDIN("httpd"), from: "outside" },
    outsideTls(8001, SERVED_BY_STANDIN("httpd")),
  ],
  // The removal script took out every rule: the tls-everywhere recipes find none.
  after: { client: `${RULES_IN} 2>&1 || true`, expect: /No such file or directory/ },
};

/** tls-everywhere with its self-signed fallback, a service on 8000: TLS and plaintext from the
 * other end of the veth pair (diverted in prerouting). */
const EVERYWHERE_SELF_SIGNED: Spec = {
  listening: [8000, 8999],
  ready: RULES_IN,
  helpers: ["tcpserver -R -H 10.77.0.1 8000 httpd"],
  serve: [
    {
      // Its self-signed pair is in its own /var/lib, out of the client's sight.
      client: `tcpclient -RH 10.77.0.1 8000 tlsc --no-verify-cert ${FIRST_LINE}`,
      expect: OUR_TLS_THEN_PLAIN,
      from: "outside",
    },
    { client: plain(8000, "10.77.0.1"), expect: PLAIN_STANDIN("httpd"), from: "outside" },
  ],
};

/**
 * Debian's PostgreSQL 15 behind the wrapper (its data directory made for the page, see
 * PAGE_FILES), listening on `address` port 5432 ("": on its UNIX socket in the page's
 * run/postgresql only), and psql verifying the wrapper's certificate on `port`.
 */
function POSTGRES_ON(address: string, port: number): Spec {
  return {
    helpers: [postgres(address)],
    ready: POSTGRES_READY,
    listening: [port],
    serve: [
      {
        client: `psql "host=localhost port=${port} dbname=postgres user=postgres sslmode=verify-full sslrootcert=$RECIPES/ca.pem" -Atc "select 'pg ' || 6 * 7"`,
        expect: /^pg 42$/m,
      },
    ],
  };
}

/** PostgreSQL on `address` port 5432 ("": its UNIX socket only), without TLS of its own. */
const postgres = (address: string) =>
  `runuser -u postgres -- ${PG_BIN}/postgres -D "$PWD/pgdata" -p 5432 -k "$PWD/run/postgresql" -c listen_addresses=${address} -c ssl=off`;
const POSTGRES_READY = `pg_isready -q -h "$PWD/run/postgresql" -p 5432`;

/** tlsc's PostgreSQL recipes: the probe logs in through tlsc to Debian's PostgreSQL, which the
 * wrapper gives STARTTLS on port 5432. */
const TLSC_POSTGRES: Spec = {
  once: true,
  helpers: [
    postgres("''"),
    helper(
      "tcpserver 127.0.0.1 5432 starttls-wrapper -p postgres tcpforward /run/postgresql/.s.PGSQL.5432",
    ),
  ],
  ready: POSTGRES_READY,
  expect: /^probe TLS=TLSv1\.3: logged in as postgres, ready for queries$/m,
};

const OCSP_FETCH =
  "a job that asks a public CA's OCSP responder (the network): test/tlsd/ocsp.test.ts staples what openssl ocsp answers, from its own index";

const RECIPES: Record<string, Spec> = {
  // README.md
  "npm ci && npm run demo": {
    skip: "the set-up command: .ci/run runs npm ci; the demo it starts (scripts/demo.sh) is run here for the next recipe",
  },
  "npm test": { skip: "the test command: this test is part of it" },
  "CAFILE=.demo/cert.pem bin/tcpclient -RH 127.0.0.1 7000 bin/tlsc -k localhost sh -c 'printf \"hello\\r\\nquit\\r\\n\" >&7; cat <&6'":
    {
      once: true,
      cwd: "root",
      helpers: ["sh scripts/demo.sh"],
      expect: /hello 127\.0\.0\.1 port \d+ over TLSv1\.3 .*; this is ucspi-tls/,
    },
  "npm ci && npm run package:deb && apt install ./build/deb/ucspi-tls_0.1.0-1_amd64.deb": {
    skip: INSTALLS,
  },
  "tcpserver -v -R -H -l 0 0 7000 /usr/local/bin/myservice 2>&1 | multilog t ./log": {
    serve: [{ client: plain(7000), expect: PLAIN_STANDIN("myservice") }],
    after: { client: "cat log/current", expect: /tcpserver: status: 0\/40/ },
  },
  "cat > rules.txt <<'RULES'\n127.0.0.1:allow,RELAYCLIENT=\"\"\n10.0.0.:allow,RELAYCLIENT=\"\"\n:allow\nRULES":
    { once: true },
  "tcprules rules.cdb rules.tmp < rules.txt": { once: true },
  "tcpserver -x rules.cdb -R -H -l 0 0 25 qmail-smtpd": {
    serve: [{ client: plain(25, "127.0.0.1", EHLO), expect: /250 8BITMIME/ }],
  },
  "TCPREMOTEIP=10.0.0.7 tcprulescheck rules.cdb # what would happen to 10.0.0.7?": {
    once: true,
    expect: /rule 10\.0\.0\.:\nset environment variable RELAYCLIENT=\nallow connection/,
  },
  "tcpserver -v -R -H -l 0 -C 5 :: 7000 ucspi-demo": {
    serve: [
      { client: plain(7000, "::1"), expect: /hello ::1 port \d+/ },
      { client: plain(7000), expect: /hello 127\.0\.0\.1 port \d+/ },
    ],
  },
  "tcpserver --proxy --proxy-from 127.0.0.1 -x rules.cdb -R -H -l 0 127.0.0.1 10025 qmail-smtpd": {
    serve: [{ client: proxied(10025), expect: /^220 .*\r\n221 /s }],
  },
  "CERTFILE=/etc/ssl/site.pem KEYFILE=/etc/ssl/site.key tcpserver -R -H -l 0 0 443 tlsd httpd": {
    serve: [{ client: tls(443), expect: SERVED_BY_STANDIN("httpd") }],
  },
  "env CERTFILE=a.pem KEYFILE=a.key CERTFILE:b.example=b.pem KEYFILE:b.example=b.key tcpserver -R -H -l 0 0 993 tlsd -k 1 imapd":
    {
      serve: [
        { client: tls(993, "b.example"), expect: SERVED_BY_STANDIN("imapd") },
        { client: tls(993, "localhost"), expect: SERVED_BY_STANDIN("imapd") },
      ],
    },
  "tls-keygen ticket /etc/ssl/tickets": { once: true },
  "TICKETFILE=/etc/ssl/tickets CERTFILE=site.pem KEYFILE=site.key tcpserver -R -H -l 0 --workers 2 0 443 tlsd httpd":
    { serve: [{ client: tls(443), expect: SERVED_BY_STANDIN("httpd") }] },
  "CERTFILE=mail.pem KEYFILE=mail.key tcpserver -R -H -l 0 0 993 tlsd tcpforward --proxy 127.0.0.1 143":
    {
      skip: "needs dovecot on port 143 with haproxy = yes: test/tcpforward/proxy-tls.test.ts runs this chain in front of dovecot's managesieve-login, a plaintext login passing only through it",
    },
  "tcpclient -RH example.org 443 tlsc sh -c 'printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&7; cat <&6'": {
    once: true,
    helpers: [helper("tcpserver 127.0.0.1 443 tlsd httpd")],
    expect: SERVED_BY_STANDIN("httpd"),
  },
  "tcpclient -RH mx.example.org 25 tlsc --starttls smtp mailer": {
    once: true,
    helpers: [helper("tcpserver 127.0.0.1 25 starttls-wrapper qmail-smtpd")],
    expect: /mailer TLS=TLSv1\.3[^]*250 8BITMIME/,
  },
  "tcpclient -RH db.example.org 5432 tlsc --starttls postgres probe": TLSC_POSTGRES,
  "CERTFILE=/etc/ssl/mx.pem KEYFILE=/etc/ssl/mx.key tcpserver -R -H -l 0 --proxy --proxy-from 127.0.0.1 127.0.0.1 10587 tlsd qmail-smtpd":
    { serve: [] },
  "tcpserver -R -H -l 0 0 25 starttls-wrapper 127.0.0.1 10587 qmail-smtpd": {
    // The TLS service it hands over to is the block's background tcpserver.
    listening: [10587, 25],
    serve: [{ client: smtpStarttls(25), expect: /250 8BITMIME/ }],
  },
  "CERTFILE=/etc/ssl/mx.pem KEYFILE=/etc/ssl/mx.key tcpserver -R -H -l 0 0 25 starttls-wrapper qmail-smtpd":
    { serve: [{ client: smtpStarttls(25), expect: /250 8BITMIME/ }] },
  "CERTFILE=/etc/ssl/mx.pem KEYFILE=/etc/ssl/mx.key tcpserver -R -H -l 0 0 25 starttls-wrapper -k qmail-smtpd":
    { serve: [{ client: smtpStarttls(25), expect: /250 8BITMIME/ }] },
  "CERTFILE=mail.pem KEYFILE=mail.key tcpserver -R -H -l 0 0 143 starttls-wrapper -p imap -r imap4d --inetd":
    {
      serve: [
        {
          client: tls(143, "localhost", "--starttls imap", steps(["a1 CAPABILITY\r\n", "a1 OK"])),
          expect: /a1 OK/,
        },
      ],
    },
  "CERTFILE=site.pem KEYFILE=site.key tcpserver -R -H -l 0 0 8080 tls-sniff --plain { httpd } tlsd httpd":
    {
      serve: [
        { client: tls(8080), expect: SERVED_BY_STANDIN("httpd") },
        { client: plain(8080, "127.0.0.1", steps(["GET / HTTP/1.0\r\n\r\n", "\n"])), expect: PLAIN_STANDIN("httpd") },
      ],
    },
  "CERTFILE=site.pem KEYFILE=site.key tcpserver -R -H -l 0 0 2525 tls-sniff -t 1200 --plain { qmail-smtpd } tlsd qmail-smtpd":
    {
      serve: [
        { client: plain(2525, "127.0.0.1", EHLO), expect: /250 8BITMIME/ },
        { client: tls(2525, "localhost", "", EHLO), expect: /SSL_PROTOCOL=TLSv1\.3[^]*250 8BITMIME/ },
      ],
    },
  "CERTFILE=site.pem KEYFILE=site.key tcpserver -R -H -l 0 0 443 tls-sniff --sni imap.example.org { tlsd imapd } --alpn h2 { tlsd --alpn h2 h2d } tlsd httpd":
    {
      serve: [
        { client: tls(443, "imap.example.org"), expect: SERVED_BY_STANDIN("imapd") },
        { client: tls(443, "localhost", "--alpn h2"), expect: /h2d TLS=TLSv1\.3 ALPN=h2 / },
        { client: tls(443), expect: SERVED_BY_STANDIN("httpd") },
      ],
    },
  "CERTFILE=site.pem KEYFILE=site.key tcpserver 0 443 sh -c 'tls-sniff | exec tlsd httpd'": {
    serve: [{ client: tls(443), expect: SERVED_BY_STANDIN("httpd") }],
  },
  "CERTFILE=default.pem KEYFILE=default.key CERTDIR=/var/lib/tlsd/live ACME_DIRECTORY=https://acme-v02.api.letsencrypt.org/directory ACME_NAMES='example.org *.example.org' tcpserver -R -H -l 0 0 443 tlsd httpd":
    ON_DEMAND,
  "tls-everywhere --ports 80,5432,6379,8000-8100": EVERYWHERE_SELF_SIGNED,
  "CERTFILE=/etc/ssl/host.pem KEYFILE=/etc/ssl/private/host.key tcpserver -R -H -l 0 --transparent :: 9999 tls-sniff --plain { tcpforward --transparent --mark 2 } tcpforward --transparent --mark 2 --if-plain { tlsd tcpforward --transparent --mark 2 }":
    BY_HAND,
  "tcpclient -RH mail.example.org 25 sh -c 'head -1 <&6'": {
    once: true,
    helpers: ["tcpserver 127.0.0.1 25 qmail-smtpd"],
    expect: /^220 fake\.example ESMTP/,
  },

  // docs/acme-challenge.md
  "CERTDIR=/var/lib/tlsd/live tcpserver -R -H -l 0 0 80 acme-challenge httpd": {
    serve: [{ client: plain(80, "127.0.0.1", HTTP_GET), expect: PLAIN_STANDIN("httpd") }],
  },
  // Validated on port 80, where the block's first line answers.
  "env CERTFILE=default.pem KEYFILE=default.key CERTDIR=/var/lib/tlsd/live ACME_DIRECTORY=https://acme-v02.api.letsencrypt.org/directory ACME_CHALLENGE=http-01 ACME_NAMES='example.org www.example.org' tcpserver -R -H -l 0 0 443 tlsd httpd":
    { serve: [ordered("www.example.org")] },
  "CERTDIR=/var/lib/tlsd/live tcpserver -R -H -l 0 0 80 acme-challenge": {
    serve: [{ client: plain(80, "127.0.0.1", HTTP_GET), expect: /"HTTP\/1\.1 404 Not Found/ }],
  },

  // docs/install.md
  "npm ci && npm run package:deb # in a checkout: build/deb/ucspi-tls_0.1.0-1_amd64.deb": {
    skip: INSTALLS,
  },
  "apt install ./build/deb/ucspi-tls_0.1.0-1_amd64.deb": { skip: INSTALLS },
  "exec 2>&1": { skip: `a run script for the installed package: ${SUPERVISORS}` },
  "PATH=/usr/lib/ucspi-tls/bin:$PATH": { skip: `a run script for the installed package: ${SUPERVISORS}` },
  "exec tcpserver -RHl0 0 443 tlsd -- httpd": {
    skip: `a run script for the installed package: ${SUPERVISORS}`,
  },
  "npm install -g ucspi-tls # or a packed tarball: npm install -g ./ucspi-tls-0.1.0.tgz": {
    skip: INSTALLS,
  },
  "npx -p ucspi-tls tls-keygen --help": { skip: INSTALLS },
  "npm ci && npm run build # then bin/tlsd, bin/tcpserver, ...": {
    skip: "what .ci/run and npm test do before every test",
  },

  // docs/starttls-wrapper.md
  "CERTFILE=/etc/ssl/mx.pem KEYFILE=/etc/ssl/mx.key tcpserver -R -H -l 0 -x /etc/tcp.smtp.cdb --proxy --proxy-from 127.0.0.1 127.0.0.1 10587 tlsd -K 60000 qmail-smtpd":
    { serve: [] },
  "tcpserver -R -H -l 0 -x /etc/tcp.smtp.cdb 0 25 starttls-wrapper 127.0.0.1 10587 qmail-smtpd": {
    listening: [10587, 25],
    serve: [{ client: smtpStarttls(25), expect: /250 8BITMIME/ }],
  },
  "CERTFILE=mail.pem KEYFILE=mail.key tcpserver -R -H -l 0 0 110 starttls-wrapper -p pop3 -r pop3d --inetd":
    {
      serve: [
        {
          client: tls(110, "localhost", "--starttls pop3", steps(["CAPA\r\n", "\r\n\\.\r\n"])),
          expect: /\+OK/,
        },
      ],
    },
  "CERTFILE=/etc/ssl/db.pem KEYFILE=/etc/ssl/db.key tcpserver -R -H -l 0 0 5433 starttls-wrapper -p postgres tcpforward 127.0.0.1 5432":
    POSTGRES_ON("127.0.0.1", 5433),
  // Its --alpn postgresql route needs PostgreSQL 17's psql (sslnegotiation=direct); Debian 12
  // has 15: test/starttls-wrapper/postgres.test.ts sends that ClientHello itself.
  "CERTFILE=/etc/ssl/db.pem KEYFILE=/etc/ssl/db.key tcpserver -R -H -l 0 0 5433 tls-sniff --plain { starttls-wrapper -p postgres tcpforward 127.0.0.1 5432 } --alpn postgresql { tlsd --alpn postgresql tcpforward 127.0.0.1 5432 } tlsd --alpn postgresql tcpforward 127.0.0.1 5432":
    POSTGRES_ON("127.0.0.1", 5433),
  "CERTFILE=/etc/ssl/db.pem KEYFILE=/etc/ssl/db.key tcpserver -R -H -l 0 0 3307 starttls-wrapper -p mysql tcpforward 127.0.0.1 3306":
    {
      // Debian's MariaDB behind the wrapper (its data directory made for the page), the user
      // app/pw made once it answers; the mariadb client verifies the wrapper's certificate.
      helpers: [
        `mariadbd --no-defaults --datadir="$PWD/mariadb" --port=3306 --bind-address=127.0.0.1 --socket="$PWD/mariadb.sock" --user=root --log-error="$PWD/mariadb.err"`,
      ],
      listening: [3307],
      ready: `mariadb --no-defaults -S "$PWD/mariadb.sock" -uroot -e "DELETE FROM mysql.global_priv WHERE User=''; FLUSH PRIVILEGES; CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'pw'; GRANT ALL ON *.* TO 'app'@'%'"`,
      serve: [
        {
          client: `mariadb --no-defaults --protocol=tcp -h localhost -P 3307 -u app -ppw --ssl --ssl-ca="$RECIPES/ca.pem" --ssl-verify-server-cert -N -e "select concat('maria ', 6 * 7)"`,
          expect: /^maria 42$/m,
        },
      ],
    },
  "CERTFILE=/etc/ssl/xmpp.pem KEYFILE=/etc/ssl/xmpp.key tcpserver -R -H -l 0 0 5222 starttls-wrapper -p xmpp tcpforward 127.0.0.1 15222":
    {
      // Debian's Prosody behind the wrapper, without TLS of its own (its config made for the
      // page); openssl's STARTTLS for XMPP verifies the certificate for the domain.
      helpers: [`prosody --config "$PWD/prosody.cfg.lua"`],
      listening: [5222, 15222],
      serve: [
        {
          client: `openssl s_client -brief -starttls xmpp -xmpphost example.org -connect localhost:5222 -CAfile "$RECIPES/ca.pem" -verify_return_error -verify_hostname example.org </dev/null 2>&1`,
          expect: /Protocol version: TLSv1\.3[^]*Verification: OK/,
        },
      ],
    },
  "CERTFILE=/etc/ssl/ldap.pem KEYFILE=/etc/ssl/ldap.key tcpserver -R -H -l 0 0 389 starttls-wrapper -p ldap tcpforward 127.0.0.1 3389":
    {
      // Debian's slapd behind the wrapper (its slapd.conf made for the page); ldapwhoami -ZZ
      // requires StartTLS and verifies the wrapper's certificate (on loopback, libldap checks
      // it against this host's name), then binds behind it.
      helpers: [`slapd -d 0 -f "$PWD/slapd.conf" -h ldap://127.0.0.1:3389/`],
      // Its clients say no "refused" that a check would know to try again on.
      listening: [389],
      ready: "ldapwhoami -x -H ldap://127.0.0.1:3389",
      serve: [
        {
          client: `LDAPTLS_CACERT="$RECIPES/ca.pem" LDAPTLS_REQCERT=demand ldapwhoami -x -ZZ -H ldap://localhost:389 -D "${LDAP_ADMIN}" -w secret`,
          expect: new RegExp(`^dn:${LDAP_ADMIN}$`, "m"),
        },
      ],
    },

  // docs/supervisors.md
  "mkdir -p /etc/ucspi-tls/example": { once: true },
  "tls-keygen ensure -s host.example.org /etc/ucspi-tls/example/cert.pem /etc/ucspi-tls/example/key.pem":
    {
      once: true,
      after: { client: "stat -c %a etc/ucspi-tls/example/key.pem", expect: /^600$/m },
    },
  "systemctl enable --now ucspi-tls-example.service": { skip: SUPERVISORS },
  "systemctl enable --now ucspi-tls-example-activated.socket": { skip: SUPERVISORS },
  'systemctl enable --now "ucspi-tls-ocsp@$(systemd-escape --path /etc/ssl/site/fullchain.pem).timer"':
    { skip: SUPERVISORS },
  'systemctl enable --now "ucspi-tls-ticket@$(systemd-escape --path /etc/ucspi-tls/tickets).timer"':
    { skip: SUPERVISORS },
  "systemctl list-timers 'ucspi-tls-*'": { skip: SUPERVISORS },
  "systemctl enable --now ucspi-tls-renew.timer": { skip: SUPERVISORS },
  "cp -a /usr/share/doc/ucspi-tls/examples/service/runit/ucspi-tls-example /etc/sv/": { skip: SUPERVISORS },
  "ln -s /etc/sv/ucspi-tls-example /etc/service/": { skip: SUPERVISORS },
  "sv status ucspi-tls-example": { skip: SUPERVISORS },
  "sv down ucspi-tls-example # stop; sv up to start again": { skip: SUPERVISORS },
  "cp -a /usr/share/doc/ucspi-tls/examples/service/daemontools/ucspi-tls-example /etc/": {
    skip: SUPERVISORS,
  },
  "ln -s /etc/ucspi-tls-example /etc/service/": { skip: SUPERVISORS },
  "svstat /etc/service/ucspi-tls-example": { skip: SUPERVISORS },
  "svc -d /etc/service/ucspi-tls-example # stop; svc -u to start again": { skip: SUPERVISORS },
  "tai64nlocal < /var/log/ucspi-tls-example/current": { skip: SUPERVISORS },
  "cp -a /usr/share/doc/ucspi-tls/examples/service/s6/ucspi-tls-example /run/service/": {
    skip: SUPERVISORS,
  },
  "s6-svscanctl -a /run/service": { skip: SUPERVISORS },
  "s6-svstat /run/service/ucspi-tls-example": { skip: SUPERVISORS },
  "s6-svc -d /run/service/ucspi-tls-example # stop; s6-svc -u to start again": { skip: SUPERVISORS },

  // docs/tcpclient.md
  "tcpclient -RH 127.0.0.1 25 sh -c 'head -1 <&6' # read an SMTP greeting": {
    once: true,
    helpers: ["tcpserver 127.0.0.1 25 qmail-smtpd"],
    expect: /^220 fake\.example ESMTP/,
  },
  "tcpclient -RHv ::1 7000 sh -c 'cat <&6'": {
    once: true,
    helpers: ["tcpserver ::1 7000 /bin/echo hello"],
    expect: /^hello$/m,
  },
  "tcpclient mail.example.org 443 tlsc sh -c 'printf \"GET / HTTP/1.0\\r\\n\\r\\n\" >&7; cat <&6'": {
    once: true,
    helpers: [helper("tcpserver 127.0.0.1 443 tlsd httpd")],
    expect: SERVED_BY_STANDIN("httpd"),
  },

  // docs/tcpforward.md
  "CERTFILE=site.pem KEYFILE=site.key tcpserver -R -H -l 0 0 8443 tlsd tcpforward --proxy 127.0.0.1 8080": {
    listening: [8080, 8443],
    helpers: ["tcpserver --proxy 127.0.0.1 8080 sh -c 'echo \"service sees $TCPREMOTEIP\"'"],
    serve: [{ client: tls(8443), expect: /service sees 127\.0\.0\.1/ }],
  },
  "CERTFILE=/etc/ssl/db.pem KEYFILE=/etc/ssl/db.key tcpserver -R -H -l 0 0 5432 starttls-wrapper -p postgres tcpforward /run/postgresql/.s.PGSQL.5432":
    POSTGRES_ON("", 5432),
  // In the recipes' own namespace: its tables are its own.
  "nft add table ip nat": { once: true },
  "nft 'add chain ip nat prerouting { type nat hook prerouting priority dstnat; }'": { once: true },
  "nft add rule ip nat prerouting tcp dport 8080 redirect to :9999": { once: true },
  "CERTFILE=site.pem KEYFILE=site.key tcpserver -R -H -l 0 --redirected 0 9999 tlsd tcpforward": {
    listening: [8080, 9999],
    // The service on the port the client asked for; tcpforward's own connection to it is
    // this host's, which prerouting does not see.
    helpers: ["tcpserver -R -H 10.77.0.1 8080 httpd"],
    serve: [
      outsideTls(8080),
    ],
  },

  // docs/tcprules.md
  "cat > rules.txt <<'EOF'\n# relay for the local network and one host\n127.0.0.1:allow,RELAYCLIENT=\"\"\n10.0.0.1-20:allow,RELAYCLIENT=\"\"\n=mail.example.com:allow,RELAYCLIENT=\"\",GREETING=\"hi there\"\n::1:allow,RELAYCLIENT=\"\"\nfd00:::allow,RELAYCLIENT=\"\"\n192.0.2.:deny\n:allow\nEOF":
    { once: true },
  "tcpserver -x rules.cdb 0 25 qmail-smtpd": {
    serve: [{ client: plain(25, "127.0.0.1", EHLO), expect: /250 8BITMIME/ }],
  },
  "TCPREMOTEIP=10.0.0.7 tcprulescheck rules.cdb": {
    once: true,
    expect: /rule 10\.0\.0\.7:\nset environment variable RELAYCLIENT=\nallow connection/,
  },

  // docs/tcpserver.md
  "tcpserver -v -R -H -l 0 0 7000 /bin/echo hello": {
    serve: [{ client: plain(7000, "127.0.0.1", steps(["", "hello"])), expect: /hello/ }],
  },
  "tcprules rules.cdb rules.tmp < rules.txt && tcpserver -x rules.cdb -R -H 0 25 qmail-smtpd": {
    serve: [{ client: plain(25, "127.0.0.1", EHLO), expect: /250 8BITMIME/ }],
  },
  "tcpserver -R -H -l 0 :: 8000 ucspi-demo # IPv6 and IPv4, served in-process": {
    serve: [
      { client: plain(8000, "::1"), expect: /hello ::1 port/ },
      { client: plain(8000), expect: /hello 127\.0\.0\.1 port/ },
    ],
  },
  "CERTFILE=site.pem KEYFILE=site.key tcpserver -R -H -c 400 --workers 2 0 443 tlsd httpd": {
    serve: [{ client: tls(443), expect: SERVED_BY_STANDIN("httpd") }],
  },
  "CERTFILE=site.pem KEYFILE=site.key tcpserver -v --drain 30 -R -H -l 0 0 443 tlsd httpd # kill -HUP: new certificates; kill -TERM: 30 s to finish":
    { serve: [{ client: tls(443), expect: SERVED_BY_STANDIN("httpd") }] },
  "CERTFILE=site.pem KEYFILE=site.key tcpserver --metrics 127.0.0.1:9100 -R -H -l 0 0 443 tlsd httpd # curl http://127.0.0.1:9100/metrics":
    {
      serve: [
        { client: tls(443), expect: SERVED_BY_STANDIN("httpd") },
        {
          client: "curl -sS http://127.0.0.1:9100/metrics",
          expect: /^tcpserver_connections_accepted_total 1$/m,
        },
      ],
    },

  // docs/tls-everywhere.md: in the recipes' own namespace, clients from the other end of the
  // veth pair (diverted in prerouting), services on 10.77.0.1 as a host's would be.
  "tls-everywhere": EVERYWHERE_SELF_SIGNED,
  "CERTFILE=/etc/ssl/host.pem KEYFILE=/etc/ssl/private/host.key tls-everywhere --ports 80,5432,6379,8000-8100":
    {
      listening: [8000, 8999],
      ready: RULES_IN,
      helpers: ["tcpserver -R -H 10.77.0.1 8000 httpd"],
      serve: [
        outsideTls(8000),
      ],
    },
  "tls-everywhere --port 25 { starttls-wrapper -p smtp tcpforward } --port 143 { starttls-wrapper -p imap tcpforward }":
    {
      listening: [25, 8999, 9000, 9001],
      ready: RULES_IN,
      helpers: ["tcpserver -R -H 10.77.0.1 25 qmail-smtpd"],
      serve: [
        {
          client: `tcpclient -RH 10.77.0.1 25 tlsc --no-verify-cert --starttls smtp ${EHLO}`,
          expect: /SSL_PROTOCOL=TLSv1\.3[^]*250 8BITMIME/,
          from: "outside",
        },
      ],
    },
  "echo 'TLS_EVERYWHERE_ARGS=\"--ports 80,5432,6379\"' >/etc/default/tls-everywhere": {
    skip: SUPERVISORS,
  },
  "systemctl enable --now tls-everywhere.service": { skip: SUPERVISORS },

  // docs/tls-keygen.md
  "tls-keygen ensure cert.pem key.pem": { once: true },
  "CERTFILE=cert.pem KEYFILE=key.pem tcpserver -R -H -l 0 127.0.0.1 4433 tlsd ucspi-demo": {
    serve: [
      {
        client: "CAFILE=cert.pem tcpclient -RH 127.0.0.1 4433 tlsc -k localhost " + FIRST_LINE,
        expect: /hello 127\.0\.0\.1 port/,
      },
    ],
  },
  'tls-keygen ca -n "Home CA" -p home.example,10.0.0.0/8 ca.pem ca.key': { once: true },
  "tls-keygen leaf -C ca.pem -K ca.key -s home.example,www.home.example,10.0.0.2 www.pem www.key": {
    once: true,
  },
  "tls-keygen leaf -C ca.pem -K ca.key --client -n alice alice.pem alice.key": { once: true },
  'systemctl enable --now "ucspi-tls-ocsp@$(systemd-escape --path /var/lib/ucspi-tls).timer"':
    { skip: SUPERVISORS },
  "CAFILE=ca.pem CERTFILE=www.pem KEYFILE=www.key tcpserver -R -H 0 8443 tlsd -y ucspi-demo": {
    serve: [
      {
        client:
          "CAFILE=ca.pem CERTFILE=alice.pem KEYFILE=alice.key tcpclient -RH 127.0.0.1 8443 tlsc -y -k www.home.example " +
          FIRST_LINE,
        expect: /hello 127\.0\.0\.1 port/,
      },
    ],
  },
  "tls-keygen csr -s example.org,www.example.org example.csr example.key": { once: true },
  "tls-keygen csr -r -f -s example.org,www.example.org example.csr example.key": { once: true },
  "openssl x509 -in www.pem -noout -text": { once: true, expect: /DNS:www\.home\.example/ },
  "openssl verify -CAfile ca.pem www.pem": { once: true, expect: /www\.pem: OK/ },

  // docs/tls-sniff.md
  "CERTFILE=cert.pem KEYFILE=key.pem tcpserver -RHl0 0 8080 tls-sniff --plain { httpd } tlsd httpd": {
    serve: [
      { client: tls(8080), expect: SERVED_BY_STANDIN("httpd") },
      {
        client: plain(8080, "127.0.0.1", steps(["GET / HTTP/1.0\r\n\r\n", "\n"])),
        expect: PLAIN_STANDIN("httpd"),
      },
    ],
  },
  "CERTFILE=cert.pem KEYFILE=key.pem tcpserver 0 2525 tls-sniff -t 1200 --plain { qmail-smtpd } tlsd qmail-smtpd":
    {
      serve: [
        { client: plain(2525, "127.0.0.1", EHLO), expect: /250 8BITMIME/ },
        { client: tls(2525, "localhost", "", EHLO), expect: /SSL_PROTOCOL=TLSv1\.3[^]*250 8BITMIME/ },
      ],
    },
  "CERTFILE=cert.pem KEYFILE=key.pem tcpserver 0 443 tls-sniff --sni imap.example.org { tlsd imapd } --alpn h2 { tlsd --alpn h2 h2-server } tlsd httpd":
    {
      serve: [
        { client: tls(443, "imap.example.org"), expect: SERVED_BY_STANDIN("imapd") },
        { client: tls(443, "localhost", "--alpn h2"), expect: /h2-server TLS=TLSv1\.3 ALPN=h2 / },
        { client: tls(443), expect: SERVED_BY_STANDIN("httpd") },
      ],
    },
  "CERTFILE=cert.pem KEYFILE=key.pem tcpserver 0 443 tls-sniff --ssh { tcpforward 127.0.0.1 22 } --http { httpd } tlsd httpd":
    {
      // An SSH stand-in on port 22 answers an SSH client's identification string with its own.
      helpers: [helper("tcpserver 127.0.0.1 22 sh -c 'echo SSH-2.0-standin; cat >/dev/null'")],
      // The stand-in listens before the first client: tcpforward's refused connect would reset it.
      listening: [22, 443],
      serve: [
        { client: plain(443, "127.0.0.1", steps(["SSH-2.0-client\r\n", "\n"])), expect: /SSH-2\.0-standin/ },
        { client: plain(443, "127.0.0.1", HTTP_GET), expect: PLAIN_STANDIN("httpd") },
        { client: tls(443), expect: SERVED_BY_STANDIN("httpd") },
      ],
    },
  "CERTFILE=cert.pem KEYFILE=key.pem tcpserver 0 443 sh -c 'tls-sniff | exec tlsd httpd'": {
    serve: [{ client: tls(443), expect: SERVED_BY_STANDIN("httpd") }],
  },

  // docs/tlsc.md
  "tcpclient -RH mx.example.org 25 tlsc --starttls smtp -k mx.example.org mailer": {
    once: true,
    helpers: [helper("tcpserver 127.0.0.1 25 starttls-wrapper qmail-smtpd")],
    expect: /mailer TLS=TLSv1\.3[^]*250 8BITMIME/,
  },
  "CAFILE=/etc/ssl/pg-ca.pem tcpclient -RH db.internal 5432 tlsc --starttls postgres -k db.internal probe":
    TLSC_POSTGRES,
  "tcpclient -RH mail.example.org 465 tlsc -k mail.example.org sh -c 'head -1 <&6'": {
    once: true,
    helpers: [helper("tcpserver 127.0.0.1 465 tlsd qmail-smtpd")],
    expect: /^220 fake\.example ESMTP/,
  },
  // A server at 10.0.0.2 (an address of the recipes' namespace) that asks for a client
  // certificate, and writes down whose it got.
  "CAFILE=/etc/ucspi/ca.pem CERTFILE=me.pem KEYFILE=me.key tcpclient -RH 10.0.0.2 8443 tlsc -y -k api.internal prog":
    {
      once: true,
      helpers: [
        helper(
          `CAFILE="$RECIPES/ca.pem" tcpserver 10.0.0.2 8443 tlsd -y sh -c 'echo "$SSL_PEER_CERT_SUBJECT" >peer.txt'`,
        ),
      ],
      expect: SERVED_BY_STANDIN("prog"),
      after: { client: "cat peer.txt", expect: /^CN=me$/m },
    },

  // docs/tlsd.md
  "cd /etc/ssl/site": { skip: OCSP_FETCH },
  'url=$(openssl x509 -noout -ocsp_uri -in cert.pem)': { skip: OCSP_FETCH },
  'openssl ocsp -issuer chain.pem -cert cert.pem -url "$url" -no_nonce -respout fullchain.pem.ocsp.new && mv fullchain.pem.ocsp.new fullchain.pem.ocsp':
    { skip: OCSP_FETCH },
  "CERTFILE=default.pem KEYFILE=default.key CERTDIR=/var/lib/tlsd/live ACME_DIRECTORY=https://acme-v02.api.letsencrypt.org/directory ACME_EMAIL=hostmaster@example.org ACME_NAMES='example.org *.example.org' tcpserver -R -H -l 0 0 443 tlsd httpd":
    ON_DEMAND,
  "CERTFILE=mx.pem KEYFILE=mx.key UCSPITLS= tcpserver -R -H -l 0 0 25 tlsd -n qmail-smtpd": {
    serve: [{ client: plain(25, "127.0.0.1", EHLO), expect: /250 8BITMIME/ }],
  },
  "CAFILE=clients-ca.pem CERTFILE=s.pem KEYFILE=s.key tcpserver -R -H 0 8443 tlsd -y sh -c 'echo hello $SSL_PEER_CERT_SUBJECT'":
    {
      serve: [
        {
          client:
            'CAFILE="$RECIPES/ca.pem" CERTFILE="$RECIPES/client.pem" KEYFILE="$RECIPES/client.key" tcpclient -RH 127.0.0.1 8443 tlsc -y -k localhost ' +
            FIRST_LINE,
          expect: /hello CN=recipes client/,
        },
      ],
    },

  // docs/ucspi-demo.md
  "tcpserver -v -R -H -l 0 127.0.0.1 7000 ucspi-demo": {
    serve: [{ client: plain(7000), expect: /hello 127\.0\.0\.1 port/ }],
  },
  "tcpclient -RH 127.0.0.1 7000 sh -c 'printf \"hi\\r\\nquit\\r\\n\" >&7; cat <&6'": {
    once: true,
    helpers: ["tcpserver -R -H -l 0 127.0.0.1 7000 ucspi-demo"],
    expect: /hello 127\.0\.0\.1 port \d+/,
  },
  "CERTFILE=cert.pem KEYFILE=key.pem tcpserver -R -H -l 0 127.0.0.1 2525 starttls-wrapper ucspi-demo smtp":
    { serve: [{ client: smtpStarttls(2525), expect: /250 8BITMIME/ }] },
};

/** Files a page's recipes take as already there (the reader's own). */
const PAGE_FILES: Record<string, (dir: string, pages: Map<string, string>) => void> = {
  // The reader's own service, where the recipe says it is.
  "README.md": (dir) => {
    postgresData(dir);
    mkdirSync(join(dir, "usr", "local", "bin"), { recursive: true });
    writeExecutable(join(dir, "usr", "local", "bin", "myservice"), STANDIN);
  },
  "docs/tcpserver.md": (dir) => writeFileSync(join(dir, "rules.txt"), ":allow\n"),
  // The rules of the reader's SMTP service (those of docs/tcprules.md would do as well), and
  // the reader's PostgreSQL.
  "docs/starttls-wrapper.md": (dir) => {
    postgresData(dir);
    mkdirSync(join(dir, "prosody"));
    writeFileSync(
      join(dir, "prosody.cfg.lua"),
      [
        "run_as_root = true",
        "daemonize = false",
        `pidfile = "${join(dir, "prosody.pid")}"`,
        `data_path = "${join(dir, "prosody")}"`,
        'log = { error = "*stderr" }',
        'modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; }',
        'modules_disabled = { "s2s"; "posix"; }',
        "c2s_ports = { 15222 }",
        'c2s_interfaces = { "127.0.0.1" }',
        "s2s_ports = {}",
        "c2s_require_encryption = false",
        'VirtualHost "example.org"',
        "",
      ].join("\n"),
    );
    mkdirSync(join(dir, "ldap"));
    writeFileSync(
      join(dir, "slapd.conf"),
      [
        "include /etc/ldap/schema/core.schema",
        "modulepath /usr/lib/ldap",
        "moduleload back_mdb",
        `pidfile ${join(dir, "slapd.pid")}`,
        "database mdb",
        'suffix "dc=example,dc=org"',
        `rootdn "${LDAP_ADMIN}"`,
        "rootpw secret",
        `directory ${join(dir, "ldap")}`,
        "",
      ].join("\n"),
    );
    execFileSync(
      "mariadb-install-db",
      ["--no-defaults", `--datadir=${join(dir, "mariadb")}`, "--user=root", "--auth-root-authentication-method=normal"],
      { stdio: "ignore" },
    );
    mkdirSync(join(dir, "etc"));
    execFileSync(join(BIN, "tcprules"), [join(dir, "etc", "tcp.smtp.cdb"), join(dir, "etc", "tcp.smtp.tmp")], {
      input: "127.0.0.1:allow,RELAYCLIENT=\"\"\n:allow\n",
    });
  },
  "docs/tcpforward.md": (dir) => postgresData(dir),
  // The reader's client certificate, from the CA the server trusts.
  "docs/tlsc.md": (dir) => {
    postgresData(dir);
    execFileSync(
      join(BIN, "tls-keygen"),
      ["leaf", "-C", join(scratch, "ca.pem"), "-K", join(scratch, "ca.key"), "--client", "-n", "me", "me.pem", "me.key"],
      { cwd: dir, stdio: "ignore" },
    );
  },
  // Its transcript is of the rules that docs/tcprules.md compiles.
  "docs/tcprulescheck.md": (dir, pages) =>
    copyFileSync(join(pages.get("docs/tcprules.md") ?? "", "rules.cdb"), join(dir, "rules.cdb")),
};

/** A PostgreSQL data directory (trust authentication) and socket directory in `dir`, owned by
 * its user, who can reach them. */
function postgresData(dir: string): void {
  for (const d of [scratch, dir]) chmodSync(d, 0o755);
  const run = join(dir, "run", "postgresql");
  mkdirSync(run, { recursive: true });
  execFileSync("chown", ["postgres:postgres", run]);
  mkdirSync(join(dir, "pgdata"));
  execFileSync("chown", ["postgres:postgres", join(dir, "pgdata")]);
  execFileSync(
    "runuser",
    ["-u", "postgres", "--", `${PG_BIN}/initdb`, "-D", join(dir, "pgdata"), "-A", "trust", "-U", "postgres"],
    { stdio: "ignore" },
  );
}

/** The names the recipes connect to, on loopback. */
const HOSTS = [
  "example.org",
  "www.example.org",
  "mail.example.org",
  "mx.example.org",
  "imap.example.org",
  "db.example.org",
  "db.internal",
  "api.internal",
];
/** Every certificate a recipe names is for these (a CERTFILE:name pair: for its name only).
 * This host's own name too: libldap checks a certificate on loopback against it. */
const SERVER_NAMES = ["localhost", "127.0.0.1", "::1", hostname(), ...HOSTS];

// The stand-ins: each says its name, its TLS version and ALPN (empty without TLS) and its
// arguments in one line, then reads until its client is done, or has sent a request's head
// (as an HTTP/1.0 server ends its answer by closing).
const STANDIN = `#!/usr/bin/env python3
import os, sys
name = os.path.basename(sys.argv[0])
os.write(1, f"{name} TLS={os.environ.get('SSL_PROTOCOL', '')} ALPN={os.environ.get('SSL_ALPN_PROTOCOL', '')} ARGS={' '.join(sys.argv[1:])}\\r\\n".encode())
seen = b""
try:
    while b"\\r\\n\\r\\n" not in seen:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        seen += chunk
except OSError:
    pass
`;
// A mailer on fds 6/7 (tlsc --starttls smtp replays the greeting to it), as qmail-remote would.
const MAILER = `#!/bin/sh
echo "mailer TLS=$SSL_PROTOCOL"
exec ${join(ROOT, "test", "fixtures", "client-steps")} '[["", "^220"], ["EHLO me.example\\r\\n", "\\r\\n250 "], ["QUIT\\r\\n", "221"]]'
`;
// A monitoring probe on fds 6/7 (tlsc --starttls postgres made the TLS): logs in to
// PostgreSQL and waits for ReadyForQuery, as check_pgsql would.
const PG_PROBE = `#!/usr/bin/env python3
import os, struct, sys
params = b"user\\0postgres\\0database\\0postgres\\0\\0"
os.write(7, struct.pack("!ii", 8 + len(params), 196608) + params)
seen = b""
while True:
    while len(seen) >= 5:
        kind, length = seen[:1], struct.unpack("!i", seen[1:5])[0]
        if len(seen) < 1 + length:
            break
        body, seen = seen[5 : 1 + length], seen[1 + length :]
        if kind == b"E":
            sys.exit("probe: " + body.decode(errors="replace"))
        if kind == b"Z":
            os.write(7, b"X\\0\\0\\0\\4")
            print(f"probe TLS={os.environ.get('SSL_PROTOCOL', '')}: logged in as postgres, ready for queries")
            sys.exit(0)
    chunk = os.read(6, 65536)
    if not chunk:
        sys.exit("probe: the server closed the connection")
    seen += chunk
`;
// multilog t DIR: each line of stdin to DIR/current (the stamp left out).
const MULTILOG = `#!/bin/sh
mkdir -p "$2" && exec cat >"$2/current"
`;

let lab: Lab;
let scratch: string;
let pebble: Started[] = [];
let standins: string;
const pageDirs = new Map<string, string>();

before(async () => {
  lab = makeLab("rp");
  lab.sh(lab.server, "ip addr add 10.0.0.2/32 dev lo");
  scratch = scratchDir("recipes");
  standins = join(scratch, "standins");
  mkdirSync(standins);
  for (const name of ["httpd", "h2d", "h2-server", "imapd", "myservice", "prog"])
    writeExecutable(join(standins, name), STANDIN);
  writeExecutable(join(standins, "mailer"), MAILER);
  writeExecutable(join(standins, "probe"), PG_PROBE);
  writeExecutable(join(standins, "multilog"), MULTILOG);
  copyFileSync(join(ROOT, "test", "fixtures", "client-steps"), join(standins, "client-steps"));
  chmodSync(join(standins, "client-steps"), 0o755);
  copyFileSync(join(ROOT, "test", "fixtures", "fake-smtp"), join(standins, "qmail-smtpd"));
  chmodSync(join(standins, "qmail-smtpd"), 0o755);
  writeFileSync(
    join(scratch, "hosts"),
    `127.0.0.1 localhost ${HOSTS.join(" ")}\n::1 localhost ip6-localhost\n`,
  );
  const keygen = (args: string[]) => ok(run(join(BIN, "tls-keygen"), args, { cwd: scratch }));
  await keygen(["ca", "-n", "Recipes CA", "ca.pem", "ca.key"]);
  await keygen(["leaf", "-C", "ca.pem", "-K", "ca.key", "-s", SERVER_NAMES.join(","), "ca-server.pem", "ca-server.key"]);
  await keygen(["leaf", "-C", "ca.pem", "-K", "ca.key", "--client", "-n", "recipes client", "client.pem", "client.key"]);
  pebble = startPebble();
  // Its root, new at every start, for the clients of the ACME recipes.
  const root = await runUntil(
    `curl -sSf --cacert ca.pem -o pebble-root.pem https://127.0.0.1:15000/roots/0`,
    scratch,
    scratch,
    100,
    (r) => r.code === 0,
  );
  assert.equal(root.code, 0, `pebble did not start: ${root.stderr}${pebble.map((p) => p.log()).join("")}`);
});

after(async () => {
  for (const p of pebble) await p.stop();
  lab?.destroy();
});

/** Debian's pebble in the namespace, for the whole test: the CA of the ACME recipes (its
 * directory on 127.0.0.1:14000), validating on ports 80 and 443 there, every name 127.0.0.1 in
 * its DNS (pebble-challtestsrv). No validation sleeps, no rejected nonces. */
function startPebble(): Started[] {
  writeFileSync(
    join(scratch, "pebble.json"),
    JSON.stringify({
      pebble: {
        listenAddress: "127.0.0.1:14000",
        managementListenAddress: "127.0.0.1:15000",
        certificate: join(scratch, "ca-server.pem"),
        privateKey: join(scratch, "ca-server.key"),
        httpPort: 80,
        tlsPort: 443,
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
      },
    }),
  );
  return [
    start(
      "exec pebble-challtestsrv -dns01 127.0.0.1:8053 -http01 '' -https01 '' -tlsalpn01 '' -management 127.0.0.1:8055 -defaultIPv4 127.0.0.1 -defaultIPv6 ''",
      scratch,
      scratch,
    ),
    start(
      "PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 exec pebble -config pebble.json -dnsserver 127.0.0.1:8053 -strict=false",
      scratch,
      scratch,
    ),
  ];
}

function writeExecutable(path: string, text: string): void {
  writeFileSync(path, text);
  chmodSync(path, 0o755);
}

async function ok(result: ReturnType<typeof run>): Promise<string> {
  const r = await result;
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** The directories and files of this host that the recipes name, moved into `dir`, and the
 * public ACME CA replaced by the test's pebble. A path of this host's that is left (a recipe
 * added since, or `>/etc/...`) fails the test before the command runs: the recipes run as
 * root, and must not write to the host. */
function moved(text: string, dir: string): string {
  const result = text.replaceAll(PUBLIC_ACME, PEBBLE_ACME).replace(
    /(^|[\s=])\/(etc\/ssl|etc\/ucspi-tls|etc\/ucspi|etc\/tcp\.smtp\.cdb|var\/lib\/tlsd|usr\/local\/bin|run\/postgresql)/g,
    `$1${dir}/$2`,
  );
  if (/(^|[^\w.$/-])\/(etc|var|run|srv|opt|usr\/local)\//.test(result.replaceAll(dir, "DIR")))
    assert.fail(`a path of this host's is left in a recipe to run: ${text}`);
  return result;
}

/** Makes every certificate and key the command names that is not there yet. */
async function certificatesFor(text: string, dir: string): Promise<void> {
  const pairs = new Map<string, { cert?: string; key?: string }>();
  for (const m of text.matchAll(/\b(CERTFILE|KEYFILE)(:[^=\s]+)?=("[^"]*"|\S+)/g)) {
    const name = m[2]?.slice(1) ?? "";
    const pair = pairs.get(name) ?? {};
    pair[m[1] === "CERTFILE" ? "cert" : "key"] = m[3]?.replaceAll('"', "");
    pairs.set(name, pair);
  }
  for (const [name, { cert, key }] of pairs) {
    if (!cert || !key || cert.includes("$")) continue;
    const [certPath, keyPath] = [resolve(dir, cert), resolve(dir, key)];
    if (existsSync(certPath)) continue;
    mkdirSync(dirname(certPath), { recursive: true });
    mkdirSync(dirname(keyPath), { recursive: true });
    const names = name ? name : SERVER_NAMES.join(",");
    await ok(
      run(
        join(BIN, "tls-keygen"),
        ["leaf", "-C", join(scratch, "ca.pem"), "-K", join(scratch, "ca.key"), "-s", names, certPath, keyPath],
        { cwd: dir },
      ),
    );
  }
  for (const m of text.matchAll(/\bCAFILE=(\S+)/g)) {
    const path = resolve(dir, m[1] ?? "");
    if (m[1]?.includes("$") || existsSync(path)) continue;
    mkdirSync(dirname(path), { recursive: true });
    copyFileSync(join(scratch, "ca.pem"), path);
  }
}

/** The environment every recipe runs in: our programs and the stand-ins on PATH, the CA in
 * the system store. */
function recipeEnv(dir: string): NodeJS.ProcessEnv {
  return {
    PATH: `${standins}:${BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    HOME: dir,
    RECIPES: scratch,
    SSL_CERT_FILE: join(scratch, "ca.pem"),
  };
}

/** The arguments that run `command` with bash in the namespace, /etc/hosts ours, in `cwd`. */
function inNamespace(command: string, cwd: string, ns = lab.server): string[] {
  return [
    "netns",
    "exec",
    ns,
    "unshare",
    "--mount",
    "sh",
    "-c",
    // tls-everywhere keeps its record and its self-signed pair in /var/lib/tls-everywhere: a
    // /var/lib of the mount namespace's own, so the host's is never written.
    'mount --bind "$1" /etc/hosts && case "$3" in *tls-everywhere*) mount -t tmpfs tmpfs /var/lib;; esac && cd "$2" && exec bash -c "$3"',
    "sh",
    join(scratch, "hosts"),
    cwd,
    command,
  ];
}

/** A command to completion in the namespace. */
function runThere(command: string, cwd: string, dir: string, ns = lab.server) {
  return run("ip", inNamespace(command, cwd, ns), { env: recipeEnv(dir), timeoutMs: 30_000 });
}

interface Started {
  child: ChildProcess;
  log: () => string;
  stop: () => Promise<void>;
}

/** A server in the namespace, in a process group of its own. */
function start(command: string, cwd: string, dir: string): Started {
  const child = spawn("ip", inNamespace(command, cwd), {
    env: recipeEnv(dir),
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout?.on("data", (b: Buffer) => (log += b.toString("latin1")));
  child.stderr?.on("data", (b: Buffer) => (log += b.toString("latin1")));
  const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
  return {
    child,
    log: () => log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-(child.pid ?? 0), "SIGTERM");
        } catch {
          // gone already
        }
        const killer = setTimeout(() => {
          try {
            process.kill(-(child.pid ?? 0), "SIGKILL");
          } catch {
            // gone
          }
        }, 3000);
        await exited;
        clearTimeout(killer);
      }
    },
  };
}

/** Runs `command` in the namespace until `done` holds, at most `tries` times, 100 ms apart
 * (what a recipe started may take a moment to be there); the last result. */
async function runUntil(
  command: string,
  cwd: string,
  dir: string,
  tries: number,
  done: (r: RunResult) => boolean,
  ns = lab.server,
): Promise<RunResult> {
  let r = await runThere(command, cwd, dir, ns);
  for (let i = 1; i < tries && !done(r); i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    r = await runThere(command, cwd, dir, ns);
  }
  return r;
}

/** A client check, tried again (at most 50 times) while nothing listens yet. */
async function check(c: Check, cwd: string, dir: string, server: () => string): Promise<void> {
  const matches = (r: RunResult) => r.code === 0 && c.expect.test(r.stdout);
  const r = await runUntil(
    c.client,
    cwd,
    dir,
    50,
    (r) => matches(r) || !/unable to connect|Connection refused/i.test(`${r.stdout}${r.stderr}`),
    c.from ? lab.client : lab.server,
  );
  if (matches(r)) return;
  assert.fail(
    `${c.client}\n  got: ${r.stdout}${r.stderr}\n  wanted: ${String(c.expect)}\n  server said: ${server()}`,
  );
}

/** A `ready` command, tried until it succeeds. */
async function ready(command: string, dir: string): Promise<void> {
  const r = await runUntil(command, dir, dir, 101, (r) => r.code === 0);
  assert.equal(r.code, 0, `${command}: ${r.stdout}${r.stderr}`);
}

async function runBlock(block: Block, dir: string): Promise<void> {
  const background: Started[] = [];
  try {
    for (const command of block.commands) await runCommand(command, dir, background);
  } finally {
    for (const server of background) await server.stop();
  }
}

async function runCommand(command: Command, dir: string, background: Started[]): Promise<void> {
  if (command.output !== undefined) {
    const r = await runThere(moved(command.text, dir), dir, dir);
    assert.equal(`${r.stdout}`, command.output, `${command.text}: ${r.stderr}`);
    return;
  }
  const spec = RECIPES[command.text];
  assert.ok(spec, `not in RECIPES: ${JSON.stringify(command.text)}`);
  if ("skip" in spec) return;
  const text = moved(command.text, dir);
  await certificatesFor(text, dir);
  if ("once" in spec) {
    const cwd = spec.cwd === "root" ? ROOT : dir;
    const helpers = (spec.helpers ?? []).map((h) => start(moved(h, dir), cwd, dir));
    try {
      if (spec.ready) await ready(spec.ready, dir);
      // A helper server may take a moment to listen: a refused client is tried again.
      const r = await runUntil(
        text,
        cwd,
        dir,
        51,
        (r) => r.code === 0 || !/unable to connect|refused/i.test(r.stderr),
      );
      const said = helpers.map((h) => h.log()).join("");
      assert.equal(r.code, 0, `${command.text}\n${r.stdout}${r.stderr}\nhelpers: ${said}`);
      if (spec.expect) assert.match(r.stdout, spec.expect, `${command.text}: ${r.stderr}`);
    } finally {
      for (const h of helpers) await h.stop();
    }
    if (spec.after) await check(spec.after, dir, dir, () => "");
    return;
  }
  const helpers = (spec.helpers ?? []).map((h) => start(helper(h), dir, dir));
  const server = start(text, dir, dir);
  if (command.background) background.push(server);
  try {
    // Ports that must listen before a client is let in: a helper's or a background server's
    // that this one passes clients on to (a refusal there is not one the client would see and
    // be tried again on), and tls-everywhere's services and chains. Its rules go in after
    // (its `ready`): before that, a client reaches the service itself, in plaintext, as if
    // nothing were there.
    for (const port of spec.listening ?? []) {
      const listens = (r: RunResult) => r.stdout.trim() !== "";
      const r = await runUntil(`ss -Hltn 'sport = :${port}'`, dir, dir, 102, listens);
      assert.ok(listens(r), `${command.text}: port ${port} never listened\n${server.log()}`);
    }
    if (spec.ready) await ready(spec.ready, dir);
    for (const c of spec.serve) await check(c, dir, dir, server.log);
  } finally {
    if (!command.background) await server.stop();
    for (const h of helpers) await h.stop();
  }
  if (spec.after) {
    const r = await runThere(spec.after.client, dir, dir);
    assert.match(r.stdout, spec.after.expect, `${spec.after.client}: ${r.stderr}`);
  }
}

const blocks = recipeBlocks(ROOT);

test("every command of every recipe is known here, and nothing here is stale", () => {
  const inPages = new Set(blocks.flatMap((b) => b.commands.filter((c) => c.output === undefined).map((c) => c.text)));
  for (const text of inPages) assert.ok(text in RECIPES, `not in RECIPES: ${JSON.stringify(text)}`);
  for (const text of Object.keys(RECIPES)) assert.ok(inPages.has(text), `in no page: ${JSON.stringify(text)}`);
  for (const spec of Object.values(RECIPES))
    if ("skip" in spec) assert.match(spec.skip, /test\/|this test|\.ci\/run/, "a skip names its test");
});

for (const page of [...new Set(blocks.map((b) => b.where.split(":")[0] ?? ""))]) {
  test(`${page}: its recipes run as written`, { timeout: 300_000 }, async () => {
    const dir = join(scratch, page.replaceAll("/", "_"));
    mkdirSync(dir, { recursive: true });
    pageDirs.set(page, dir);
    PAGE_FILES[page]?.(dir, pageDirs);
    for (const block of blocks.filter((b) => b.where.startsWith(`${page}:`))) {
      try {
        await runBlock(block, dir);
      } catch (error) {
        throw new Error(`${block.where}: ${(error as Error).message}`, { cause: error });
      }
    }
  });
}
