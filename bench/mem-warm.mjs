// node bench/mem-warm.mjs (or BENCH_ONLY=mem-warm npm run bench): steady-state memory per idle
// TLS connection, our tcpserver + tlsd (in-process) beside stunnel's daemon in exec= mode, both
// measured the same way, in interleaved rounds, each round on fresh servers:
//   1. first hold (what the harness's part `mem` measures): hold/release 10 connections, let
//      the tree settle, measure, hold 100 TLS connections, measure;
//   2. warm-up: MEM_WARM_HANDSHAKES (500) full handshakes (each echoes a byte through `cat`,
//      8 at a time, closed again), then one more hold/release of 100;
//   3. steady state: wait MEM_WARM_QUIET (10) s, measure idle, hold 100 TLS connections (each
//      completes its handshake, then stays idle), measure, measure again MEM_WARM_LATER (10) s
//      later, hold 100 more on top and measure (connections 101-200: beyond the most the server
//      has held, so memory that an earlier hold freed cannot absorb them), release all, measure
//      idle again (what the connections left behind).
// A measurement: the sum of Pss (and Rss) in /proc/PID/smaps_rollup over the server and all its
// descendants, taken once the tree's process count and RSS have stopped changing (as the
// harness's settle()); "w/o cat": without the `cat` children (the harness's exclude_comm). Per
// connection: the growth divided by the connections held; USS (Private_Clean + Private_Dirty,
// w/o cat) beside it, which no other process's mappings move. The held connections come from
// bench/hold.mjs (Node's TLS client, from 127.0.0.2) run on a private copy of the node binary:
// on the same file it would share the binary's pages with our server, whose PSS then falls.
// Servers (ECDSA P-256 certificate from bin/tls-keygen, the harness's default key type):
//   ours     bin/tcpserver -R -H -l 0 -c 10000 -b 1024 127.0.0.1 PORT tlsd --engine native cat
//            (the TLS engine in our addon, tlsd's default)
//   ours-node  the same with tlsd --engine node (node:tls)
//   stunnel  stunnel4 daemon, the harness's servers/stunnel.sh exec configuration (foreground,
//            accept=, exec=/bin/cat, execArgs=cat, debug=3, its default protocol range)
// The servers run without NODE_EXTRA_CA_CERTS (as bench/smtp.mjs: a daemon's environment does
// not have it). Knobs: MEM_WARM_ROUNDS (3, at most 5), MEM_WARM_N (100, at most 1000),
// MEM_WARM_HANDSHAKES (500, at most 5000), MEM_WARM_QUIET, MEM_WARM_LATER (seconds, at most
// 60), MEM_WARM_SERVERS (ours,ours-node,stunnel). The whole run is bounded by MEM_WARM_TIMEOUT (1200 s).
// Results: a markdown table on stdout and bench/results/mem-warm-STAMP.{json,md,log}.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { chmodSync, copyFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect, createServer } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "./ports.mjs";
import { onPrivateNode, serversNode as node, sharingWarnings } from "./private-node.mjs";

onPrivateNode();

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "bin");
const bounded = (name, dflt, max) => {
  const v = Number(process.env[name] ?? dflt);
  return Number.isFinite(v) && v >= 0 ? Math.min(v, max) : dflt;
};
const rounds = Math.max(1, bounded("MEM_WARM_ROUNDS", 3, 5));
const N = Math.max(1, bounded("MEM_WARM_N", 100, 1000));
const W = bounded("MEM_WARM_HANDSHAKES", 500, 5000);
const quiet = bounded("MEM_WARM_QUIET", 10, 60);
const later = bounded("MEM_WARM_LATER", 10, 60);
const timeout = bounded("MEM_WARM_TIMEOUT", 1200, 3600);
const wanted = (process.env.MEM_WARM_SERVERS ?? "ours,ours-node,stunnel").split(",");

const out = join(root, "bench", "results");
mkdirSync(out, { recursive: true });
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").replace(/\..*/, "");
const base = join(out, `mem-warm-${stamp}`);
const log = createWriteStream(`${base}.log`);
const tmp = mkdtempSync(join(tmpdir(), "ucspi-mem-warm-"));
const children = new Set(); // { child, name, exited }: every process group we started

const say = (text) => {
  console.error(`mem-warm: ${text}`);
  log.write(`# ${new Date().toISOString()} ${text}\n`);
};

// ---------------------------------------------------------------- processes and memory

/** Starts a command in a process group of its own (so that it and its children can be ended). */
function start(name, file, args, env = process.env) {
  const child = spawn(file, args, { env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const entry = { child, name, exited: null };
  children.add(entry);
  const tag = (b) => log.write(`[${name}] ${b}`);
  child.stdout.on("data", tag);
  child.stderr.on("data", tag);
  child.once("exit", (code, signal) => {
    entry.exited = { code, signal };
    children.delete(entry);
  });
  child.once("error", (e) => {
    entry.exited = { error: e.message };
    children.delete(entry);
  });
  return entry;
}

/** Ends a process group: SIGTERM, then SIGKILL after 3 s. */
async function stop(entry) {
  if (entry.exited) return;
  const kill = (sig) => {
    try {
      process.kill(-entry.child.pid, sig);
    } catch {
      // already gone
    }
  };
  kill("SIGTERM");
  const t = setTimeout(() => kill("SIGKILL"), 3000);
  if (!entry.exited) await once(entry.child, "exit").catch(() => {});
  clearTimeout(t);
  kill("SIGKILL"); // whatever of the group is left (a `cat` whose parent is gone)
}

function readProcs() {
  const procs = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      procs.set(Number(d), { comm, state: f[0], ppid: Number(f[1]) });
    } catch {
      // gone meanwhile
    }
  }
  return procs;
}

/** Sums Rss/Pss (KiB) over the tree under pid; *_x leaves out processes named excludeComm. */
function treeMem(pid, excludeComm = "cat") {
  const procs = readProcs();
  const kids = new Map();
  for (const [p, { ppid }] of procs) kids.set(ppid, [...(kids.get(ppid) ?? []), p]);
  const tree = new Set();
  const stack = procs.has(pid) ? [pid] : [];
  while (stack.length) {
    const p = stack.pop();
    if (tree.has(p)) continue;
    tree.add(p);
    stack.push(...(kids.get(p) ?? []));
  }
  const m = { procs: 0, rss_kb: 0, pss_kb: 0, rss_kb_x: 0, pss_kb_x: 0, comms: {} };
  Object.assign(m, { uss_kb: 0, uss_kb_x: 0, pss_anon_kb_x: 0 });
  for (const p of tree) {
    const { comm, state } = procs.get(p);
    if (state === "Z") continue;
    let text;
    try {
      text = readFileSync(`/proc/${p}/smaps_rollup`, "utf8");
    } catch {
      continue;
    }
    const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text)?.[1] ?? 0);
    const rss = field("Rss");
    const pss = field("Pss");
    const uss = field("Private_Clean") + field("Private_Dirty");
    m.procs++;
    m.rss_kb += rss;
    m.pss_kb += pss;
    m.uss_kb += uss;
    if (comm !== excludeComm) {
      m.rss_kb_x += rss;
      m.pss_kb_x += pss;
      m.uss_kb_x += uss;
      m.pss_anon_kb_x += field("Pss_Anon");
    }
    m.comms[comm] = (m.comms[comm] ?? 0) + 1;
  }
  return m;
}

/** As the harness's settle(): until the process count and RSS (in 256 KiB) stop changing. */
async function settle(pid, { expectProcs = 0, atMost, maxS = 10 } = {}) {
  const end = Date.now() + maxS * 1000;
  let last = null;
  let stable = 0;
  await sleep(300);
  for (;;) {
    const m = treeMem(pid);
    const key = `${m.procs}/${Math.floor(m.rss_kb / 256)}`;
    stable = key === last ? stable + 1 : 0;
    last = key;
    const count = m.procs >= expectProcs && (atMost === undefined || m.procs <= atMost);
    if ((stable >= 3 && count) || Date.now() > end) return m;
    await sleep(250);
  }
}

/** A free port below the kernel's ephemeral range (32768 and up here), for hold.mjs to say it
 * is ready on: a port from the ephemeral range could meanwhile become the local port of one of
 * the run's own client connections, and the listen then fails (EADDRINUSE). */
async function readyPort() {
  for (let tries = 0; tries < 100; tries++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const s = createServer();
    const listening = await new Promise((resolve) => {
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => resolve(true));
    });
    if (!listening) continue;
    s.close();
    await once(s, "close");
    return port;
  }
  throw new Error("no free port between 20000 and 32000");
}

function probe(port) {
  return new Promise((resolve) => {
    const s = netConnect({ port, host: "127.0.0.1" });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** As the harness's wait_ready(): until the port accepts (a plain connect, closed at once). */
async function waitReady(server, port, secs = 20) {
  const end = Date.now() + secs * 1000;
  while (!(await probe(port))) {
    if (server.exited) throw new Error(`${server.name} exited: ${JSON.stringify(server.exited)}`);
    if (Date.now() > end) throw new Error(`${server.name}: port ${port} not ready after ${secs} s`);
    await sleep(20);
  }
}

// ---------------------------------------------------------------- load

/** Holds n TLS connections through bench/hold.mjs; resolves once all are up. */
async function hold(port, n) {
  const ready = await readyPort();
  const h = start(`hold-${n}`, clientNode, [
    join(root, "bench", "hold.mjs"),
    ...[port, n, ready, 300].map(String),
    "tls",
  ]);
  const end = Date.now() + 90_000;
  while (!(await probe(ready))) {
    if (h.exited) throw new Error(`hold ${n}: exited ${JSON.stringify(h.exited)}`);
    if (Date.now() > end) {
      await stop(h);
      throw new Error(`hold ${n}: not all connections up after 90 s`);
    }
    await sleep(100);
  }
  return h;
}

/** One full handshake (no session reuse), a byte echoed through `cat`, closed. */
function handshake(port) {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ port, host: "127.0.0.1", rejectUnauthorized: false });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error("handshake + echo: no answer in 10 s"));
    }, 10_000);
    s.once("secureConnect", () => {
      const info = { protocol: s.getProtocol(), cipher: s.getCipher()?.name };
      s.write("x");
      s.once("data", () => {
        clearTimeout(t);
        s.end();
        s.destroy();
        resolve(info);
      });
    });
    s.once("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

async function handshakes(port, count, concurrency = 8) {
  let next = 0;
  let info = null;
  const worker = async () => {
    while (next < count) {
      next++;
      info = await handshake(port);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return info;
}

// ---------------------------------------------------------------- servers

// hold.mjs runs on a copy of our node binary: a process running the same file shares its pages
// with our server, whose PSS would then fall by megabytes while the connections are held.
const clientNode = join(tmp, "node-client");
const cert = join(tmp, "cert.pem");
const key = join(tmp, "key.pem");

/** Our tcpserver + tlsd in-process, with tlsd's TLS engine `engine`. */
function ours(name, engine) {
  return async (port) => {
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
    env.CERTFILE = cert;
    env.KEYFILE = key;
    delete env.NODE_EXTRA_CA_CERTS;
    delete env.UCSPI_TLS_ENGINE;
    const args = ["-R", "-H", "-l", "0", "-c", "10000", "-b", "1024", "127.0.0.1", port];
    const tlsd = ["tlsd", "--engine", engine, "cat"];
    return start(name, join(bin, "tcpserver"), [...args, ...tlsd], env);
  };
}

const SERVERS = {
  ours: { label: "ours: tcpserver + tlsd (in-process)", start: ours("ours", "native") },
  "ours-node": {
    label: "ours: tcpserver + tlsd --engine node",
    start: ours("ours-node", "node"),
  },
  stunnel: {
    label: "stunnel4 daemon, exec=/bin/cat",
    async start(port) {
      // The configuration of the harness's servers/stunnel.sh, mode exec, with PROG=cat.
      const conf = join(tmp, `stunnel-${port}.conf`);
      const lines = ["foreground = yes", "pid =", "syslog = no", "debug = 3", "[svc]"];
      lines.push(`cert = ${cert}`, `key = ${key}`, `accept = 127.0.0.1:${port}`);
      lines.push("exec = /bin/cat", "execArgs = cat");
      writeFileSync(conf, lines.join("\n") + "\n");
      const env = { ...process.env };
      delete env.NODE_EXTRA_CA_CERTS;
      return start("stunnel", "stunnel", [conf], env);
    },
  },
};

const kib = (a, b, n, field) => (b[field] - a[field]) / n;
const perConn = (a, b, n) => ({
  pss: kib(a, b, n, "pss_kb"),
  pss_x: kib(a, b, n, "pss_kb_x"),
  rss: kib(a, b, n, "rss_kb"),
  rss_x: kib(a, b, n, "rss_kb_x"),
  uss_x: kib(a, b, n, "uss_kb_x"),
  pss_anon_x: kib(a, b, n, "pss_anon_kb_x"),
});

/** Holds n connections, measures once settled (and optionally again `laterS` s on), releases. */
// With more, n more are held on top of those and measured too: connections beyond the most the
// server has held before, which no memory freed by an earlier hold can absorb.
async function measuredHold(server, port, n, { laterS = 0, more = false } = {}) {
  const pid = server.child.pid;
  const before = treeMem(pid).procs;
  const holds = [await hold(port, n)];
  try {
    const held = await settle(pid, { expectProcs: before + n });
    let heldLater = null;
    if (laterS > 0) {
      await sleep(laterS * 1000);
      heldLater = treeMem(pid);
    }
    let heldMore = null;
    if (more) {
      holds.push(await hold(port, n));
      heldMore = await settle(pid, { expectProcs: before + 2 * n });
    }
    return { held, heldLater, heldMore };
  } finally {
    await Promise.all(holds.map(stop));
  }
}

/** After a release: until the `cat`s are gone again and the tree is still. */
const released = (pid, procs) => settle(pid, { atMost: procs, maxS: 20 });

async function runOne(which, round) {
  const spec = SERVERS[which];
  const port = await freePort();
  const server = await spec.start(String(port));
  const pid = server.child.pid;
  const r = { round, server: which, label: spec.label };
  try {
    await waitReady(server, port);
    await sleep(300);
    const baseProcs = (await settle(pid, { maxS: 5 })).procs; // the server alone
    // 1. First hold, as the harness's `mem`: 10 held for 0.5 s, then 100.
    const h10 = await hold(port, 10);
    await sleep(500);
    await stop(h10);
    await sleep(500);
    const cold0 = await released(pid, baseProcs);
    const cold = await measuredHold(server, port, N);
    r.first = { idle: cold0, held: cold.held, per_conn: perConn(cold0, cold.held, N) };
    await released(pid, baseProcs);
    // 2. Warm-up: W full handshakes, one more hold/release of N.
    const t0 = Date.now();
    r.tls = W > 0 ? await handshakes(port, W) : null;
    r.warmup_s = (Date.now() - t0) / 1000;
    await stop(await hold(port, N));
    await released(pid, baseProcs);
    // 3. Steady state.
    await sleep(quiet * 1000);
    const idle = await settle(pid, { atMost: baseProcs });
    const warm = await measuredHold(server, port, N, { laterS: later, more: true });
    const after = await released(pid, baseProcs);
    r.warm = {
      idle,
      held: warm.held,
      held_later: warm.heldLater,
      idle_after: after,
      per_conn: perConn(idle, warm.held, N),
      per_conn_later: warm.heldLater ? perConn(idle, warm.heldLater, N) : null,
      held_more: warm.heldMore,
      per_conn_more: perConn(warm.heldLater ?? warm.held, warm.heldMore, N),
      left_behind_pss_kb: after.pss_kb - idle.pss_kb,
    };
    if (server.exited) throw new Error(`${which} exited: ${JSON.stringify(server.exited)}`);
    return r;
  } finally {
    await stop(server);
  }
}

// ---------------------------------------------------------------- run

const median = (xs) => {
  const s = xs.filter((x) => x !== null && x !== undefined).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

let failed = false;
const deadline = setTimeout(async () => {
  say(`fatal: not done after ${timeout} s; stopping`);
  failed = true;
  await Promise.all([...children].map(stop));
  rmSync(tmp, { recursive: true, force: true });
  process.exit(1);
}, timeout * 1000);
for (const sig of ["SIGINT", "SIGTERM"])
  process.once(sig, async () => {
    await Promise.all([...children].map(stop));
    rmSync(tmp, { recursive: true, force: true });
    process.exit(130);
  });

try {
  // Before any server runs: another program on our servers' node binary lowers their PSS.
  for (const warning of sharingWarnings()) say(`warning: ${warning}`);
  const names = wanted.filter((w) => SERVERS[w]);
  if (!names.length) throw new Error(`no known server in MEM_WARM_SERVERS (${wanted})`);
  if (names.includes("stunnel")) execFileSync("stunnel", ["-version"], { stdio: "ignore" });
  copyFileSync(node, clientNode);
  chmodSync(clientNode, 0o755);
  // ECDSA P-256, self-signed (the harness's default key type).
  execFileSync(join(bin, "tls-keygen"), ["self-signed", cert, key], { stdio: "pipe" });

  const load0 = loadavg();
  const t0 = Date.now();
  const runs = [];
  for (let round = 0; round < rounds; round++) {
    const order = names.map((_, i) => names[(i + round) % names.length]);
    for (const which of order) {
      const r = await runOne(which, round);
      runs.push(r);
      const f = r.first.per_conn;
      const w = r.warm.per_conn;
      say(
        `round ${round + 1}/${rounds} ${which}: first hold ${f.pss.toFixed(1)} KiB/conn ` +
          `(${f.pss_x.toFixed(1)} w/o cat), warm ${w.pss.toFixed(1)} (${w.pss_x.toFixed(1)} w/o cat), ` +
          `${later} s later ${r.warm.per_conn_later?.pss.toFixed(1)}, next ${N} ` +
          `${r.warm.per_conn_more.pss.toFixed(1)} (${r.warm.per_conn_more.pss_x.toFixed(1)} w/o cat); idle ` +
          `${(r.warm.idle.pss_kb / 1024).toFixed(1)} MiB, left behind ${r.warm.left_behind_pss_kb} KiB; ` +
          `${r.tls?.protocol} ${r.tls?.cipher}, ${W} handshakes in ${r.warmup_s.toFixed(1)} s`,
      );
    }
  }

  const summary = names.map((which) => {
    const mine = runs.filter((r) => r.server === which);
    const med = (f) => median(mine.map(f));
    const range = (f) => [Math.min(...mine.map(f)), Math.max(...mine.map(f))];
    return {
      server: which,
      label: SERVERS[which].label,
      rounds: mine.length,
      first_pss_kb_per_conn: med((r) => r.first.per_conn.pss),
      first_pss_kb_per_conn_excl_cat: med((r) => r.first.per_conn.pss_x),
      warm_pss_kb_per_conn: med((r) => r.warm.per_conn.pss),
      warm_pss_kb_per_conn_range: range((r) => r.warm.per_conn.pss),
      warm_pss_kb_per_conn_excl_cat: med((r) => r.warm.per_conn.pss_x),
      warm_pss_kb_per_conn_excl_cat_range: range((r) => r.warm.per_conn.pss_x),
      warm_rss_kb_per_conn: med((r) => r.warm.per_conn.rss),
      warm_uss_kb_per_conn_excl_cat: med((r) => r.warm.per_conn.uss_x),
      first_uss_kb_per_conn_excl_cat: med((r) => r.first.per_conn.uss_x),
      warm_pss_anon_kb_per_conn_excl_cat: med((r) => r.warm.per_conn.pss_anon_x),
      warm_later_pss_kb_per_conn: med((r) => r.warm.per_conn_later?.pss),
      more_pss_kb_per_conn: med((r) => r.warm.per_conn_more.pss),
      more_pss_kb_per_conn_range: range((r) => r.warm.per_conn_more.pss),
      more_pss_kb_per_conn_excl_cat: med((r) => r.warm.per_conn_more.pss_x),
      more_uss_kb_per_conn_excl_cat: med((r) => r.warm.per_conn_more.uss_x),
      held_pss_kb: med((r) => r.warm.held.pss_kb),
      held_more_pss_kb: med((r) => r.warm.held_more.pss_kb),
      warm_later_pss_kb_per_conn_excl_cat: med((r) => r.warm.per_conn_later?.pss_x),
      idle_pss_kb: med((r) => r.warm.idle.pss_kb),
      first_idle_pss_kb: med((r) => r.first.idle.pss_kb),
      left_behind_pss_kb: med((r) => r.warm.left_behind_pss_kb),
      tls: mine[0].tls,
    };
  });

  const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : "-");
  const mib = (x) => f1(x / 1024);
  const lines = [
    `Memory per idle TLS connection: ${N} connections held (full handshake, then idle; each ` +
      `with a \`cat\`), growth of the PSS of the server's process tree / ${N}, and in ` +
      `parentheses without the \`cat\`s. First hold: as the harness's \`mem\`. Warm: after ${W} ` +
      `full handshakes and a hold/release of ${N}, ${quiet} s quiet; +${later} s: the same hold ` +
      `${later} s on; conns ${N + 1}-${2 * N}: ${N} more held on top (beyond the most held ` +
      `before). USS: private pages of the server w/o \`cat\`. Medians of ${rounds} ` +
      `interleaved rounds, fresh servers each round, [min..max]. Load average ` +
      `${load0.map((l) => l.toFixed(2)).join(" ")} at the start.`,
    "",
    `| server | first hold | warm [min..max] | warm +${later} s | warm, conns ${N + 1}-${2 * N} [min..max] ` +
      `| USS KiB/conn: first / warm / ${N + 1}-${2 * N} | PSS MiB: idle first / idle warm / ${N} / ${2 * N} held ` +
      `| left behind KiB | TLS |`,
    "|---|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const s of summary) {
    const [a, b] = s.warm_pss_kb_per_conn_range;
    const [c, d] = s.more_pss_kb_per_conn_range;
    lines.push(
      `| ${s.label} | ${f1(s.first_pss_kb_per_conn)} (${f1(s.first_pss_kb_per_conn_excl_cat)}) ` +
        `| ${f1(s.warm_pss_kb_per_conn)} (${f1(s.warm_pss_kb_per_conn_excl_cat)}) [${f1(a)}..${f1(b)}] ` +
        `| ${f1(s.warm_later_pss_kb_per_conn)} (${f1(s.warm_later_pss_kb_per_conn_excl_cat)}) ` +
        `| ${f1(s.more_pss_kb_per_conn)} (${f1(s.more_pss_kb_per_conn_excl_cat)}) [${f1(c)}..${f1(d)}] ` +
        `| ${f1(s.first_uss_kb_per_conn_excl_cat)} / ${f1(s.warm_uss_kb_per_conn_excl_cat)} / ` +
        `${f1(s.more_uss_kb_per_conn_excl_cat)} ` +
        `| ${mib(s.first_idle_pss_kb)} / ${mib(s.idle_pss_kb)} / ${mib(s.held_pss_kb)} / ${mib(s.held_more_pss_kb)} ` +
        `| ${f1(s.left_behind_pss_kb)} | ${s.tls?.protocol ?? "-"} ${s.tls?.cipher ?? ""} |`,
    );
  }
  const ref = summary.find((s) => s.server === "stunnel");
  for (const ours of summary.filter((s) => s.server.startsWith("ours"))) {
    if (!ref) break;
    lines.push("");
    const ratio = (k) =>
      `${ours.server} / stunnel = ${(ours[k] / ref[k]).toFixed(2)} (${f1(ours[k])} vs ${f1(ref[k])} KiB/conn` +
      `; target <= stunnel: ${ours[k] <= ref[k] ? "met" : "NOT met"})`;
    lines.push(`- first hold: ${ratio("first_pss_kb_per_conn")}`);
    lines.push(`- warm: ${ratio("warm_pss_kb_per_conn")}`);
    lines.push(`- warm, conns ${N + 1}-${2 * N}: ${ratio("more_pss_kb_per_conn")}`);
    const idle = ours.idle_pss_kb / 1024;
    lines.push(
      `- warm idle tree: ${f1(idle)} MiB (target <= 30: ${idle <= 30 ? "met" : "NOT met"})`,
    );
  }
  const md = lines.join("\n") + "\n";
  console.log(md);
  writeFileSync(`${base}.md`, md);
  writeFileSync(
    `${base}.json`,
    JSON.stringify(
      {
        when: new Date(t0).toISOString(),
        wall_s: (Date.now() - t0) / 1000,
        n: N,
        handshakes: W,
        quiet_s: quiet,
        later_s: later,
        rounds,
        loadavg_start: load0,
        loadavg_end: loadavg(),
        node: process.version,
        stunnel: spawnSync("stunnel", ["-version"], { encoding: "utf8" })
          .stderr?.split("\n")
          .find((l) => l.startsWith("stunnel")),
        summary,
        runs,
      },
      null,
      2,
    ) + "\n",
  );
  say(`results in ${base}.{md,json,log}`);
} catch (error) {
  say(`fatal: ${error.stack ?? error.message}`);
  failed = true;
} finally {
  clearTimeout(deadline);
  await Promise.all([...children].map(stop));
  log.end();
  rmSync(tmp, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
