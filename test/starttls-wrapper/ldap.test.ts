// starttls-wrapper -p ldap in front of a real OpenLDAP slapd that has no TLS, reached by
// tcpforward: ldapwhoami -ZZ (StartTLS required, the certificate verified) binds through the
// wrapper and slapd never sees the StartTLS; a plain bind goes through untouched, or is refused
// with -r; a StartTLS after a bind is slapd's to refuse; requests pipelined behind StartTLS are
// refused, never relayed; ldapsearch -ZZ through tcpforward --proxy to slapd's pldap://
// listener, which names the client's own address.
import assert from "node:assert/strict";
import { hostname } from "node:os";
import { after, before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { LDAP_ADMIN, startSlapd } from "../helpers/slapd.ts";
import type { Slapd } from "../helpers/slapd.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { lateFirstPacket, opensslStartTls, startWrapperPair } from "../helpers/wrapper-pair.ts";
import type { WrapperPair } from "../helpers/wrapper-pair.ts";

const pki = makePki();
// libldap checks the name it finds for the server's address (this host's name, for 127.0.0.1
// on some machines), not only the one in the URI.
const leaf = pki.server("localhost", ["localhost", hostname(), "127.0.0.1"]);
const stranger = pki.selfSigned("stranger");
const ADMIN = LDAP_ADMIN;
let slapd: Slapd;
let wrappers: WrapperPair | undefined;
let opportunistic: RunningServer;
let required: RunningServer;

before(async () => {
  slapd = await startSlapd({ proxy: true });
  wrappers = await startWrapperPair("ldap", slapd.port, leaf);
  opportunistic = wrappers.opportunistic;
  required = wrappers.required;
});

after(async () => {
  await wrappers?.stop();
  await slapd.stop();
});

const whoami = (port: number, args: string[], ca = pki.ca.cert) =>
  run(
    "ldapwhoami",
    ["-x", "-H", `ldap://localhost:${port}`, "-D", ADMIN, "-w", "secret", ...args],
    {
      env: { ...process.env, LDAPTLS_CACERT: ca, LDAPTLS_REQCERT: "demand" },
    },
  );

test("ldapwhoami -ZZ: StartTLS answered by the wrapper, the certificate verified, the bind behind TLS; slapd never sees StartTLS", async () => {
  const before = slapd.log().length;
  const r = await whoami(opportunistic.port, ["-ZZ"]);
  assert.equal(r.code, 0, r.stderr + opportunistic.log() + slapd.log());
  assert.equal(r.stdout, `dn:${ADMIN}\n`);
  await opportunistic.waitForLog(/^starttls-wrapper: info: 127\.0\.0\.1: StartTLS$/);
  await waitFor(() =>
    /BIND dn="cn=admin,dc=example,dc=org"/.test(slapd.log().slice(before)) ? true : undefined,
  );
  assert.doesNotMatch(slapd.log().slice(before), /1\.3\.6\.1\.4\.1\.1466\.20037/);
  // A client that trusts another CA refuses the certificate: verification is real.
  const wrong = await whoami(opportunistic.port, ["-ZZ"], stranger.cert);
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /ldap_start_tls: Connect error/);
});

test("a plain bind goes through untouched; with -r it gets a Notice of Disconnection (confidentialityRequired)", async () => {
  const plain = await whoami(opportunistic.port, []);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, `dn:${ADMIN}\n`);
  const refused = await whoami(required.port, []);
  assert.notEqual(refused.code, 0);
  // What libldap does not show: the notice's resultCode, 13 (confidentialityRequired).
  const notice = await raw(required.port, "s.sendall(bind(1)); print(result(s.recv(200)))");
  assert.equal(notice.stdout, "13\n", notice.stderr);
  await required.waitForLog(
    /^starttls-wrapper: warning: 127\.0\.0\.1: a request without StartTLS: refused \(-r\)$/,
  );
  const tls = await whoami(required.port, ["-ZZ"]);
  assert.equal(tls.stdout, `dn:${ADMIN}\n`, tls.stderr);
});

/** A python3 client speaking BER by hand; prints the resultCode of each answer. */
function raw(port: number, script: string) {
  return run("python3", [
    "-c",
    [
      "import socket, sys",
      "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), 10)",
      "def tlv(t, v): return bytes([t, len(v)]) + v",
      "def msg(i, op): return tlv(0x30, tlv(0x02, bytes([i])) + op)",
      "starttls = lambda i: msg(i, tlv(0x77, tlv(0x80, b'1.3.6.1.4.1.1466.20037')))",
      "bind = lambda i: msg(i, tlv(0x60, tlv(0x02, b'\\x03') + tlv(0x04, b'') + tlv(0x80, b'')))",
      "def result(b):",
      "    # SEQUENCE, messageID, op tag + length, then ENUMERATED resultCode",
      "    i = 2 + 2 + b[3]; i += 2",
      "    return b[i + 2] if b else None",
      script,
    ].join("\n"),
    String(port),
  ]);
}

test("StartTLS after a bind (plaintext already under way) is slapd's to refuse: nothing is answered for it here", async () => {
  const r = await raw(
    opportunistic.port,
    [
      "s.sendall(bind(1)); print(result(s.recv(200)))",
      "s.sendall(starttls(2)); print(result(s.recv(200)))",
    ].join("\n"),
  );
  assert.equal(r.code, 0, r.stderr);
  const [bound, started] = r.stdout.trim().split("\n").map(Number);
  assert.equal(bound, 0);
  // slapd without TLS says so itself (unavailable or protocolError), never success.
  assert.notEqual(started, 0);
});

test("a request pipelined behind StartTLS, before its answer: refused, never relayed", async () => {
  const before = slapd.log().length;
  const r = await raw(
    opportunistic.port,
    "s.sendall(starttls(1) + bind(2)); print(result(s.recv(200)))",
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "2\n"); // protocolError, in the Notice of Disconnection
  await opportunistic.waitForLog(
    /^starttls-wrapper: warning: 127\.0\.0\.1: \d+ bytes after StartTLS, before its answer: refused$/,
  );
  assert.doesNotMatch(slapd.log().slice(before), /BIND/);
});

test("openssl s_client -starttls ldap: the upgrade, the certificate verified, TLS 1.3", async () => {
  const r = await opensslStartTls(opportunistic.port, "ldap", pki.ca.cert, "localhost");
  assert.equal(r.code, 0, r.stderr + opportunistic.log());
  assert.match(r.stderr, /^Protocol version: TLSv1\.3$/m);
  assert.match(r.stderr, /^Verification: OK$/m);
});

test("-t: a client that sends its first request only after the pre-TLS limit: served in plaintext when opportunistic, as the line protocols' clients are (it used to be refused, status 100); -r closes", () =>
  lateFirstPacket(
    "ldap",
    slapd.port,
    leaf,
    `
time.sleep(2)
# An anonymous simple bind (messageID 1); slapd answers success.
s.sendall(bytes.fromhex("300c020101600702010304008000"))
got = s.recv(4096)
if not got:
    sys.exit("closed")
print(got.hex())
`,
    { served: "300c02010161070a010004000400\n", why: "no request within 1 s" },
  ));

test("ldapsearch -ZZ through the -r wrapper and tcpforward --proxy to slapd's pldap:// listener: the search answered behind verified TLS, and slapd names the client's own address and port (PROXY v2), not tcpforward's", async () => {
  const front = await startServer(
    ours("tcpserver"),
    [
      ...["-vRHl0", "127.0.0.1", "0", "starttls-wrapper", "-p", "ldap", "-r"],
      ...["tcpforward", "--proxy", "127.0.0.1", String(slapd.proxyPort)],
    ],
    { env: { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: leaf.cert, KEYFILE: leaf.key } },
  );
  try {
    const before = slapd.log().length;
    const r = await run(
      "ldapsearch",
      [
        ...["-x", "-ZZ", "-H", `ldap://localhost:${front.port}`, "-D", ADMIN, "-w", "secret"],
        ...["-LLL", "-b", "", "-s", "base", "namingContexts"],
      ],
      { env: { ...process.env, LDAPTLS_CACERT: pki.ca.cert, LDAPTLS_REQCERT: "demand" } },
    );
    assert.equal(r.code, 0, r.stderr + front.log() + slapd.log());
    assert.match(r.stdout, /^namingContexts: dc=example,dc=org$/m);
    const clientPort = /^tcpserver: ok \d+ .*:(\d+)$/m.exec(front.log())?.[1];
    assert.ok(clientPort, front.log());
    await waitFor(() => (/ ACCEPT from /.test(slapd.log().slice(before)) ? true : undefined));
    // slapd names the proxy it came through (tcpforward's port), then the client's address.
    assert.match(slapd.log().slice(before), / proxyp\(\d+\): via IP=127\.0\.0\.1:\d+\n/);
    assert.match(
      slapd.log().slice(before),
      new RegExp(` ACCEPT from IP=127\\.0\\.0\\.1:${clientPort} `),
    );
  } finally {
    await front.stop();
  }
});
