// Session tickets on tlsd's native TLS engine (src/native/tls-engine-tickets.c): this
// process's keys, or TICKETFILE's, in node:tls's layout, so that a ticket of either path
// resumes on the other; rotation by reading the file again; a ticket of another configuration
// never resumes. Real clients: openssl s_client (-sess_out, -sess_in) and python3's ssl.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { sClientSession } from "../helpers/tls-client.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const dir = scratchDir("native-tickets");
const server = pki.server("localhost", ["localhost"]);
const env = { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: server.cert, KEYFILE: server.key };
const program = ["/bin/sh", "-c", "env | grep ^SSL_ | sort"];

/** `tcpserver ... tlsd --engine ENGINE -v 2`, its program printing the SSL_ variables. */
function serveTlsd(
  engine: "native" | "node",
  more: Record<string, string> = {},
  flags: string[] = [],
) {
  return startServer(
    ours("tcpserver"),
    [...flags, "-RHl0", "127.0.0.1", "0", "tlsd", "--engine", engine, "-v", "2", ...program],
    { env: { ...env, ...more } },
  );
}

const connect = (port: number, file: string, version: string, resume: boolean, saveTo = file) =>
  sClientSession(port, pki.ca.cert, file, version, resume, saveTo);

/** A TICKETFILE of these keys (48 random bytes each, in base64, a line each). */
function ticketFile(name: string, keys: readonly Buffer[]): string {
  const file = join(dir, name);
  writeFileSync(file, `${keys.map((k) => k.toString("base64")).join("\n")}\n`, { mode: 0o600 });
  return file;
}
const newKey = () => randomBytes(48);

const ENGINE = /^tlsd: info: native TLS engine$/;

for (const version of ["-tls1_3", "-tls1_2"]) {
  test(`native engine, no TICKETFILE: a client resumes on the next connection (${version}), and after SIGHUP reads the certificates again; the program's variables as on the node:tls path`, async () => {
    const s = await serveTlsd("native", {}, ["-v"]);
    const n = await serveTlsd("node");
    try {
      const file = join(dir, `own${version}`);
      const first = await connect(s.port, file, version, false);
      assert.match(first, /^New, TLSv1\.[23]/m);
      const again = await connect(s.port, file, version, true);
      assert.match(again, /^Reused, TLSv1\.[23]/m);
      // OpenSSL's own keys were the context's: a certificate read again (a renewal, SIGHUP)
      // took them.
      s.child.kill("SIGHUP");
      await s.waitForLog(/^tcpserver: reload$/);
      const later = join(dir, `own-later${version}`);
      assert.match(await connect(s.port, file, version, true, later), /^Reused/m);
      // What the program of a resumed session learns, as node:tls's path tells it.
      const nodeFile = join(dir, `own-node${version}`);
      await connect(n.port, nodeFile, version, false);
      const onNode = await connect(n.port, nodeFile, version, true);
      assert.match(onNode, /^Reused/m);
      // The name too (test/tlsd/resumed-sni.test.ts).
      const vars = (out: string) => out.split("\n").filter((l) => l.startsWith("SSL_"));
      assert.deepEqual(vars(again), vars(onNode));
      assert.match(again, /^SSL_TLS_SNI_SERVERNAME=localhost$/m);
      await s.waitForLog(ENGINE, 3);
    } finally {
      await s.stop();
      await n.stop();
    }
  });
}

test("native engine: python3's ssl resumes a TLS 1.3 session, and a chain of resumptions never falls back", async () => {
  const s = await serveTlsd("native");
  try {
    const script = `
import socket, ssl
ctx = ssl.create_default_context(cafile=${JSON.stringify(pki.ca.cert)})
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
session = None
for i in range(4):
    raw = socket.create_connection(("127.0.0.1", ${s.port}))
    tls = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    while tls.recv(4096):
        pass  # to the end: the tickets come after the handshake
    print(i, tls.session_reused)
    session = tls.session
    tls.close()
`;
    const r = await run("python3", ["-c", script]);
    assert.equal(r.stdout, "0 False\n1 True\n2 True\n3 True\n", r.stderr);
  } finally {
    await s.stop();
  }
});

for (const version of ["-tls1_3", "-tls1_2"]) {
  test(`TICKETFILE shared by a tlsd on node:tls and one on the engine: each resumes the other's tickets (${version})`, async () => {
    const keys = ticketFile(`shared${version}`, [newKey(), newKey()]);
    const engine = await serveTlsd("native", { TICKETFILE: keys });
    const node = await serveTlsd("node", { TICKETFILE: keys });
    try {
      const fromNode = join(dir, `from-node${version}`);
      assert.match(await connect(node.port, fromNode, version, false), /^New/m);
      assert.match(await connect(engine.port, fromNode, version, true, join(dir, "x")), /^Reused/m);
      const fromEngine = join(dir, `from-engine${version}`);
      assert.match(await connect(engine.port, fromEngine, version, false), /^New/m);
      assert.match(await connect(node.port, fromEngine, version, true, join(dir, "y")), /^Reused/m);
      await engine.waitForLog(ENGINE, 2);
      assert.doesNotMatch(engine.log(), /not the native engine/);
    } finally {
      await engine.stop();
      await node.stop();
    }
  });
}

test("TICKETFILE on the engine with --workers 2: every connection resumes, whichever worker it reaches", async () => {
  const keys = ticketFile("workers", [newKey()]);
  const s = await serveTlsd("native", { TICKETFILE: keys }, ["--workers", "2"]);
  try {
    const file = join(dir, "session-workers");
    await connect(s.port, file, "-tls1_3", false);
    for (let i = 0; i < 6; i++)
      assert.match(await connect(s.port, file, "-tls1_3", true), /^Reused, TLSv1\.3/m);
    await s.waitForLog(ENGINE, 7);
    assert.doesNotMatch(s.log(), /not the native engine/);
  } finally {
    await s.stop();
  }
});

test("TICKETFILE rotation on the engine: a ticket of a key taken out is a full handshake, one of a key still there resumes", async () => {
  const [a, b, c, d] = [newKey(), newKey(), newKey(), newKey()];
  const keys = ticketFile("rotation", [a, b]);
  const s = await serveTlsd("native", { TICKETFILE: keys }, ["-v"]);
  let reloads = 0;
  const rewrite = async (list: Buffer[]) => {
    ticketFile("rotation", list);
    s.child.kill("SIGHUP");
    await s.waitForLog(/^tcpserver: reload$/, ++reloads);
  };
  try {
    for (const version of ["-tls1_3", "-tls1_2"]) {
      await rewrite([a, b]);
      const underA = join(dir, `rot-a${version}`);
      await connect(s.port, underA, version, false);
      // b encrypts now, a still decrypts.
      await rewrite([a, b, c]);
      const underB = join(dir, `rot-b${version}`);
      assert.match(await connect(s.port, underB, version, false), /^New/m);
      assert.match(await connect(s.port, underA, version, true, join(dir, "x")), /^Reused/m);
      // a is gone: its tickets are not taken; b's still are.
      await rewrite([b, c, d]);
      assert.match(await connect(s.port, underA, version, true, join(dir, "x")), /^New/m);
      assert.match(await connect(s.port, underB, version, true, join(dir, "y")), /^Reused/m);
    }
    await s.waitForLog(ENGINE, 10);
  } finally {
    await s.stop();
  }
});

test("TICKETFILE on the engine: a ticket made under another tlsd configuration never resumes (session id context)", async () => {
  const keys = ticketFile("other-config", [newKey()]);
  const other = pki.server("other", ["localhost"]);
  const s = await serveTlsd("native", { TICKETFILE: keys });
  // The same keys, another certificate: another configuration.
  const t = await serveTlsd("native", {
    TICKETFILE: keys,
    CERTFILE: other.cert,
    KEYFILE: other.key,
  });
  try {
    for (const version of ["-tls1_3", "-tls1_2"]) {
      const file = join(dir, `other${version}`);
      await connect(s.port, file, version, false);
      assert.match(await connect(s.port, file, version, true, join(dir, "x")), /^Reused/m);
      assert.match(await connect(t.port, file, version, true, join(dir, "x")), /^New/m);
    }
    await t.waitForLog(ENGINE, 2);
  } finally {
    await s.stop();
    await t.stop();
  }
});
