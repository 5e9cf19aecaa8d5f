// Our extensions to djb's tcpserver, which have no djb peer: -C (per-IP limit), --log json,
// --workers, and systemd socket activation. Where a djb behaviour is involved (the text log),
// the extension is checked against our own djb-compatible output.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { before, test } from "node:test";
import { freePort, freeUdpPort } from "../helpers/interop.ts";
import { alive, childrenOf, cmdline } from "../helpers/procs.ts";
import { ROOT, djb, ours, run } from "../helpers/programs.ts";
import { rulesText } from "../helpers/rules.ts";
import { startServer, talk, waitFor } from "../helpers/server.ts";
import { logShape, session } from "../helpers/session.ts";
import { scratchDir } from "../helpers/scratch.ts";

const PRINT_ENV = join(ROOT, "test/fixtures/print-env");
const PRINT_FDS = join(ROOT, "test/fixtures/print-fds");
const SOCKET_ACTIVATE = join(ROOT, "test/fixtures/socket-activate");
const SERVER_ENV = { PATH: "/usr/bin:/bin" };

let dir = "";
before(() => {
  dir = scratchDir("extensions");
});

/** A connection that stays open; `first` resolves with the first line the server sends. */
function hold(port: number, localAddress: string) {
  let text = "";
  let ended = false;
  let onLine: () => void = () => {};
  const socket: Socket = connect({ port, host: "127.0.0.1", localAddress });
  const first = new Promise<string>((resolve, reject) => {
    onLine = () => {
      if (text.includes("\n")) resolve(text);
    };
    socket.on("error", reject);
    socket.on("end", () => {
      ended = true;
      resolve(text);
    });
  });
  socket.on("data", (b: Buffer) => {
    text += b.toString("latin1");
    onLine();
  });
  const closed = new Promise<string>((resolve) => socket.on("close", () => resolve(text)));
  return {
    first,
    /** Half-closes our side and resolves with everything read until the server's EOF. */
    finish: () => {
      if (!ended) socket.end();
      return closed;
    },
    destroy: () => socket.destroy(),
  };
}

// ---- -C: per-IP limit -----------------------------------------------------------------------

test("-C 1: a second connection from the same address is closed at once and logged", async () => {
  const script = "echo go; read x; echo bye";
  const s = await startServer(ours("tcpserver"), [
    "-v",
    "-C",
    "1",
    "-RHl0",
    "127.0.0.1",
    "0",
    "/bin/sh",
    "-c",
    script,
  ]);
  try {
    const first = hold(s.port, "127.0.0.1");
    assert.equal(await first.first, "go\n");
    // Same address, over the limit: accepted, closed, nothing run.
    assert.equal(await talk(s.port, "", "127.0.0.1", { localAddress: "127.0.0.1" }), "");
    await s.waitForLog(/^tcpserver: reject /);
    assert.match(s.log(), /^tcpserver: reject 127\.0\.0\.1 count 1\/1$/m);
    // Another address is served meanwhile.
    assert.equal(await talk(s.port, "", "127.0.0.1", { localAddress: "127.0.0.2" }), "go\nbye\n");
    // Once the first ends, the address may connect again.
    assert.equal(await first.finish(), "go\nbye\n");
    await s.waitForLog(/ end /, 2);
    assert.equal(await talk(s.port, "", "127.0.0.1", { localAddress: "127.0.0.1" }), "go\nbye\n");
    await s.waitForLog(/ end /, 3);
    const lines = s.log().split("\n");
    // The rejected connection has no pid, ok or end line and does not count in status.
    assert.equal(lines.filter((l) => / pid \d+ from /.test(l)).length, 3);
    assert.equal(lines.filter((l) => / end \d+ status 0$/.test(l)).length, 3);
    assert.deepEqual(
      lines.filter((l) => / reject /.test(l)),
      ["tcpserver: reject 127.0.0.1 count 1/1"],
    );
  } finally {
    await s.stop();
  }
});

test("-C 2 --per-ip-limit spelling: the third connection from one address is rejected", async () => {
  const s = await startServer(ours("tcpserver"), [
    "-v",
    "--per-ip-limit",
    "2",
    "-RHl0",
    "127.0.0.1",
    "0",
    "/bin/sh",
    "-c",
    "echo go; read x",
  ]);
  try {
    const a = hold(s.port, "127.0.0.5");
    const b = hold(s.port, "127.0.0.5");
    assert.equal(await a.first, "go\n");
    assert.equal(await b.first, "go\n");
    assert.equal(await talk(s.port, "", "127.0.0.1", { localAddress: "127.0.0.5" }), "");
    await s.waitForLog(/^tcpserver: reject 127\.0\.0\.5 count 2\/2$/);
    await a.finish();
    await b.finish();
    await s.waitForLog(/ end /, 2);
  } finally {
    await s.stop();
  }
});

// ---- --log json -----------------------------------------------------------------------------

interface JsonEvent {
  level: number;
  time: number;
  program: string;
  event: string;
  msg?: string;
  [field: string]: unknown;
}

/** The text line djb's format gives for one of our JSON events. */
function asText(e: JsonEvent): string {
  const f = (v: unknown) => (v === undefined || v === null ? "" : String(v));
  switch (e.event) {
    case "status":
      return `tcpserver: status: ${f(e["active"])}/${f(e["limit"])}`;
    case "accept":
      return `tcpserver: pid ${f(e["pid"])} from ${f(e["remoteIp"])}`;
    case "ok":
    case "deny":
      return (
        `tcpserver: ${e.event} ${f(e["pid"])} ${f(e["localHost"])}:${f(e["localIp"])}:` +
        `${f(e["localPort"])} ${f(e["remoteHost"])}:${f(e["remoteIp"])}:` +
        `${f(e["remoteInfo"])}:${f(e["remotePort"])}`
      );
    case "end":
      return `tcpserver: end ${f(e["pid"])} status ${f(e["status"])}`;
    case "reject":
      return `tcpserver: reject ${f(e["remoteIp"])} count ${f(e["count"])}/${f(e["limit"])}`;
    case "warning":
      return `tcpserver: warning: ${f(e.msg)}`;
    default:
      return `unknown event ${JSON.stringify(e)}`;
  }
}

function parseJsonLog(log: string): JsonEvent[] {
  return log
    .split("\n")
    .filter((l) => l !== "")
    .map((line) => {
      let e: JsonEvent;
      try {
        e = JSON.parse(line) as JsonEvent;
      } catch {
        throw new Error(`not one JSON object per line: ${JSON.stringify(line)}\nlog:\n${log}`);
      }
      assert.equal(e.program, "tcpserver", line);
      assert.equal(typeof e.time, "number", line);
      assert.equal(e.level, e.event === "warning" ? 40 : 30, line);
      return e;
    });
}

async function jsonRules(): Promise<string> {
  const cdb = join(dir, "json-rules.cdb");
  const lines = ['127.0.0.1:allow,X="one"', "127.0.0.2:deny"];
  const r = await run(djb("tcprules"), [cdb, `${cdb}.tmp`], { input: rulesText(lines) });
  assert.equal(r.code, 0, r.stderr);
  return cdb;
}

test("--log json: one JSON object per line, the same events as the text log", async () => {
  const cdb = await jsonRules();
  // 127.0.0.1 allowed (exit 0), 127.0.0.2 denied, 127.0.0.3 allowed and killed by SIGKILL.
  const program = ["/bin/sh", "-c", 'echo hi; [ "$TCPREMOTEIP" != 127.0.0.3 ] || kill -9 $$'];
  const clients = ["127.0.0.1", "127.0.0.2", "127.0.0.3"].map((localAddress) => ({
    localAddress,
  }));
  const args = ["-RHl0", "-x", cdb];
  const text = await session(ours("tcpserver"), args, "127.0.0.1", program, clients, {
    env: SERVER_ENV,
  });
  const json = await session(
    ours("tcpserver"),
    ["--log", "json", ...args],
    "127.0.0.1",
    program,
    clients,
    { env: SERVER_ENV },
  );
  assert.deepEqual(json.outputs, text.outputs);
  const events = parseJsonLog(json.log);
  assert.deepEqual(
    logShape(events.map(asText).join("\n")),
    logShape(text.log),
    `json:\n${json.log}\ntext:\n${text.log}`,
  );
  const ends = events.filter((e) => e.event === "end");
  assert.deepEqual(
    ends.map((e) => [e["status"], e["exitCode"], e["signal"]]),
    [
      [0, 0, undefined],
      [25600, 100, undefined],
      [9, undefined, 9],
    ],
  );
  const ok = events.find((e) => e.event === "ok");
  assert.equal(ok?.["localHost"], "0");
  assert.equal(ok?.["remoteIp"], "127.0.0.1");
  assert.equal(typeof ok?.["remotePort"], "number");
});

test("--log json with -Q (the default): only the warnings", async () => {
  const missing = join(dir, "missing.cdb");
  const s = await startServer(ours("tcpserver"), [
    "--log",
    "json",
    "-RHl0",
    "-x",
    missing,
    "127.0.0.1",
    "0",
    "/bin/echo",
    "hi",
  ]);
  try {
    assert.equal(await talk(s.port), "");
    const [line] = await s.waitForLog(/"event":"warning"/);
    const events = parseJsonLog(s.log());
    assert.equal(events.length, 1, s.log());
    assert.equal(
      JSON.parse(line ?? "{}").msg,
      `dropping connection, unable to read ${missing}: file does not exist`,
    );
  } finally {
    await s.stop();
  }
});

test("--log json and -C: the reject event", async () => {
  const s = await startServer(ours("tcpserver"), [
    "-v",
    "--log",
    "json",
    "-C",
    "1",
    "-RHl0",
    "127.0.0.1",
    "0",
    "/bin/sh",
    "-c",
    "echo go; read x",
  ]);
  try {
    const held = hold(s.port, "127.0.0.1");
    assert.equal(await held.first, "go\n");
    assert.equal(await talk(s.port), "");
    const [line] = await s.waitForLog(/"event":"reject"/);
    const e = JSON.parse(line ?? "{}") as JsonEvent;
    assert.deepEqual([e["remoteIp"], e["count"], e["limit"]], ["127.0.0.1", 1, 1]);
    await held.finish();
    await s.waitForLog(/"event":"end"/);
  } finally {
    await s.stop();
  }
});

// ---- --workers ------------------------------------------------------------------------------

test("--workers 2: two processes accept on one port; SIGTERM to the first stops both", async () => {
  // Each worker's programs are spawned by its own ucspi-spawner: the worker is their
  // grandparent (field 4 of the spawner's /proc/PID/stat).
  const printWorker = "read -r _ _ _ worker _ </proc/$PPID/stat; echo $worker";
  const s = await startServer(
    ours("tcpserver"),
    ["--workers", "2", "-RHl0", "127.0.0.1", "0", "/bin/sh", "-c", printWorker],
    { env: SERVER_ENV },
  );
  const first = s.child.pid ?? 0;
  let pids = new Set<number>();
  try {
    for (let i = 0; i < 200; i++) pids.add(Number((await talk(s.port)).trim()));
    assert.equal(pids.size, 2, `parents seen: ${[...pids].join(", ")}`);
    assert.ok(pids.has(first), "the first process serves too");
    // The worker runs with the first one's V8 flags: the launcher's young-generation cap, and
    // Maglev's code built on the main thread (a process that ends while a compile thread
    // allocates could hang in its exit: Node issue 54918).
    const flags = (pid: number) =>
      readFileSync(`/proc/${pid}/cmdline`, "utf8")
        .split("\0")
        .filter((arg) => /^--(max-semi-space-size|no-maglev-)/.test(arg));
    const worker = [...pids].find((p) => p !== first) ?? 0;
    assert.deepEqual(flags(first), [
      "--max-semi-space-size=1",
      "--no-maglev-build-code-on-background",
      "--no-maglev-deopt-data-on-background",
    ]);
    assert.deepEqual(flags(worker), flags(first));
  } finally {
    const exit = await s.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
  }
  pids = new Set([...pids].filter((p) => p !== first));
  for (const worker of pids) {
    await waitFor(
      () => (alive(worker) ? undefined : true),
      10_000,
      () => `worker ${worker} still running after SIGTERM to ${first}`,
    );
  }
  await assert.rejects(talk(s.port), /ECONNREFUSED/);
});

test("--workers auto: one process per CPU this one may run on, the first and its workers", async () => {
  const s = await startServer(
    ours("tcpserver"),
    ["-c", "1000", "--workers", "auto", "-RHl0", "127.0.0.1", "0", "true"],
    { env: SERVER_ENV },
  );
  try {
    const workers = () =>
      childrenOf(s.child.pid ?? 0).filter((c) => /(^| )--worker=\d+ /.test(cmdline(c.pid)));
    const wanted = availableParallelism() - 1;
    await waitFor(
      () => (workers().length === wanted ? true : undefined),
      15_000,
      () => `${workers().length} workers, not ${wanted}`,
    );
  } finally {
    assert.deepEqual(await s.stop(), { code: 0, signal: null });
  }
});

test("-c 3 --workers 2: limits 2 and 1, never more than 3 children at once", async () => {
  const s = await startServer(
    ours("tcpserver"),
    [
      "-v",
      "-c",
      "3",
      "--workers",
      "2",
      "-RHl0",
      "127.0.0.1",
      "0",
      "/bin/sh",
      "-c",
      "echo go; read x",
    ],
    { env: SERVER_ENV },
  );
  try {
    await s.waitForLog(/^tcpserver: status: 0\/2$/);
    await s.waitForLog(/^tcpserver: status: 0\/1$/);
    let open = 0;
    let most = 0;
    const clients = Array.from({ length: 24 }, (_, i) => {
      const c = hold(s.port, `127.0.0.${10 + i}`);
      return c.first.then(async (line) => {
        assert.equal(line, "go\n");
        open++;
        most = Math.max(most, open);
        // Keep it a while, so that the others queue up behind the limits.
        await new Promise((r) => setTimeout(r, 30));
        open--;
        return c.finish();
      });
    });
    await Promise.all(clients);
    await s.waitForLog(/ end /, 24);
    // Two status lines per connection (up and down), one per worker at the start.
    await s.waitForLog(/^tcpserver: status: /, 2 * 24 + 2);
    assert.ok(most <= 3, `${most} children at once`);
    const statuses = s
      .log()
      .split("\n")
      .map((l) => /^tcpserver: status: (\d+)\/(\d+)$/.exec(l))
      .filter((m) => m !== null)
      .map((m) => [Number(m[1]), Number(m[2])] as const);
    assert.equal(statuses.length, 2 * 24 + 2);
    for (const [active, limit] of statuses) {
      assert.ok(limit === 1 || limit === 2, `limit ${limit}`);
      assert.ok(active <= limit, `status: ${active}/${limit}\n${s.log()}`);
    }
  } finally {
    await s.stop();
  }
});

// ---- systemd socket activation --------------------------------------------------------------

/** Our tcpserver started through the socket-activate fixture; host and port are never bound. */
function activated(program: string[], env: Record<string, string> = {}) {
  return startServer(
    SOCKET_ACTIVATE,
    ["-v", "-RHl0", "no-such-host.invalid", "nosuchservice", ...program],
    { env: { ...SERVER_ENV, SOCKET_ACTIVATE_EXEC: ours("tcpserver"), ...env } },
  );
}

test("socket activation: fd 3 is the listener; LISTEN_* never reach the child", async () => {
  const s = await activated([PRINT_ENV]);
  try {
    const prebound = Number(/^socket-activate: port (\d+)$/m.exec(s.log())?.[1]);
    assert.equal(s.port, prebound, "tcpserver -1 prints the pre-bound socket's port");
    const out = await talk(s.port);
    assert.match(out, /^PROTO=TCP$/m);
    assert.match(out, new RegExp(`^TCPLOCALPORT=${prebound}$`, "m"));
    await s.waitForLog(/ end \d+ status 0$/);
  } finally {
    await s.stop();
  }
  const env = await activated(["/usr/bin/env"]);
  try {
    const out = await talk(env.port);
    assert.doesNotMatch(out, /^LISTEN_/m);
    assert.match(out, /^PATH=/m);
  } finally {
    await env.stop();
  }
});

test("socket activation: the child gets fds 0, 1, 2 only (not the listener)", async () => {
  const s = await activated([PRINT_FDS]);
  try {
    const out = await talk(s.port);
    assert.deepEqual(
      out
        .trim()
        .split("\n")
        .map((l) => l.split(" ")[0]),
      ["0", "1", "2"],
    );
  } finally {
    await s.stop();
  }
});

test("socket activation for another pid (LISTEN_PID mismatch): host and port are used", async () => {
  const s = await startServer(SOCKET_ACTIVATE, ["-v", "-RHl0", "127.0.0.1", "0", "/usr/bin/env"], {
    env: { ...SERVER_ENV, SOCKET_ACTIVATE_EXEC: ours("tcpserver"), SOCKET_ACTIVATE_PID: "1" },
  });
  try {
    const prebound = Number(/^socket-activate: port (\d+)$/m.exec(s.log())?.[1]);
    assert.notEqual(s.port, prebound);
    const out = await talk(s.port);
    assert.doesNotMatch(out, /^LISTEN_/m);
  } finally {
    await s.stop();
  }
});

/** Our tcpserver under systemd-socket-activate with `listen` (its -l, -d, --accept, --fdname
 * options). It runs the program at the first connection or datagram, which `poke` sends once
 * the sockets are bound; resolves with tcpserver's exit and its stderr. With --accept it forks
 * tcpserver and goes on listening: it says how its child ended, and is then stopped. */
function underSystemd(listen: readonly string[], poke: () => void) {
  const child = spawn(
    "systemd-socket-activate",
    [...listen, ours("tcpserver"), "-v", "-RHl0", "0", "0", "/bin/true"],
    { stdio: ["ignore", "ignore", "pipe"], env: SERVER_ENV },
  );
  let stderr = "";
  let poked = false;
  child.stderr.setEncoding("latin1");
  child.stderr.on("data", (text: string) => {
    stderr += text;
    const bound = listen.filter((o) => o.startsWith("-l") || o === "--listen").length;
    if (!poked && (stderr.match(/^Listening on /gm) ?? []).length === bound) {
      poked = true;
      poke();
    }
    if (/^Child \d+ died with code \d+$/m.test(stderr)) child.kill("SIGTERM");
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  return new Promise<{ code: number | null; log: string }>((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      const forked = /^Child \d+ died with code (\d+)$/m.exec(stderr)?.[1];
      resolve({
        code: forked === undefined ? code : Number(forked),
        log: stderr
          .split("\n")
          .filter((l) => l.startsWith("tcpserver:"))
          .join("\n"),
      });
    }),
  );
}

function pokeTcp(port: number): () => void {
  return () => connect({ port, host: "127.0.0.1" }).on("error", () => {});
}

test("socket activation (systemd-socket-activate): two sockets, a UDP one, a UNIX one, Accept=yes are refused at start with one line, exit 111", async () => {
  const [a, b, udp] = [await freePort(), await freePort(), await freeUdpPort()];
  const two = await underSystemd(
    ["-l", `127.0.0.1:${a}`, "-l", `127.0.0.1:${b}`, "--fdname=web:admin"],
    pokeTcp(a),
  );
  assert.equal(two.code, 111);
  assert.equal(
    two.log,
    "tcpserver: fatal: unable to use the socket systemd passed (LISTEN_FDS): 2 sockets, where tcpserver serves one: give the socket unit one Listen line",
  );
  const datagram = await underSystemd(["-d", "-l", `127.0.0.1:${udp}`], () => {
    const sender = createSocket("udp4");
    sender.send("hello", udp, "127.0.0.1", () => sender.close());
  });
  assert.equal(datagram.code, 111);
  assert.equal(
    datagram.log,
    "tcpserver: fatal: unable to use the socket systemd passed (LISTEN_FDS): fd 3 is a UDP socket, not a listening TCP socket",
  );
  // Accept=yes: systemd accepts, and runs tcpserver on each connection.
  const perConnection = await freePort();
  const accepted = await underSystemd(
    ["--accept", "-l", `127.0.0.1:${perConnection}`],
    pokeTcp(perConnection),
  );
  assert.equal(accepted.code, 111);
  assert.equal(
    accepted.log,
    "tcpserver: fatal: unable to use the socket systemd passed (LISTEN_FDS): fd 3 is a TCP socket that is not listening (Accept=yes passes each connection: tcpserver needs Accept=no)",
  );
  const path = join(dir, "activated.sock");
  const unix = await underSystemd(["-l", path], () => connect({ path }).on("error", () => {}));
  assert.equal(unix.code, 111);
  assert.equal(
    unix.log,
    "tcpserver: fatal: unable to use the socket systemd passed (LISTEN_FDS): fd 3 is a UNIX socket, not a listening TCP socket",
  );
});

test("socket activation: an fd 3 that is a file, closed, or a TCP socket not listening is refused at start with one line, exit 111", async () => {
  // python3 plays systemd's part: fd 3 as given, LISTEN_FDS=1, LISTEN_PID its own, then exec.
  const launch = (setup: string, fds = "1") =>
    run(
      "python3",
      [
        "-c",
        `import os, socket, sys\n${setup}\nos.environ.update(LISTEN_FDS="${fds}", LISTEN_PID=str(os.getpid()))\nos.execv(sys.argv[1], sys.argv[1:])`,
        ours("tcpserver"),
        "-RHl0",
        "0",
        "0",
        "/bin/true",
      ],
      { env: SERVER_ENV },
    );
  const file = await launch("os.dup2(os.open('/etc/passwd', os.O_RDONLY), 3)");
  assert.deepEqual(
    [file.code, file.stderr],
    [
      111,
      "tcpserver: fatal: unable to use the socket systemd passed (LISTEN_FDS): fd 3: not a socket\n",
    ],
  );
  const closed = await launch("os.closerange(3, 64)");
  assert.equal(closed.code, 111);
  assert.match(
    closed.stderr,
    /^tcpserver: fatal: unable to use the socket systemd passed \(LISTEN_FDS\): fd 3: [^\n]+\n$/,
  );
  const bound = await launch(
    "s = socket.socket()\ns.bind(('127.0.0.1', 0))\nos.dup2(s.fileno(), 3)\nos.set_inheritable(3, True)",
  );
  assert.deepEqual(
    [bound.code, bound.stderr],
    [
      111,
      "tcpserver: fatal: unable to use the socket systemd passed (LISTEN_FDS): fd 3 is a TCP socket that is not listening (Accept=yes passes each connection: tcpserver needs Accept=no)\n",
    ],
  );
  // sd_listen_fds() fails on a count that is not one: so do we, where we bound host and port.
  for (const fds of ["abc", "-1", "1x"]) {
    const garbled = await launch("", fds);
    assert.deepEqual(
      [garbled.code, garbled.stderr],
      [
        111,
        `tcpserver: fatal: unable to use the socket systemd passed (LISTEN_FDS): '${fds}' is not a number of sockets\n`,
      ],
    );
  }
});

test("--worker-shares-listener (a worker's option) given by hand with an fd 3 that is closed or a file is refused with one line, exit 111", async () => {
  // Found by the random command lines: it said "internal error: Socket operation on
  // non-socket" (its fd 3 was Node's own when closed).
  for (const [args, setup] of [
    [["--worker-shares-listener", "", "-v", ""], "os.closerange(3, 64)"],
    [["--worker-shares-listener", "-RHl0", "0", "0", "/bin/true"], "os.closerange(3, 64)"],
    [
      ["--worker-shares-listener", "-RHl0", "0", "0", "/bin/true"],
      "os.dup2(os.open('/etc/passwd', os.O_RDONLY), 3)",
    ],
  ] as const) {
    const r = await run(
      "python3",
      [
        "-c",
        `import os, sys\n${setup}\nos.execv(sys.argv[1], sys.argv[1:])`,
        ours("tcpserver"),
      ].concat(args),
      { env: SERVER_ENV },
    );
    assert.deepEqual(
      [r.signal, r.code, r.stderr],
      [
        null,
        111,
        "tcpserver: fatal: unable to use the listening socket (--worker-shares-listener): fd 3: not a socket\n",
      ],
      args.join(" "),
    );
  }
});

test("socket activation with --workers 2 (systemd-socket-activate): the worker serves from systemd's socket too, so -c 2 serves two clients at once", async () => {
  const port = await freePort();
  const server = spawn(
    "systemd-socket-activate",
    ["-l", `127.0.0.1:${port}`, ours("tcpserver"), "-v", "-c2", "--workers", "2", "-RHl0"].concat([
      "0",
      "0",
      "/bin/sh",
      "-c",
      "echo hi; read x",
    ]),
    { stdio: ["ignore", "ignore", "pipe"], env: SERVER_ENV },
  );
  let log = "";
  server.stderr.setEncoding("latin1");
  server.stderr.on("data", (text: string) => (log += text));
  const exited = new Promise((resolve) => server.on("exit", resolve));
  try {
    await waitFor(() => /^Listening on /m.test(log) || undefined);
    // One connection per process (-c 2 over 2): the second is the worker's to serve.
    const first = hold(port, "127.0.0.1");
    assert.equal(await first.first, "hi\n");
    const second = hold(port, "127.0.0.1");
    assert.equal(await second.first, "hi\n");
    first.destroy();
    second.destroy();
    assert.doesNotMatch(log, /unable to bind/);
  } finally {
    server.kill("SIGTERM");
    await exited;
  }
});
