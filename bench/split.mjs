// npm run bench (part "split"): where a connection's CPU goes, process by process and thread by
// thread, ours against the peers that do the same job, in one run, interleaved rounds:
//   plain: `tcpserver $PROG` (ours, then djb's), c=1 and c=16;
//   TLS:   `tcpserver tlsd $PROG` (ours) and haproxy in front of djb's `tcpserver $PROG`,
//          full handshakes, ECDSA P-256, c=1 and c=16;
// with $PROG = /bin/echo hi and the harness's C load client (build/bench-harness). The CPU is
// read from /proc before and after the load: a process's own, each thread of ours, and the
// programs' (the spawning process's reaped children). The client's latencies (medians) say
// where the time goes: the handshake, its end to the first byte, the first byte to the end.
// BENCH_ROUNDS (default 3) rounds; SPLIT_MARKDOWN=FILE writes the table there.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, listening } from "./ports.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "bin");
const harness = join(root, "build", "bench-harness");
const loadgen = join(harness, "build", "loadgen");
const cert = join(harness, "certs", "ecdsa");
const rounds = Number(process.env.BENCH_ROUNDS ?? "3");
const program = ["/bin/echo", "hi"];
const limits = ["-R", "-H", "-l", "0", "-c", "10000", "-b", "1024"];
const tick = Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim());
const tmp = mkdtempSync(join(tmpdir(), "bench-split-"));
const env = { ...process.env, CERTFILE: `${cert}.crt`, KEYFILE: `${cert}.key` };

/** Each cell: the load, and the two servers measured side by side. */
const cells = [
  { name: "plain", tls: false, c: 1, n: 3000, servers: ["ours", "djb"] },
  { name: "plain", tls: false, c: 16, n: 3000, servers: ["ours", "djb"] },
  { name: "TLS", tls: true, c: 1, n: 2000, servers: ["ours", "haproxy"] },
  { name: "TLS", tls: true, c: 16, n: 3000, servers: ["ours", "haproxy"] },
];

/** utime, stime and the reaped children's time of a process (or a thread), in clock ticks. */
function times(path) {
  // After the command's name, which may hold spaces and parentheses: read once, so that the
  // fields are those of one reading.
  const stat = readFileSync(path, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    user: Number(fields[11]),
    sys: Number(fields[12]),
    children: Number(fields[13]) + Number(fields[14]),
  };
}

const comm = (path) => readFileSync(path, "utf8").trim();
const childrenOf = (pid) =>
  readdirSync(`/proc/${pid}/task`).flatMap((t) =>
    readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").split(" ").filter(Boolean).map(Number),
  );

/** What the parts of a server have used so far, in ticks, by role:
 *   loop:     the process that accepts (and does TLS): our tcpserver's main thread, haproxy's
 *             process (all its threads), djb's tcpserver when it serves alone;
 *   threads:  our tcpserver's other threads (handshake threads, V8's helpers);
 *   spawning: what starts the programs when that is another process: our ucspi-spawners, djb's
 *             tcpserver behind haproxy;
 *   programs: the programs, reaped by whoever spawned them. */
function snapshot(server) {
  const s = { loop: 0, loopUser: 0, threads: 0, spawning: 0, programs: 0 };
  if (server.kind === "ours") {
    for (const t of readdirSync(`/proc/${server.pid}/task`)) {
      const x = times(`/proc/${server.pid}/task/${t}/stat`);
      if (Number(t) === server.pid) {
        s.loop += x.user + x.sys;
        s.loopUser += x.user;
      } else s.threads += x.user + x.sys;
    }
    for (const child of childrenOf(server.pid)) {
      if (comm(`/proc/${child}/comm`) !== "ucspi-spawner") continue;
      const x = times(`/proc/${child}/stat`);
      s.spawning += x.user + x.sys;
      s.programs += x.children;
    }
    s.programs += times(`/proc/${server.pid}/stat`).children;
    return s;
  }
  const front = times(`/proc/${server.pid}/stat`);
  s.loop = front.user + front.sys;
  s.loopUser = front.user;
  if (server.kind === "djb") {
    s.programs = front.children;
    return s;
  }
  const back = times(`/proc/${server.backPid}/stat`);
  s.spawning = back.user + back.sys;
  s.programs = back.children;
  return s;
}

const started = [];
function run(file, args) {
  const child = spawn(file, args, { env, stdio: ["ignore", "ignore", "inherit"] });
  started.push(child);
  return child;
}

async function startServer(kind, tls) {
  const port = await freePort();
  if (kind === "ours") {
    const p = run(join(bin, "tcpserver"), [
      ...limits,
      "127.0.0.1",
      String(port),
      ...(tls ? [join(bin, "tlsd")] : []),
      ...program,
    ]);
    await listening(port);
    return { kind, port, pid: p.pid, procs: [p] };
  }
  if (kind === "djb") {
    const p = run("tcpserver", [...limits, "127.0.0.1", String(port), ...program]);
    await listening(port);
    return { kind, port, pid: p.pid, procs: [p] };
  }
  const back = await freePort();
  const config = join(tmp, `haproxy-${port}.cfg`);
  writeFileSync(
    config,
    [
      "global\n  maxconn 4000\n  nbthread 2",
      "defaults\n  mode tcp\n  timeout connect 10s\n  timeout client 120s\n  timeout server 120s",
      `frontend fe\n  bind 127.0.0.1:${port} ssl crt ${cert}.pem\n  default_backend be`,
      `backend be\n  server s1 127.0.0.1:${back}\n`,
    ].join("\n"),
  );
  const b = run("tcpserver", [...limits, "127.0.0.1", String(back), ...program]);
  await listening(back);
  const h = run("haproxy", ["-db", "-f", config]);
  await listening(port);
  return { kind, port, pid: h.pid, backPid: b.pid, procs: [h, b] };
}

function load(port, cell, n) {
  const r = spawnSync(
    loadgen,
    [
      "conn",
      "-p",
      String(port),
      "-n",
      String(n),
      "-c",
      String(cell.c),
      // loadgen's own bound is 10 s, which ended runs early where fork is dear (about 200
      // spawns a second); 80 s, with its I/O grace, stays inside this call's 120 s.
      "-t",
      "80",
      ...(cell.tls ? ["--tls"] : []),
    ],
    { encoding: "utf8", timeout: 120_000 },
  );
  if (r.status !== 0) throw new Error(`loadgen: ${r.stderr || r.status}`);
  const result = JSON.parse(r.stdout);
  if (result.ok !== n) throw new Error(`loadgen: ${result.ok} of ${n} connections ok`);
  return result;
}

async function measure(kind, cell) {
  const server = await startServer(kind, cell.tls);
  try {
    load(server.port, cell, 300); // warm: code compiled, helpers and threads started
    const before = snapshot(server);
    const result = load(server.port, cell, cell.n);
    // The last programs reaped.
    await new Promise((r) => setTimeout(r, 200));
    const after = snapshot(server);
    const us = (key) => ((after[key] - before[key]) * 1e6) / tick / cell.n;
    return {
      rate: result.rate_per_s,
      loop: us("loop"),
      loopUser: us("loopUser"),
      threads: us("threads"),
      spawning: us("spawning"),
      programs: us("programs"),
      hs: result.hs_p50_ms,
      fb: result.fb_p50_ms,
      total: result.total_p50_ms,
    };
  } finally {
    for (const p of server.procs) p.kill();
    await Promise.all(
      server.procs.map((p) => (p.exitCode === null ? new Promise((r) => p.once("exit", r)) : 0)),
    );
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

try {
  const results = cells.map(() => ({}));
  for (let round = 0; round < rounds; round++)
    for (const [i, cell] of cells.entries())
      for (const kind of cell.servers) {
        const r = await measure(kind, cell);
        (results[i][kind] ??= []).push(r);
        console.error(
          `split: round ${round + 1} ${cell.name} c=${cell.c} ${kind}: ${Math.round(r.rate)}/s`,
        );
      }
  const name = { ours: "ours", djb: "djb's tcpserver", haproxy: "haproxy → djb's tcpserver" };
  const lines = [
    `${rounds} interleaved rounds, medians; µs of CPU per connection (user + system). \`${program.join(" ")}\` per connection.`,
    "",
    "| load | server | conn/s | accepting process (of it user) | its other threads | spawning process | programs | total | p50 ms: handshake / first byte / end |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const [i, cell] of cells.entries())
    for (const kind of cell.servers) {
      const rs = results[i][kind];
      const m = (key) => median(rs.map((r) => r[key]));
      const us = (key) => String(Math.round(m(key)));
      // Other threads are ours only; djb's tcpserver serving alone spawns in its own process.
      const threads = kind === "ours" ? us("threads") : "-";
      const spawning = kind === "djb" ? "-" : us("spawning");
      const total = ["loop", "threads", "spawning", "programs"].reduce((sum, k) => sum + m(k), 0);
      lines.push(
        `| ${cell.name}${cell.tls ? " ECDSA" : ""} c=${cell.c} | ${name[kind]} | ${Math.round(m("rate"))} | ${us("loop")} (${us("loopUser")}) | ${threads} | ${spawning} | ${us("programs")} | ${Math.round(total)} | ${cell.tls ? m("hs").toFixed(2) : "-"} / ${m("fb").toFixed(2)} / ${m("total").toFixed(2)} |`,
      );
    }
  lines.push(
    "",
    "The accepting process: our tcpserver's main thread (accept, the chain's JavaScript, the TLS engine's steps on the loop), haproxy (its threads), djb's tcpserver serving alone (accept and fork). Its other threads: ours only (handshake threads, V8's helpers). The spawning process: our ucspi-spawners, and djb's tcpserver behind haproxy. The programs: what the spawning process reaped.",
  );
  console.log(`\n${lines.join("\n")}`);
  if (process.env.SPLIT_MARKDOWN)
    writeFileSync(process.env.SPLIT_MARKDOWN, `${lines.join("\n")}\n`);
} finally {
  for (const p of started) if (p.exitCode === null) p.kill();
  rmSync(tmp, { recursive: true, force: true });
}
