// starttls-wrapper -p xmpp in front of a real Prosody that has no certificate (so no TLS of its
// own), reached by tcpforward: a python3 client speaking the XMPP stream by hand sees the
// wrapper's <starttls/> in the first features, gets <proceed/>, restarts its stream inside
// TLS (verified), and authenticates with the server behind; a client that does not ask goes
// through untouched, or is refused with a stream error (-r); bytes pipelined behind
// <starttls/> are refused. Also slixmpp (a real client library) logging in, and a
// server-to-server stream to Prosody's s2s port.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import { TLS_NS } from "../../src/dialogue/xmpp.ts";
import { makePki } from "../helpers/certs.ts";
import { startProsody } from "../helpers/prosody.ts";
import type { Prosody } from "../helpers/prosody.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { serverBehind } from "../helpers/servers-behind.ts";
import type { RunningServer } from "../helpers/server.ts";
import { TLS_BY_HAND, opensslStartTls, startWrapperPair } from "../helpers/wrapper-pair.ts";
import type { WrapperPair } from "../helpers/wrapper-pair.ts";

const DOMAIN = "example.test";
const pki = makePki();
const leaf = pki.server(DOMAIN, [DOMAIN]);
let prosody: Prosody;
let xmppPort = 0;
let wrappers: WrapperPair | undefined;
let opportunistic: RunningServer;
let required: RunningServer;

before(async () => {
  prosody = await startProsody(DOMAIN);
  xmppPort = prosody.port;
  wrappers = await startWrapperPair("xmpp", xmppPort, leaf);
  opportunistic = wrappers.opportunistic;
  required = wrappers.required;
});

after(async () => {
  await wrappers?.stop();
  await prosody.stop();
});

/** A python3 XMPP client by hand, argv: port, mode, CA, domain. mode: probe (features only),
 * tls, tls-newline (a newline in the write of its <starttls/>), tls-keepalive (whitespace
 * written after its <starttls/>, before it reads <proceed/>), plain, pipelined, pipelined-ws
 * (<iq/> behind a newline behind <starttls/>), idle (reads to the stream's end), wait
 * (plain once a line comes on its stdin), eager (its SASL PLAIN in the same write as its
 * stream header), tls-dribble (its <starttls/> a byte at a time), again (an XML declaration
 * after its stream header, then <starttls/>), tls-s2s (tls as a server: a jabber:server stream
 * from remote.test, whose features it reads for dialback; no SASL), count (the number of
 * <starttls> in the first features), tls-spaced-hello (tls, with whitespace in the same write
 * as its ClientHello). */
const CLIENT = [
  TLS_BY_HAND,
  "import socket, ssl, sys, base64, time",
  `HDR = b"<?xml version='1.0'?><stream:stream to='${DOMAIN}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"`,
  "def until(s, *ends):",
  "    data = b''",
  "    while not any(e in data for e in ends):",
  "        b = s.recv(4096)",
  "        if not b: break",
  "        data += b",
  "    return data",
  "mode = sys.argv[2]",
  "if mode == 'tls-s2s':",
  "    HDR = HDR.replace(b\"xmlns='jabber:client'\", b\"from='remote.test' xmlns='jabber:server' xmlns:db='jabber:server:dialback'\")",
  "DIALBACK = lambda f: 'dialback' if b\"<dialback xmlns='urn:xmpp:features:dialback'/>\" in f else 'no dialback'",
  "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), 10)",
  "if mode == 'eager':",
  "    s.sendall(HDR + b\"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>\" + base64.b64encode(b'\\0alice\\0secret') + b'</auth>')",
  "    data = until(s, b'</stream:stream>', b'<success')",
  "    print('success' if b'<success' in data else 'no success', 'policy-violation' if b'<policy-violation' in data else '')",
  "    sys.exit(0)",
  "s.sendall(HDR)",
  "f = until(s, b'</stream:features>')",
  "print('offered' if b'<starttls' in f else 'not offered', 'required' if b'<required/>' in f else '')",
  "if mode == 'probe': sys.exit(0 if f else 1)",
  "if mode == 'count':",
  "    print(f.count(b'<starttls'))",
  "    sys.exit(0)",
  "if mode == 'tls-s2s': print(DIALBACK(f))",
  "STARTTLS = b\"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\"",
  "if mode.startswith('pipelined'):",
  "    s.sendall(STARTTLS + (b'\\n<iq/>' if mode == 'pipelined-ws' else b'<presence/>'))",
  "    print(until(s, b'</stream:stream>').decode()[-80:])",
  "    sys.exit(0)",
  "if mode == 'idle':",
  "    print(until(s, b'</stream:stream>').decode())",
  "    sys.exit(0)",
  "if mode == 'wait': sys.stdin.readline()",
  "if mode == 'again':",
  "    s.sendall(b\"<?xml version='1.0'?>\" + STARTTLS)",
  "    print(until(s, b'</stream:stream>').decode()[-60:])",
  "    sys.exit(0)",
  "if mode == 'tls-dribble':",
  "    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)",
  "    for i in range(len(STARTTLS)):",
  "        s.sendall(STARTTLS[i:i + 1])",
  "        time.sleep(0.002)",
  "if mode.startswith('tls') and mode != 'tls-dribble':",
  "    s.sendall(STARTTLS + (b'\\n' if mode == 'tls-newline' else b''))",
  "if mode.startswith('tls'):",
  "    if mode == 'tls-keepalive':",
  "        time.sleep(0.2)",
  "        s.sendall(b' \\r\\n\\t ')",
  "    print(until(s, b'/>').decode())",
  "    if mode == 'tls-spaced-hello': s = Tls(s, sys.argv[3], sys.argv[4], b'\\n ')",
  "    else: s = ssl.create_default_context(cafile=sys.argv[3]).wrap_socket(s, server_hostname=sys.argv[4])",
  "    s.sendall(HDR)",
  "    f = until(s, b'</stream:features>')",
  "    print('inside:', 'starttls' if b'<starttls' in f else 'no starttls', 'PLAIN' if b'PLAIN' in f else '')",
  "    if mode == 'tls-s2s':",
  "        print('jabber:server' if b\"xmlns='jabber:server'\" in f else 'not jabber:server', DIALBACK(f))",
  "        sys.exit(0)",
  "auth = base64.b64encode(b'\\0alice\\0secret')",
  "s.sendall(b\"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>\" + auth + b'</auth>')",
  "print(until(s, b'/>', b'</stream:stream>').decode()[:70])",
].join("\n");

/** tcpserver on a free port of 127.0.0.1 running `args`, with the domain's certificate (and
 * `more` in its environment). */
function serve(args: string[], more: NodeJS.ProcessEnv = {}) {
  return startServer(ours("tcpserver"), ["-vRHl0", "127.0.0.1", "0", ...args], {
    env: { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: leaf.cert, KEYFILE: leaf.key, ...more },
  });
}

/** CLIENT's output for an upgrade, then SASL inside TLS (mode tls). */
const TLS_FLOW = [
  "offered ",
  "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
  "inside: no starttls PLAIN",
  "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
  "",
].join("\n");

function client(port: number, mode: string) {
  return run("python3", ["-c", CLIENT, String(port), mode, pki.ca.cert, DOMAIN]);
}

test("STARTTLS offered by the wrapper, <proceed/>, the stream restarted inside verified TLS, SASL with the server behind; whitespace after <starttls/> (a newline in its write, a keepalive written before <proceed/> is read: legal between elements) is dropped (it was refused as pipelined, or reached the handshake)", async () => {
  const earlier = opportunistic.log().length;
  for (const mode of ["tls", "tls-newline", "tls-keepalive"]) {
    const r = await client(opportunistic.port, mode);
    assert.equal(r.code, 0, r.stderr + opportunistic.log());
    assert.equal(r.stdout, TLS_FLOW, mode);
  }
  await opportunistic.waitForLog(/^starttls-wrapper: info: 127\.0\.0\.1: STARTTLS$/, 3);
  assert.doesNotMatch(opportunistic.log().slice(earlier), /starttls-wrapper: warning|tlsd: fatal/);
});

test("a client that does not ask for TLS: untouched when opportunistic; a policy-violation stream error with -r", async () => {
  const plain = await client(opportunistic.port, "plain");
  assert.equal(
    plain.stdout,
    "offered \n<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\n",
    plain.stderr,
  );
  const refused = await client(required.port, "plain");
  assert.match(refused.stdout, /^offered required\n<stream:error><policy-violation /);
  await required.waitForLog(
    /^starttls-wrapper: warning: 127\.0\.0\.1: <auth> before STARTTLS: refused \(-r\)$/,
  );
  const tls = await client(required.port, "tls");
  assert.match(tls.stdout, /<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'\/>\n$/, tls.stderr);
});

// The client's text is looked at again only when a tag ends (it was at every chunk, the
// whole text each time): the same decision for a <starttls/> sent one byte at a time.
test("a <starttls/> sent one byte at a time: <proceed/>, TLS and SASL as for one write", async () => {
  const r = await client(opportunistic.port, "tls-dribble");
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'\/>\ninside: no starttls PLAIN\n<success/,
  );
});

/** A python3 relay to the XMPP server on port argv 1 (printed first: its own port) that writes
 * the server's output a byte at a time (TCP_NODELAY) until its first features are through; or
 * with argv 1 "own", a server that sends, a byte at a time, features with a STARTTLS offer of
 * its own. */
const DRIBBLER = `
import socket, sys, threading, time
OWN = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' from='${DOMAIN}' version='1.0'><stream:features><starttls xmlns='${TLS_NS}'><required/></starttls></stream:features>"
def dribble(data, to):
    for i in range(len(data)):
        to.sendall(data[i:i + 1])
        time.sleep(0.001)
def pipe(a, b, slow):
    seen = b''
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            if slow and b'</stream:features>' not in seen:
                seen += d
                dribble(d, b)
            else:
                b.sendall(d)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def serve(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if sys.argv[1] == 'own':
        c.recv(65536)
        dribble(OWN, c)
        c.recv(65536)
        c.close()
        return
    s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
    threading.Thread(target=pipe, args=(c, s, False), daemon=True).start()
    pipe(s, c, True)
l = socket.create_server(('127.0.0.1', 0))
print(l.getsockname()[1], flush=True)
while True:
    threading.Thread(target=serve, args=(l.accept()[0],), daemon=True).start()
`;

/** DRIBBLER (argv 1: the server's port, or "own"), and its port. */
async function dribbler(upstream: string) {
  const child = spawn("python3", ["-c", DRIBBLER, upstream], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`dribbler exited: ${String(code)}`)));
    child.stdout.once("data", (d: Buffer) => resolve(Number(String(d).trim())));
  });
  return { port, child };
}

// The server's output was read again whole at every chunk until its features were through
// (quadratic for one that dribbles them), and the verdict came as soon as their opening tag
// was whole: an offer of the server's own in a later chunk got a second one beside it.
test("a server that writes its stream header and features a byte at a time: the offer, <proceed/>, TLS (its features dribbled again behind it) and SASL with Prosody; a server's own offer, dribbled, is kept alone (it got a second one)", async () => {
  const slow = await dribbler(String(xmppPort));
  const own = await dribbler("own");
  const front = (port: number) =>
    serve(["starttls-wrapper", "-p", "xmpp", "tcpforward", "127.0.0.1", String(port)]);
  const [slowFront, ownFront] = [await front(slow.port), await front(own.port)];
  try {
    const r = await client(slowFront.port, "tls");
    assert.equal(r.code, 0, r.stderr + slowFront.log());
    assert.equal(r.stdout, TLS_FLOW);
    const counted = await client(ownFront.port, "count");
    assert.equal(counted.code, 0, counted.stderr);
    assert.equal(counted.stdout, "offered required\n1\n", ownFront.log());
  } finally {
    await slowFront.stop();
    await ownFront.stop();
    slow.child.kill();
    own.child.kill();
  }
});

// An XML declaration and a stream header come once each; forwarding every further one read the
// rest of the text again each time.
test("-r: a third header (an XML declaration after the stream's) is no client's: refused", async () => {
  const r = await client(required.port, "again");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /TLS is required<\/text><\/stream:error><\/stream:stream>\n$/);
  await required.waitForLog(
    /^starttls-wrapper: warning: 127\.0\.0\.1: <\?> before STARTTLS: refused \(-r\)$/,
  );
});

test("bytes pipelined behind <starttls/>, before <proceed/>: refused, never relayed; also behind whitespace", async () => {
  for (const [mode, bytes] of [
    ["pipelined", 11],
    ["pipelined-ws", 6],
  ] as const) {
    const r = await client(opportunistic.port, mode);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /bytes after starttls<\/text><\/stream:error><\/stream:stream>\n$/);
    assert.doesNotMatch(r.stdout, /proceed/);
    await opportunistic.waitForLog(
      new RegExp(
        `^starttls-wrapper: warning: 127\\.0\\.0\\.1: ${bytes} bytes after <starttls/>, before <proceed/>: refused$`,
      ),
    );
  }
});

test("XEP-0368 direct TLS needs no wrapper: tlsd --alpn xmpp-client in front of the same server", async () => {
  const server = await serve([
    ...["tlsd", "--alpn", "xmpp-client", "tcpforward", "127.0.0.1", String(xmppPort)],
  ]);

  try {
    const r = await run("python3", [
      "-c",
      [
        "import socket, ssl, sys, base64, time",
        "ctx = ssl.create_default_context(cafile=sys.argv[2])",
        "ctx.set_alpn_protocols(['xmpp-client'])",
        "s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1])), 10), server_hostname=sys.argv[3])",
        "print(s.selected_alpn_protocol())",
        `s.sendall(b"<?xml version='1.0'?><stream:stream to='${DOMAIN}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")`,
        "data = b''",
        "while b'</stream:features>' not in data: data += s.recv(4096)",
        "s.sendall(b\"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>\" + base64.b64encode(b'\\0alice\\0secret') + b'</auth>')",
        "print(s.recv(200).decode()[:52])",
      ].join("\n"),
      String(server.port),
      pki.ca.cert,
      DOMAIN,
    ]);
    assert.equal(r.code, 0, r.stderr + server.log());
    assert.equal(r.stdout, "xmpp-client\n<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\n");
  } finally {
    await server.stop();
  }
});

test("openssl s_client -starttls xmpp: the upgrade, the certificate verified, TLS 1.3", async () => {
  const r = await opensslStartTls(opportunistic.port, "xmpp", pki.ca.cert, "example.test");
  assert.equal(r.code, 0, r.stderr + opportunistic.log());
  assert.match(r.stderr, /^Protocol version: TLSv1\.3$/m);
  assert.match(r.stderr, /^Verification: OK$/m);
});

test("a server that sends its stream header and features before the client's header: the late header goes to the server, and the client's <starttls/> still gets <proceed/> (it used to pass to the server)", async () => {
  const server = await serve(["starttls-wrapper", "-p", "xmpp", ...serverBehind("xmpp", false)]);
  try {
    const got = await new Promise<string>((resolve) => {
      const tcp = connect(server.port, "127.0.0.1");
      tcp.on("error", () => {});
      let seen = "";
      let asked = false;
      const timer = setTimeout(() => tcp.destroy(), 10_000);
      tcp.on("data", (d: Buffer) => {
        seen += d.toString("latin1");
        // Only once the features (with our <starttls/>) are here: the client's header, then
        // its <starttls/>, each in a write of its own.
        if (!asked && seen.includes("</stream:features>")) {
          asked = true;
          tcp.write(
            "<?xml version='1.0'?><stream:stream to='example.org' xmlns='jabber:client'" +
              " xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
            () => setTimeout(() => tcp.write(`<starttls xmlns='${TLS_NS}'/>`), 50),
          );
        }
        if (seen.includes("<proceed")) tcp.destroy();
      });
      tcp.once("close", () => {
        clearTimeout(timer);
        resolve(seen);
      });
    });
    assert.match(got, /<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>/);
    assert.match(got, /<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'\/>$/);
  } finally {
    await server.stop();
  }
});

test("-t running out before the client's decision: opportunistic, the stream goes on in plaintext to the server behind (a python3 client then logs in); with -r a policy-violation stream error and status 100 (-o used to end the stream as -r does)", async () => {
  const chain = (policy: string[]) => [
    ...["starttls-wrapper", "-v2", "-p", "xmpp", "-t", "1", ...policy],
    ...["tcpforward", "127.0.0.1", String(xmppPort)],
  ];
  const slow = await serve(chain([]));
  const strict = await serve(chain(["-r"]));
  // The client waits for a line on its stdin, sent once the wrapper says the limit ran out,
  // before its plaintext SASL PLAIN.
  const python = spawn("python3", ["-c", CLIENT, String(slow.port), "wait", pki.ca.cert, DOMAIN]);
  try {
    let out = "";
    python.stdout.on("data", (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => python.once("close", resolve));
    await slow.waitForLog(
      /^starttls-wrapper: info: 127\.0\.0\.1: no STARTTLS decision within 1 s: plaintext$/,
    );
    python.stdin.end("go\n");
    assert.equal(await exited, 0, out + slow.log());
    assert.equal(out, "offered \n<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\n");

    const refused = await client(strict.port, "idle");
    assert.match(
      refused.stdout,
      /^offered required\n<stream:error><policy-violation .*'>timed out<\/text><\/stream:error><\/stream:stream>\n$/,
      refused.stderr,
    );
    await strict.waitForLog(
      /^starttls-wrapper: warning: 127\.0\.0\.1: no STARTTLS decision within 1 s$/,
    );
    await strict.waitForLog(/^tcpserver: end \d+ status 25600$/);
  } finally {
    python.kill();
    await slow.stop();
    await strict.stop();
  }
});

test("a SASL PLAIN <auth> in the same write as the client's stream header, before the features: -r refuses it with a policy-violation stream error, the server never sees it (it went to the server with the header, which said <success/> in plaintext); opportunistic, it reaches the server", async () => {
  const refused = await client(required.port, "eager");
  assert.equal(refused.stdout, "no success policy-violation\n", refused.stderr + required.log());
  await required.waitForLog(
    /^starttls-wrapper: warning: 127\.0\.0\.1: <auth> before STARTTLS: refused \(-r\)$/,
  );
  const plain = await client(opportunistic.port, "eager");
  assert.equal(plain.stdout, "success \n", plain.stderr + opportunistic.log());
});

test("-r: elements the client sends behind its stream header to a server that sends no features are held no further than 64 KiB: a policy-violation stream error, one line, status 100", async () => {
  const server = await serve([
    ...["starttls-wrapper", "-p", "xmpp", "-r", "-t", "600", "sh", "-c", "exec cat >/dev/null"],
  ]);
  try {
    const r = await run("python3", [
      "-c",
      [
        "import socket, sys",
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), 10)",
        `s.sendall(b"<?xml version='1.0'?><stream:stream to='${DOMAIN}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>" + b'<presence/>' * 7000)`,
        "data = b''",
        "while b'</stream:stream>' not in data:",
        "    b = s.recv(4096)",
        "    if not b: break",
        "    data += b",
        "print(data.decode()[-60:])",
      ].join("\n"),
      String(server.port),
    ]);
    assert.equal(
      r.stdout,
      "pp-streams'>bad format</text></stream:error></stream:stream>\n",
      r.stderr,
    );
    await server.waitForLog(/^tcpserver: end \d+ status 25600$/);
    assert.match(
      server.log(),
      /^starttls-wrapper: warning: 127\.0\.0\.1: more than 64 KiB before the server's features$/m,
    );
  } finally {
    await server.stop();
  }
});

// RFC 6120's STARTTLS is the same between servers (jabber:server): the wrapper in front of
// Prosody's s2s port (which has no certificate, so no TLS of its own) offers it beside Prosody's
// dialback, and the stream restarted inside TLS is Prosody's s2s stream again.
test("server-to-server: a jabber:server stream to Prosody's s2s port gets <starttls/> beside dialback, <proceed/>, and its stream restarted inside verified TLS reaches Prosody's s2s; openssl s_client -starttls xmpp-server too", async () => {
  const s2s = await startProsody(DOMAIN, { s2s: true });
  const pair = await startWrapperPair("xmpp", s2s.s2sPort, leaf);
  try {
    for (const [server, required] of [
      [pair.opportunistic, ""],
      [pair.required, "required"],
    ] as const) {
      const r = await client(server.port, "tls-s2s");
      assert.equal(r.code, 0, r.stderr + server.log() + s2s.log());
      assert.equal(
        r.stdout,
        [
          `offered ${required}`,
          "dialback",
          "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
          "inside: no starttls ",
          "jabber:server dialback",
          "",
        ].join("\n"),
      );
      await server.waitForLog(/^starttls-wrapper: info: 127\.0\.0\.1: STARTTLS$/);
    }
    const r = await opensslStartTls(pair.required.port, "xmpp-server", pki.ca.cert, DOMAIN);
    assert.equal(r.code, 0, r.stderr + pair.required.log());
    assert.match(r.stderr, /^Protocol version: TLSv1\.3$/m);
    assert.match(r.stderr, /^Verification: OK$/m);
  } finally {
    await pair.stop();
    await s2s.stop();
  }
});

/** slixmpp (Debian's python3-slixmpp), argv: port, CA: alice logs in, fetches her roster and
 * says whether her stream is TLS, and which. slixmpp 1.8 takes STARTTLS when offered, but with
 * none it logs in in plaintext (its force_starttls is stored and never read): hence the check. */
const SLIXMPP = `
import sys, slixmpp
class Alice(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__("alice@${DOMAIN}/test", "secret")
        self.ca_certs = sys.argv[2]
        self.add_event_handler("session_start", self.start)
        self.add_event_handler("failed_all_auth", lambda _: (print("auth failed"), self.disconnect()))
    async def start(self, _):
        await self.get_roster()
        tls = self.transport.get_extra_info("ssl_object")
        print(self.boundjid.bare, tls.version() if tls else "plaintext")
        self.disconnect()
alice = Alice()
alice.connect(("127.0.0.1", int(sys.argv[1])))
alice.process(forever=False)
`;

test("slixmpp through the wrapper (opportunistic and -r): STARTTLS, the certificate verified for the domain, SASL and a roster from Prosody behind", async () => {
  const upgraded = /^starttls-wrapper: info: 127\.0\.0\.1: STARTTLS$/;
  for (const server of [opportunistic, required]) {
    const earlier = server.log().length;
    const upgrades = server
      .log()
      .split("\n")
      .filter((l) => upgraded.test(l)).length;
    const r = await run("/usr/bin/python3", ["-c", SLIXMPP, String(server.port), pki.ca.cert]);
    assert.equal(r.code, 0, r.stderr + server.log() + prosody.log());
    assert.equal(r.stdout, `alice@${DOMAIN} TLSv1.3\n`, r.stderr);
    await server.waitForLog(upgraded, upgrades + 1);
    assert.doesNotMatch(server.log().slice(earlier), /starttls-wrapper: warning|tlsd: fatal/);
  }
});

test("on tlsd's native TLS engine, which -v 2 names: the client's reading stops before <proceed/>, and only the whitespace before its ClientHello is taken (also in the same write as the hello); slixmpp too", async () => {
  const server = await serve(
    ["starttls-wrapper", "-v2", "-p", "xmpp", "tcpforward", "127.0.0.1", String(xmppPort)],
    { UCSPI_TLS_ENGINE: "native" },
  );
  try {
    for (const mode of ["tls", "tls-newline", "tls-keepalive", "tls-spaced-hello"]) {
      const r = await client(server.port, mode);
      assert.equal(r.code, 0, r.stderr + server.log());
      assert.equal(r.stdout, TLS_FLOW, mode);
    }
    const r = await run("/usr/bin/python3", ["-c", SLIXMPP, String(server.port), pki.ca.cert]);
    assert.equal(r.stdout, `alice@${DOMAIN} TLSv1.3\n`, r.stderr + server.log());
    await server.waitForLog(/^tcpserver: end \d+ status \d+$/, 5);
    assert.equal(server.log().match(/^tlsd: info: native TLS engine$/gm)?.length, 5, server.log());
    assert.doesNotMatch(server.log(), /node:tls|starttls-wrapper: warning|tlsd: fatal/);
  } finally {
    await server.stop();
  }
});
