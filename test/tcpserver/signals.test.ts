// tcpserver's signals, with real processes and sockets: SIGHUP reads again what is kept of
// files (certificates, the PATH search) and drops no connection; SIGTERM exits at once as
// djb's does, or with --drain lets the running connections finish up to a bound, then ends them.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, utimesSync } from "node:fs";
import { writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import type { Socket } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import type { TLSSocket } from "node:tls";
import { spawnersOf } from "../helpers/interop.ts";
import { PATH_WITH_BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer, talk } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const dir = scratchDir("signals");

function openssl(args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

// One key, and two certificates for it that differ in their subject (and serial), made the
// same length so that one can replace the other in place without its size changing.
const KEY = join(dir, "key.pem");
openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", KEY]);
chmodSync(KEY, 0o600);
function selfSigned(cn: string): string {
  const file = join(dir, `${cn}.pem`);
  openssl(["req", "-x509", "-key", KEY, "-out", file, "-days", "2", "-subj", `/CN=${cn}`]);
  return readFileSync(file, "latin1");
}
const [ONE, TWO] = ((a: string, b: string) => {
  const length = Math.max(a.length, b.length);
  return [a.padEnd(length, "\n"), b.padEnd(length, "\n")];
})(selfSigned("cert-one"), selfSigned("cert-two"));
const serialOf = (pem: string) => new X509Certificate(pem).serialNumber.toUpperCase();

/** A line-by-line view of a client connection (plain or TLS, already connected). */
interface Client {
  socket: Socket;
  line(): Promise<string>;
  /** Resolves when the connection is closed. */
  closed: Promise<void>;
}

function lineClient(socket: Socket): Client {
  let text = "";
  let over = false;
  const waiting: (() => void)[] = [];
  const wake = () => {
    for (const w of waiting.splice(0)) w();
  };
  socket.setEncoding("latin1");
  socket.on("data", (d: string) => {
    text += d;
    wake();
  });
  // The server may end a connection with a reset: that is an end like any other here.
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) =>
    socket.once("close", () => {
      over = true;
      wake();
      resolve();
    }),
  );
  const line = async (): Promise<string> => {
    for (;;) {
      const nl = text.indexOf("\n");
      if (nl >= 0) {
        const found = text.slice(0, nl + 1);
        text = text.slice(nl + 1);
        return found;
      }
      if (over) throw new Error(`connection closed; unread: ${JSON.stringify(text)}`);
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
  };
  return { socket, line, closed };
}

function plainClient(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" }, () => resolve(lineClient(socket)));
    socket.once("error", reject);
  });
}

/** A TLS client; we look at which certificate is served, so none is verified. */
function tlsClient(port: number): Promise<Client> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      { port, host: "127.0.0.1", servername: "localhost", rejectUnauthorized: false },
      () => resolve(lineClient(socket)),
    );
    socket.once("error", reject);
  });
}

function served(client: Client): { serial: string; cn: string } {
  const cert = (client.socket as TLSSocket).getPeerCertificate();
  return { serial: cert.serialNumber.toUpperCase(), cn: String(cert.subject.CN) };
}

/** Whether a connection to the port is refused (nothing listens there any more). */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" }, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  if (child.exitCode !== null || child.signalCode !== null)
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

async function stopped(s: RunningServer): Promise<void> {
  if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill("SIGKILL");
  await exited(s.child);
}

test("SIGHUP: an open TLS session goes on; the next one gets the certificate replaced in place", async () => {
  const certFile = join(dir, "served.pem");
  // The file keeps its inode, size and mtime: nothing but SIGHUP can tell that it changed.
  const pinned = 1_700_000_000;
  writeFileSync(certFile, ONE, "latin1");
  utimesSync(certFile, pinned, pinned);
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "/bin/cat"],
    { env: { PATH: PATH_WITH_BIN, CERTFILE: certFile, KEYFILE: KEY } },
  );
  const clients: Client[] = [];
  try {
    const open = await tlsClient(s.port);
    clients.push(open);
    assert.deepEqual(served(open), { serial: serialOf(ONE), cn: "cert-one" });
    open.socket.write("before\n");
    assert.equal(await open.line(), "before\n");

    writeFileSync(certFile, TWO, "latin1");
    utimesSync(certFile, pinned, pinned);
    const unchanged = await tlsClient(s.port);
    clients.push(unchanged);
    assert.equal(served(unchanged).cn, "cert-one", "without SIGHUP the change goes unseen");
    unchanged.socket.end();

    s.child.kill("SIGHUP");
    await s.waitForLog(/^tcpserver: reload$/);
    const next = await tlsClient(s.port);
    clients.push(next);
    assert.deepEqual(served(next), { serial: serialOf(TWO), cn: "cert-two" });
    next.socket.write("new\n");
    assert.equal(await next.line(), "new\n");
    next.socket.end();

    // The session opened before the reload is untouched, with the certificate it began with.
    open.socket.write("after\n");
    assert.equal(await open.line(), "after\n");
    assert.equal(served(open).cn, "cert-one");
    open.socket.end();
    await open.closed;
    await s.waitForLog(/^tcpserver: end \d+ status 0$/, 3);
    assert.equal(s.child.exitCode, null, "SIGHUP does not end the server");
    assert.doesNotMatch(s.log(), /warning|fatal/);
  } finally {
    for (const c of clients) c.socket.destroy();
    await s.stop();
  }
});

test("SIGHUP with a certificate file that cannot be used: one warning, the one loaded before serves", async () => {
  const certFile = join(dir, "broken.pem");
  writeFileSync(certFile, ONE, "latin1");
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "tlsd", "/bin/cat"],
    { env: { PATH: PATH_WITH_BIN, CERTFILE: certFile, KEYFILE: KEY } },
  );
  try {
    writeFileSync(certFile, "not a certificate\n");
    s.child.kill("SIGHUP");
    const [warning = ""] = await s.waitForLog(/^tlsd: warning: /);
    assert.ok(
      warning.startsWith(`tlsd: warning: unable to use certificate ${certFile} with key ${KEY}: `),
      warning,
    );
    assert.match(
      warning,
      /: the certificate file holds no PEM certificate; the certificate and key loaded before still serve$/,
    );
    const client = await tlsClient(s.port);
    assert.equal(served(client).cn, "cert-one");
    client.socket.end();
    await client.closed;
  } finally {
    await s.stop();
  }
});

test("SIGHUP with -x: new rules and a program just installed earlier in PATH apply to the next connection", async () => {
  const rules = join(dir, "rules.cdb");
  const compile = async (greeting: string) => {
    const r = await run(ours("tcprules"), [rules, join(dir, "rules.tmp")], {
      input: `127.0.0.1:allow,GREETING="${greeting}"\n:deny\n`,
    });
    assert.equal(r.code, 0, r.stderr);
  };
  const [early, late] = [join(dir, "path-early"), join(dir, "path-late")];
  mkdirSync(early);
  mkdirSync(late);
  const install = (where: string, says: string) => {
    const file = join(where, "greet");
    writeFileSync(file, `#!/bin/sh\necho "${says} $GREETING"\n`);
    chmodSync(file, 0o755);
  };
  await compile("one");
  install(late, "late");
  const s = await startServer(
    ours("tcpserver"),
    ["-v", "-x", rules, "-RHl0", "127.0.0.1", "0", "greet"],
    { env: { PATH: `${early}:${late}:/usr/bin:/bin` } },
  );
  try {
    assert.equal(await talk(s.port), "late one\n");
    await compile("two");
    install(early, "early");
    s.child.kill("SIGHUP");
    await s.waitForLog(/^tcpserver: reload$/);
    assert.equal(await talk(s.port), "early two\n");
  } finally {
    await s.stop();
  }
});

test("SIGTERM without --drain: exit 0 at once, the listener gone, the spawned program goes on (djb)", async () => {
  const s = await startServer(ours("tcpserver"), [
    "-RHl0",
    "127.0.0.1",
    "0",
    "/bin/sh",
    "-c",
    "echo go; read x; echo still here $x",
  ]);
  const client = await plainClient(s.port);
  try {
    assert.equal(await client.line(), "go\n");
    s.child.kill("SIGTERM");
    assert.deepEqual(await exited(s.child), { code: 0, signal: null });
    assert.ok(await refused(s.port));
    client.socket.write("after\n");
    assert.equal(await client.line(), "still here after\n");
  } finally {
    client.socket.destroy();
    await stopped(s);
  }
});

const DIALOGUE = ["/bin/sh", "-c", "echo go; read x; echo got $x"];
const TLS_ENV = { PATH: PATH_WITH_BIN, CERTFILE: join(dir, "cert-one.pem"), KEYFILE: KEY };

test("SIGTERM without --drain, a relay in-process whose service never ends: ended after 3 s, then exit 0", async () => {
  // The service answers and holds on; before the bound, SIGTERM waited for it for ever.
  const service = createServer((socket) => {
    socket.on("data", (b) => socket.write(b));
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => service.listen(0, "127.0.0.1", resolve));
  const servicePort = (service.address() as { port: number }).port;
  const relay = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "127.0.0.1", "0", "tcpforward", "127.0.0.1", String(servicePort)],
    { env: TLS_ENV },
  );
  const relayed = await plainClient(relay.port);
  try {
    relayed.socket.write("ping\n");
    assert.equal(await relayed.line(), "ping\n");
    relay.child.kill("SIGTERM");
    assert.deepEqual(await exited(relay.child), { code: 0, signal: null });
    await relayed.closed;
    const log = relay.log();
    assert.match(
      log,
      /^tcpserver: stop: 1 connection served in this process, waiting 3 s at most$/m,
    );
    assert.match(log, /^tcpserver: stop: 1 connection still open after 3 s, ending it$/m);
  } finally {
    relayed.socket.destroy();
    await stopped(relay);
    service.close();
  }
});

const DRAINING = /^tcpserver: drain: 1 connection open, waiting 60 s at most$/;
for (const kind of [
  { name: "a spawned program", chain: DIALOGUE, open: plainClient, drain: true, line: DRAINING },
  {
    name: "tlsd in-process and its program",
    chain: ["tlsd", ...DIALOGUE],
    open: tlsClient,
    drain: true,
    line: DRAINING,
  },
  // Without --drain, only what lives in this process is waited for (3 s at most).
  {
    name: "tlsd in-process and its program",
    chain: ["tlsd", ...DIALOGUE],
    open: tlsClient,
    drain: false,
    line: /^tcpserver: stop: 1 connection served in this process, waiting 3 s at most$/,
  },
]) {
  test(`${kind.drain ? "--drain" : "SIGTERM without --drain"}, ${kind.name}: the listener closes at once, the dialogue completes, then exit 0`, async () => {
    const s = await startServer(
      ours("tcpserver"),
      ["-v", ...(kind.drain ? ["--drain", "60"] : []), "-RHl0", "127.0.0.1", "0", ...kind.chain],
      { env: TLS_ENV },
    );
    const client = await kind.open(s.port);
    try {
      assert.equal(await client.line(), "go\n");
      s.child.kill("SIGTERM");
      await s.waitForLog(kind.line);
      assert.ok(await refused(s.port), "nothing listens any more");
      assert.equal(s.child.exitCode, null, "still serving the open connection");
      // The port is free for the next server meanwhile.
      const next = await startServer(ours("tcpserver"), [
        "-RHl0",
        "127.0.0.1",
        String(s.port),
        "/bin/echo",
        "next",
      ]);
      try {
        assert.equal(await talk(s.port), "next\n");
      } finally {
        await next.stop();
      }
      client.socket.write("x\n");
      assert.equal(await client.line(), "got x\n");
      assert.deepEqual(await exited(s.child), { code: 0, signal: null });
      assert.match(s.log(), /^tcpserver: end \d+ status 0$/m);
      assert.doesNotMatch(s.log(), /still open after/);
    } finally {
      client.socket.destroy();
      await stopped(s);
    }
  });
}

for (const kind of [
  {
    name: "a spawned program",
    chain: ["/bin/sh", "-c", "exec cat"],
    open: plainClient,
    status: 15,
  },
  {
    name: "tlsd in-process and its program",
    chain: ["tlsd", "/bin/sh", "-c", "exec cat"],
    open: tlsClient,
    // tlsd's end closes the program's input as its SIGTERM goes out: cat may see the EOF
    // first and exit 0 (seen once on a loaded machine).
    status: "(?:15|0)",
  },
  // Its input ends (as if the client had closed), so it ends as it would then.
  { name: "an in-process program", chain: ["ucspi-demo"], open: plainClient, status: 0 },
]) {
  test(`--drain 1, ${kind.name} that never ends: ended after the bound, the server exits 0`, async () => {
    const s = await startServer(
      ours("tcpserver"),
      ["-v", "--drain", "1", "-RHl0", "127.0.0.1", "0", ...kind.chain],
      { env: TLS_ENV },
    );
    const client = await kind.open(s.port);
    try {
      client.socket.write("ping\n");
      // cat echoes; ucspi-demo greets, then echoes.
      assert.match(await client.line(), /^ping|^hello /);
      s.child.kill("SIGTERM");
      assert.deepEqual(await exited(s.child), { code: 0, signal: null });
      await client.closed;
      const log = s.log();
      assert.match(log, /^tcpserver: drain: 1 connection open, waiting 1 s at most$/m);
      assert.match(log, /^tcpserver: drain: 1 connection still open after 1 s, ending it$/m);
      // Its end was seen: a spawned program's by SIGTERM (a raw wait status of 15).
      assert.match(log, new RegExp(`^tcpserver: end \\d+ status ${kind.status}$`, "m"));
      // tcpserver ended it, not the client: no line blames a peer gone.
      assert.doesNotMatch(log, /connection lost/);
    } finally {
      client.socket.destroy();
      await stopped(s);
    }
  });
}

test("--workers 2: SIGHUP reaches both processes; --drain stops both, the first exits after its worker's connection", async () => {
  const s = await startServer(ours("tcpserver"), [
    "-v",
    "--workers",
    "2",
    "--drain",
    "60",
    "-RHl0",
    "127.0.0.1",
    "0",
    "/bin/sh",
    "-c",
    "echo $PPID; read x; echo got $x",
  ]);
  const clients: Client[] = [];
  try {
    // Both processes serve (each logs its first status line).
    await s.waitForLog(/^tcpserver: status: 0\/20$/, 2);
    s.child.kill("SIGHUP");
    await s.waitForLog(/^tcpserver: reload$/, 2);

    // The kernel spreads connections over the two listeners: one served by each is wanted.
    const first = s.child.pid ?? 0;
    let own: Client | undefined;
    let other: Client | undefined;
    for (let i = 0; i < 200 && !(own && other); i++) {
      const c = await plainClient(s.port);
      clients.push(c);
      const spawner = Number(await c.line());
      const mine = spawnersOf(first).includes(spawner);
      if (mine && !own) own = c;
      else if (!mine && !other) other = c;
      else c.socket.end("extra\n");
    }
    assert.ok(own && other, "connections reached both processes");

    s.child.kill("SIGTERM");
    await s.waitForLog(/^tcpserver: drain: /, 2);
    assert.ok(await refused(s.port), "neither process listens any more");
    own.socket.write("a\n");
    assert.equal(await own.line(), "got a\n");
    await own.closed;
    assert.equal(s.child.exitCode, null, "the first process waits for its worker's connection");
    other.socket.write("b\n");
    assert.equal(await other.line(), "got b\n");
    assert.deepEqual(await exited(s.child), { code: 0, signal: null });
  } finally {
    for (const c of clients) c.socket.destroy();
    await stopped(s);
  }
});

// Node's own answer to SIGUSR1 is to open its inspector on 127.0.0.1:9229, where any local user
// could then run code as tcpserver (root, before -u; root throughout without it). djb's dies.
for (const server of [djb("tcpserver"), ours("tcpserver")]) {
  const who = server.startsWith("/usr") ? "djb's" : "ours";
  test(`SIGUSR1: ${who} dies of it, and no inspector opens`, async () => {
    const s = await startServer(server, ["-RHl0", "127.0.0.1", "0", "true"]);
    const exited = new Promise((resolve) =>
      s.child.once("exit", (code, signal) => resolve({ code, signal })),
    );
    const inspector = s.waitForLog(/Debugger listening/).then(
      () => "inspector opened",
      () => "no inspector",
    );
    s.child.kill("SIGUSR1");
    const first = await Promise.race([exited, inspector]);
    if (first === "inspector opened") s.child.kill("SIGKILL");
    assert.deepEqual(first, { code: null, signal: "SIGUSR1" }, s.log());
  });
}
