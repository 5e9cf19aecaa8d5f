// Misbehaving clients and services against one tcpserver that runs the whole in-process chain
// as tls-everywhere does (tls-sniff, then tlsd or not, then tcpforward): resets in the
// handshake and mid-session, sessions abandoned without close_notify, garbage, services that
// reset or close at once, in random mixes (fast-check) and all at once. Whatever happens to
// one connection ends that connection alone: tcpserver goes on serving, logs no internal
// error, every connection ends, and no fd or child is left behind.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { after, before, test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import fc from "fast-check";
import { makePki } from "../helpers/certs.ts";
import { openFds, programsOf } from "../helpers/interop.ts";
import { PATH_WITH_BIN, ours } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";

const pki = makePki();
const pair = pki.server("localhost", ["localhost", "127.0.0.1"]);
const ca = readFileSync(pki.ca.cert);

/** What the service does once it has the first line: echo everything back and end when the
 * client ends; reset the connection; or end it at once. */
const MODES = ["echo", "reset", "close"] as const;
type Mode = (typeof MODES)[number];

const KINDS = [
  "tls", // a full session: the line, a half-close, everything read to the end
  "tls-reset", // the line, then a TCP reset as soon as anything comes back (or 20 ms)
  "tls-abandoned", // the line, then the TCP connection closed without close_notify
  "tls-handshake-reset", // half a ClientHello, then a reset
  "plain", // the same as "tls" in plaintext (tls-sniff's other way)
  "plain-reset",
  "garbage", // a TLS record header and random bytes
] as const;
type Kind = (typeof KINDS)[number];

let service: ReturnType<typeof createServer>;
let servicePort = 0;
let server: RunningServer;
let connections = 0;

before(async () => {
  service = createServer({ allowHalfOpen: true }, (socket) => {
    let first = "";
    let mode: Mode | undefined;
    socket.setEncoding("latin1");
    socket.on("error", () => {});
    socket.on("data", (d: string) => {
      if (mode === "echo") return void socket.write(d);
      if (mode !== undefined) return;
      first += d;
      const end = first.indexOf("\n");
      if (end < 0) return;
      mode = first.slice(0, end) as Mode;
      if (mode === "reset") socket.resetAndDestroy();
      else if (mode === "close") socket.end();
      else socket.write(first);
    });
    socket.on("end", () => {
      if (mode === "echo") socket.end();
    });
  });
  await new Promise<void>((resolve) => service.listen(0, "127.0.0.1", resolve));
  servicePort = (service.address() as { port: number }).port;
  const to = ["tcpforward", "127.0.0.1", String(servicePort)];
  server = await startServer(
    ours("tcpserver"),
    ["-v", "-RHl0", "-c", "200", "127.0.0.1", "0"].concat([
      "tls-sniff",
      "-t",
      "300",
      "--plain",
      "{",
      ...to,
      "}",
      "tlsd",
      ...to,
    ]),
    { env: { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: pair.cert, KEYFILE: pair.key } },
  );
});

after(async () => {
  await server.stop();
  service.close();
  rmSync(pki.dir, { recursive: true, force: true });
});

interface Outcome {
  got: string;
  error?: string;
}

/** One client of `kind` asking the service for `mode`; resolves when its connection is
 * closed, and fails if that takes more than 15 s (a hang). */
function client(kind: Kind, mode: Mode): Promise<Outcome> {
  connections++;
  return new Promise((resolve, reject) => {
    const tcp = connect(server.port, "127.0.0.1");
    const line = `${mode}\nhello\n`;
    let got = "";
    let error: string | undefined;
    const timer = setTimeout(() => {
      tcp.destroy();
      reject(new Error(`${kind}/${mode}: not over after 15 s (read ${JSON.stringify(got)})`));
    }, 15_000);
    const done = () => {
      clearTimeout(timer);
      resolve(error === undefined ? { got } : { got, error });
    };
    const failed = (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message);
    tcp.on("error", failed);
    tcp.once("close", done);
    const reset = () => {
      if (!tcp.destroyed) tcp.resetAndDestroy();
    };
    if (kind === "plain" || kind === "plain-reset") {
      tcp.setEncoding("latin1");
      tcp.on("data", (d: string) => (got += d));
      tcp.write(line);
      if (kind === "plain") tcp.end();
      else setTimeout(reset, 20);
      return;
    }
    if (kind === "tls-handshake-reset") {
      tcp.write(Buffer.from("16030100c8010000c40303", "hex"));
      setTimeout(reset, 20);
      return;
    }
    if (kind === "garbage") {
      tcp.write(Buffer.concat([Buffer.from("160303", "hex"), randomBytes(200)]));
      tcp.end();
      tcp.resume();
      return;
    }
    const tls = tlsConnect({ socket: tcp, servername: "localhost", ca: [ca] });
    tls.setEncoding("latin1");
    tls.on("error", failed);
    tls.on("data", (d: string) => {
      got += d;
      if (kind === "tls-reset") reset();
    });
    tls.once("secureConnect", () => {
      tls.write(line);
      if (kind === "tls") tls.end();
      if (kind === "tls-reset") setTimeout(reset, 20);
      if (kind === "tls-abandoned") setImmediate(() => tcp.destroy());
    });
  });
}

/** A whole exchange that must work: the service's echo of what was sent. */
async function servesWell(): Promise<void> {
  for (const kind of ["tls", "plain"] as const)
    assert.deepEqual(await client(kind, "echo"), { got: "echo\nhello\n" }, kind);
}

test("random mixes of misbehaving clients and services, at once: each ends alone, the good ones are served", async () => {
  await servesWell();
  await settled();
  const pid = server.child.pid as number;
  const fdsBefore = ownFds(pid);
  const kind = fc.constantFrom(...KINDS);
  const mode = fc.constantFrom(...MODES);
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(kind, mode), { minLength: 1, maxLength: 12 }),
      async (batch) => {
        const outcomes = await Promise.all(batch.map(([k, m]) => client(k, m)));
        for (const [i, [k, m]] of batch.entries()) {
          // A full session asking for an echo gets exactly that, whatever its neighbours did.
          if ((k === "tls" || k === "plain") && m === "echo")
            assert.deepEqual(outcomes[i], { got: "echo\nhello\n" }, `${k}/${m}`);
        }
        assert.equal(server.child.exitCode, null, `tcpserver ended:\n${server.log().slice(-3000)}`);
      },
    ),
    { numRuns: 12 },
  );
  await servesWell();
  await settled();
  assert.doesNotMatch(server.log(), /internal error|ERR_|node:/);
  const left = ownFds(pid).filter((fd) => !fdsBefore.includes(fd));
  assert.deepEqual(left, [], `fds left: ${sockets(left)}`);
  assert.deepEqual(programsOf(pid), [], "no child left");
});

/** The process's fds but the splice relay's pool of empty pipes, which it keeps on purpose
 * (src/native/relay.c, at most 64 pairs) and which grows with the connections at once. */
function ownFds(pid: number): string[] {
  const fds = [...openFds(pid)];
  const pipes = fds.filter(([, target]) => target.startsWith("pipe:"));
  assert.ok(pipes.length <= 2 * 64, `${pipes.length} pipes`);
  return fds
    .filter(([, target]) => !target.startsWith("pipe:"))
    .map(([fd, target]) => `${fd} ${target}`)
    .sort();
}

/** What the kernel says of the sockets among `fds` ("N socket:[inode]"): their TCP or UNIX
 * table lines, for a message. */
function sockets(fds: string[]): string {
  const tables = ["tcp", "tcp6", "unix"].map((t) => readFileSync(`/proc/net/${t}`, "latin1"));
  return fds
    .map((fd) => {
      const inode = /socket:\[(\d+)\]/.exec(fd)?.[1];
      const lines = tables.flatMap((t) =>
        t.split("\n").filter((l) => inode !== undefined && l.split(/\s+/).includes(inode)),
      );
      return `${fd}: ${lines.join(" | ") || "not in /proc/net"}`;
    })
    .join("; ");
}

/** Every connection so far has its `end` line and the server is back to 0 connections. */
async function settled(): Promise<void> {
  await server.waitForLog(/^tcpserver: end /, connections, 20_000);
  await waitFor(
    () => (/tcpserver: status: 0\/\d+\n$/.test(server.log()) ? true : undefined),
    10_000,
    () => `never back to 0 connections:\n${server.log().slice(-2000)}`,
  );
}
