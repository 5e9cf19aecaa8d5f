// node bench/smtp.mjs (or BENCH_ONLY=smtp npm run bench): SMTP sessions per second through
// starttls-wrapper (issue 5), beside the same sessions over implicit TLS and over plaintext,
// all with the same backend, bench/smtp/sink.c (a tiny SMTP sink in C, built here with cc into
// build/bench/), measured side by side in one run, in interleaved rounds:
//   plain            tcpserver sink                                  (no TLS)
//   implicit         tcpserver tlsd sink                             (TLS from the first byte)
//   starttls-remote  tcpserver starttls-wrapper 127.0.0.1 SVC sink   (the hand-over)
//                    + tcpserver --proxy SVC tlsd sink
//   starttls-local   tcpserver starttls-wrapper sink, CERTFILE/KEYFILE (TLS in the wrapper)
//   starttls-local -k  the same with -k: the server that answered in plaintext goes on behind
//                    TLS, one server a session (skarnet's model), not a fresh one
//   ..., node:tls    the two STARTTLS rows again, tlsd on node:tls rather than its default,
//                    the native TLS engine (UCSPI_TLS_ENGINE=node for the tcpserver that
//                    runs tlsd)
// Beside them, when they are installed, the chains ours replaces, with the same backend, the
// same certificate and key, and the same client:
//   skarnet          s6-tcpserver s6-tcpserver-access -D -H -R -l 0 s6-ucspitlsd
//                    smtpd-starttls-proxy-io sink (s6-networking's documented STARTTLS chain;
//                    -D: s6-tlsd-io leaves Nagle on, as our tcpserver's default -d does, and
//                    our tlsd/starttls-wrapper turn it off themselves). From SKARNET_PREFIX
//                    (default /work/peers/skarnet, s6-networking built with BearSSL); skipped
//                    with one line when it is not there.
//   stunnel          stunnel4 (STUNNEL, default /usr/bin/stunnel4) "protocol = smtp" in
//                    server mode, "exec" the sink: it waits 200 ms for the client to speak
//                    first (its implicit-TLS detection) before it relays the greeting, so its
//                    rate is bounded by that wait, not by its CPU.
// A session (bench/smtp/load.mjs): greeting, EHLO, [STARTTLS, handshake, EHLO,] MAIL, RCPT,
// DATA with a ~0.5 KB message, QUIT; the client verifies the server's certificate (a CA and a
// leaf made by bin/tls-keygen, ECDSA P-256) and fails loudly on any protocol error. Every TLS
// session is a full handshake. Load: concurrency 1 and 8 (SMTP_CONCURRENCY), each measurement
// bounded by SMTP_COUNT sessions (default 1500) and SMTP_SECONDS (default 2).
// SMTP_VARIANTS ("default", or "default,-D" to compare): tcpserver as the docs run it (djb's
// default -d), and with -D (TCP_NODELAY). tlsd and starttls-wrapper turn Nagle off on TLS
// connections themselves; before they did, the first TLS record after the session tickets
// waited for the client's delayed ACK (~40 ms a session), which "-D" showed.
// Server CPU per session: utime+stime+cutime+cstime, from /proc/PID/stat before and after each
// measurement, of the server's whole process tree: the server process and every descendant
// alive at that moment (a process that exits in between is in its reaper's cutime/cstime).
// The tree, not only the server process: our tcpserver spawns through long-lived
// ucspi-spawner children, which reap the programs, so their CPU (and the programs') is in
// no cutime of tcpserver's until they exit (counting tcpserver's process alone, as this
// bench did before, left it out). In skarnet's chain the connection's process (s6-ucspitlsd,
// then the sink) forks s6-tlsd-io and smtpd-starttls-proxy-io, which outlive it and would be
// reparented to init, out of the tree, their CPU lost: so s6-tcpserver runs under
// bench/smtp/reaper.c (PR_SET_CHILD_SUBREAPER), which reaps them, and the tree is the
// reaper's. stunnel: its process (threads, and the sinks it reaps). The servers stay
// up for the whole run (as a daemon does); BENCH_ROUNDS (default 3) rounds, each visiting every
// configuration in a rotated order. Results: a markdown table on stdout and
// bench/results/smtp-STAMP.{json,md,log} (the .log: the servers' stderr). SMTP_BACKEND="prog
// args" runs another backend instead of the sink (qmail-smtpd, say: Debian 12 has no qmail);
// with it, QMAILQUEUE (unless set) is bench/smtp/queue-sink.c, which takes the message and keeps
// nothing, so qmail-smtpd's sessions end with "250 ok" and no queue is needed.
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./ports.mjs";
import { serversNode as node } from "./private-node.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "bin");
const rounds = Number(process.env.BENCH_ROUNDS ?? "3");
const seconds = process.env.SMTP_SECONDS ?? "2";
const count = process.env.SMTP_COUNT ?? "1500";
const concurrencies = (process.env.SMTP_CONCURRENCY ?? "1,8").split(",").map(Number);
// "default": tcpserver as the docs run it (Nagle on, djb's -d); "-D": TCP_NODELAY.
const variants = (process.env.SMTP_VARIANTS ?? "default").split(",");
const skarnetPrefix = process.env.SKARNET_PREFIX ?? "/work/peers/skarnet";
const stunnel = process.env.STUNNEL ?? "/usr/bin/stunnel4";
const TICK_MS = 1000 / Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim() || 100);

const out = join(root, "bench", "results");
mkdirSync(out, { recursive: true });
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").replace(/\..*/, "");
const base = join(out, `smtp-${stamp}`);
const log = createWriteStream(`${base}.log`);

const tmp = mkdtempSync(join(tmpdir(), "ucspi-smtp-bench-"));
const servers = [];
let failed = false;

function fatal(why) {
  console.error(`bench smtp: fatal: ${why}`);
  failed = true;
  throw new Error(why);
}

/** Starts our tcpserver on a free port (-1 prints it) and resolves with { pid, port }. */
function tcpserver(name, args, extraEnv = {}) {
  return server(name, join(bin, "tcpserver"), args, {
    PATH: `${bin}:${process.env.PATH}`,
    ...extraEnv,
  });
}

/** Starts a server that prints its port on its first line of stdout; resolves with it. */
async function server(name, prog, args, extraEnv = {}) {
  const srv = start(name, prog, args, extraEnv);
  let text = "";
  for await (const chunk of srv.child.stdout) {
    text += chunk;
    if (text.includes("\n")) break;
  }
  srv.port = Number(text.trim());
  if (!(srv.port > 0)) fatal(`${name}: no port (${srv.stderr.trim()})`);
  return srv;
}

function start(name, prog, args, extraEnv = {}) {
  const env = { ...process.env, ...extraEnv };
  // A server's environment does not have it; it would make every TLS context parse the bundle.
  delete env.NODE_EXTRA_CA_CERTS;
  const child = spawn(prog, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  const srv = { name, child, pid: child.pid, stderr: "" };
  servers.push(srv);
  child.stderr.on("data", (b) => {
    srv.stderr += b;
    log.write(`[${name}] ${b}`);
  });
  child.once("exit", (code, signal) => {
    srv.exited = { code, signal };
  });
  return srv;
}

/** Resolves once something accepts connections on the port (10 s at most). */
async function listening(name, port) {
  const until = Date.now() + 10000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const c = connect({ host: "127.0.0.1", port });
      c.once("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (ok) return;
    const s = servers.find((k) => k.name === name);
    if (s?.exited || Date.now() > until) fatal(`${name}: not listening (${s?.stderr.trim()})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** utime+stime+cutime+cstime of a process, in ms (0 if it is gone). */
function cpuMs(pid) {
  let stat;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return 0;
  }
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * TICK_MS;
}

/** cpuMs of a process and of all its descendants alive now, summed. */
function treeCpuMs(root) {
  const kids = new Map();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (!kids.has(ppid)) kids.set(ppid, []);
    kids.get(ppid).push(Number(name));
  }
  let sum = 0;
  const todo = [root];
  while (todo.length > 0) {
    const pid = todo.pop();
    sum += cpuMs(pid);
    todo.push(...(kids.get(pid) ?? []));
  }
  return sum;
}

function load(config, concurrency, n, secs) {
  const args = [join(root, "bench", "smtp", "load.mjs"), "--mode", config.mode];
  args.push("--port", String(config.port), "--ca", join(tmp, "ca.pem"));
  args.push("-c", String(concurrency), "--count", String(n), "--seconds", String(secs));
  return new Promise((resolve, reject) => {
    const child = spawn(node, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (b) => (stdout += b));
    child.stderr.on("data", (b) => (stderr += b));
    const kill = setTimeout(() => child.kill("SIGKILL"), (Number(secs) + 30) * 1000);
    child.once("exit", (code, signal) => {
      clearTimeout(kill);
      if (code === 0) resolve(JSON.parse(stdout));
      else reject(new Error(`${config.name} c=${concurrency}: ${stderr.trim() || signal}`));
    });
  });
}

async function measure(config, concurrency) {
  const before = config.pids.map(treeCpuMs);
  const r = await load(config, concurrency, count, seconds);
  const after = config.pids.map(treeCpuMs);
  for (const s of servers)
    if (s.exited) fatal(`${s.name} exited (${JSON.stringify(s.exited)}): ${s.stderr.trim()}`);
  const cpu = after.reduce((sum, a, i) => sum + a - before[i], 0);
  return { ...r, server_cpu_ms: cpu, cpu_ms_per_session: r.sessions ? cpu / r.sessions : 0 };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

try {
  // The backend and the certificates.
  const buildDir = join(root, "build", "bench");
  mkdirSync(buildDir, { recursive: true });
  const built = join(buildDir, "smtp-sink");
  execFileSync(process.env.CC ?? "cc", ["-O2", "-o", built, join(root, "bench/smtp/sink.c")]);
  const reaper = join(buildDir, "smtp-reaper");
  execFileSync(process.env.CC ?? "cc", ["-O2", "-o", reaper, join(root, "bench/smtp/reaper.c")]);
  // SMTP_BACKEND="prog args...": another backend for every configuration (e.g. qmail-smtpd).
  const backend = process.env.SMTP_BACKEND?.split(/\s+/).filter(Boolean) ?? [built];
  // qmail-smtpd's queue (QMAILQUEUE, notqmail has it): bench/smtp/queue-sink.c unless given.
  const queueSink = join(buildDir, "smtp-queue-sink");
  execFileSync(process.env.CC ?? "cc", [
    "-O2",
    "-o",
    queueSink,
    join(root, "bench/smtp/queue-sink.c"),
  ]);
  if (process.env.SMTP_BACKEND && !process.env.QMAILQUEUE) process.env.QMAILQUEUE = queueSink;
  const keygen = join(bin, "tls-keygen");
  execFileSync(keygen, ["ca", "-n", "bench CA", join(tmp, "ca.pem"), join(tmp, "ca.key")]);
  const [cert, key] = [join(tmp, "cert.pem"), join(tmp, "key.pem")];
  execFileSync(keygen, ["leaf", "-C", join(tmp, "ca.pem"), "-K", join(tmp, "ca.key"), cert, key]);
  const tls = { CERTFILE: cert, KEYFILE: key };

  const configs = [];
  for (const variant of variants) {
    const flags = variant === "-D" ? ["-D"] : [];
    const suffix = variant === "-D" ? ", -D" : "";
    const common = [
      ...flags,
      "-R",
      "-H",
      "-l",
      "0",
      "-c",
      "200",
      "-b",
      "256",
      "-1",
      "127.0.0.1",
      "0",
    ];
    const name = (what) => `${what}${suffix}`;
    const plain = await tcpserver(name("plain"), [...common, ...backend]);
    const implicit = await tcpserver(name("implicit"), [...common, "tlsd", ...backend], tls);
    configs.push(
      { name: name("plain"), variant, mode: "plain", port: plain.port, pids: [plain.pid] },
      {
        name: name("implicit TLS"),
        variant,
        mode: "implicit",
        port: implicit.port,
        pids: [implicit.pid],
      },
    );
    // The two STARTTLS chains, with tlsd on its default, the native TLS engine, then on
    // node:tls (UCSPI_TLS_ENGINE=node in the environment of the tcpserver that runs tlsd).
    for (const engine of ["", ", node:tls"]) {
      const tlsEnv = engine ? { ...tls, UCSPI_TLS_ENGINE: "node" } : tls;
      const svc = await tcpserver(
        name(`tls-service${engine}`),
        ["--proxy", ...common, "tlsd", ...backend],
        tlsEnv,
      );
      const remote = await tcpserver(name(`starttls-remote${engine}`), [
        ...common,
        "starttls-wrapper",
        "127.0.0.1",
        String(svc.port),
        ...backend,
      ]);
      const local = await tcpserver(
        name(`starttls-local${engine}`),
        [...common, "starttls-wrapper", ...backend],
        tlsEnv,
      );
      const starttls = { variant, mode: "starttls" };
      configs.push(
        {
          name: name(`STARTTLS remote${engine}`),
          ...starttls,
          port: remote.port,
          pids: [remote.pid, svc.pid],
        },
        { name: name(`STARTTLS local${engine}`), ...starttls, port: local.port, pids: [local.pid] },
      );
    }
    // -k: the server that answered in plaintext goes on behind TLS (one server a session, as in
    // skarnet's chain), on the default engine.
    const keep = await tcpserver(
      name("starttls-local-k"),
      [...common, "starttls-wrapper", "-k", ...backend],
      tls,
    );
    configs.push({
      name: name("STARTTLS local -k"),
      variant,
      mode: "starttls",
      port: keep.port,
      pids: [keep.pid],
    });
  }

  // The chains ours replaces, once (as their docs run them), with the same backend and keys.
  const sk = (prog) => join(skarnetPrefix, "bin", prog);
  const skProgs = ["s6-tcpserver", "s6-tcpserver-access", "s6-ucspitlsd", "s6-tlsd-io"];
  skProgs.push("smtpd-starttls-proxy-io");
  const skMissing = skProgs.filter((p) => !existsSync(sk(p)));
  if (skMissing.length > 0) {
    console.error(
      `smtp: skarnet configuration skipped: no ${skMissing.join(", ")} in ${skarnetPrefix}/bin ` +
        `(set SKARNET_PREFIX to a prefix where skarnet's s6-networking, with TLS, and ` +
        `smtpd-starttls-proxy are installed)`,
    );
  } else {
    const s6 = await server(
      "skarnet",
      reaper,
      [
        sk("s6-tcpserver"),
        ...["-1", "-c", "200", "-C", "200", "-b", "256", "127.0.0.1", "0"],
        ...[sk("s6-tcpserver-access"), "-v0", "-D", "-H", "-R", "-l", "0", "--"],
        ...[sk("s6-ucspitlsd"), "--", sk("smtpd-starttls-proxy-io"), ...backend],
      ],
      // s6-tcpserver execs s6-tcpserver-socketbinder and s6-tcpserverd from PATH.
      { PATH: `${join(skarnetPrefix, "bin")}:${process.env.PATH}`, ...tls },
    );
    configs.push({
      name: "skarnet",
      variant: variants[0],
      mode: "starttls",
      peer: true,
      port: s6.port,
      pids: [s6.pid],
    });
  }
  if (!existsSync(stunnel)) {
    console.error(`smtp: stunnel configuration skipped: no ${stunnel} (apt-get install stunnel4)`);
  } else {
    const port = await freePort();
    const conf = join(tmp, "stunnel.conf");
    writeFileSync(
      conf,
      [
        "foreground = yes",
        "pid =",
        "syslog = no",
        "debug = 3",
        "[smtp]",
        `accept = 127.0.0.1:${port}`,
        `exec = ${backend[0]}`,
        `execArgs = ${backend.join(" ")}`,
        `cert = ${cert}`,
        `key = ${key}`,
        "protocol = smtp",
        "",
      ].join("\n"),
    );
    const st = start("stunnel", stunnel, [conf]);
    await listening("stunnel", port);
    configs.push({
      name: "stunnel smtp",
      variant: variants[0],
      mode: "starttls",
      peer: true,
      port,
      pids: [st.pid],
    });
  }

  // Warm-up (JIT, first spawns, first TLS contexts), not measured.
  for (const config of configs) await load(config, 8, 100, 2);

  const runs = [];
  const load0 = loadavg();
  const t0 = Date.now();
  for (let round = 0; round < rounds; round++) {
    for (const concurrency of concurrencies) {
      const order = configs.map((_, i) => configs[(i + round) % configs.length]);
      for (const config of order) {
        const r = await measure(config, concurrency);
        runs.push({ round, config: config.name, ...r });
        console.error(
          `smtp: round ${round + 1}/${rounds} c=${concurrency} ${config.name}: ` +
            `${r.rate.toFixed(1)}/s, ${r.cpu_ms_per_session.toFixed(2)} ms CPU/session, ` +
            `p50 ${r.p50_ms.toFixed(1)} ms, max ${r.max_ms.toFixed(1)} ms (${r.sessions} sessions)`,
        );
      }
    }
  }

  // The summary: medians over the rounds; the ratios are medians of the per-round ratios (each
  // configuration against implicit TLS of the same variant, measured in the same round).
  const implicitOf = (config) =>
    configs.find((k) => k.variant === config.variant && k.mode === "implicit");
  const runOf = (name, c, round) =>
    runs.find((r) => r.config === name && r.concurrency === c && r.round === round);
  const hasSkarnet = configs.some((k) => k.name === "skarnet");
  // Against skarnet's chain, measured in the same round: ours / skarnet.
  const vsSkarnet = (mine, concurrency, key) =>
    hasSkarnet
      ? median(mine.map((r) => r[key] / runOf("skarnet", concurrency, r.round)[key]))
      : undefined;
  const summary = [];
  for (const concurrency of concurrencies) {
    for (const config of configs) {
      const mine = runs.filter((r) => r.config === config.name && r.concurrency === concurrency);
      const ref = (r) => runOf(implicitOf(config).name, concurrency, r.round);
      summary.push({
        config: config.name,
        variant: config.variant,
        mode: config.mode,
        concurrency,
        rate: median(mine.map((r) => r.rate)),
        rate_min: Math.min(...mine.map((r) => r.rate)),
        rate_max: Math.max(...mine.map((r) => r.rate)),
        cpu_ms_per_session: median(mine.map((r) => r.cpu_ms_per_session)),
        client_cpu_ms_per_session: median(mine.map((r) => r.client_cpu_ms_per_session)),
        p50_ms: median(mine.map((r) => r.p50_ms)),
        max_ms: Math.max(...mine.map((r) => r.max_ms)),
        sessions: mine.reduce((n, r) => n + r.sessions, 0),
        rate_vs_implicit: median(mine.map((r) => r.rate / ref(r).rate)),
        cpu_vs_implicit: median(mine.map((r) => r.cpu_ms_per_session / ref(r).cpu_ms_per_session)),
        rate_vs_skarnet: vsSkarnet(mine, concurrency, "rate"),
        cpu_vs_skarnet: vsSkarnet(mine, concurrency, "cpu_ms_per_session"),
        peer: Boolean(config.peer),
      });
    }
  }
  const x = (v) => (v === undefined ? "-" : `${v.toFixed(2)}x`);
  const lines = [
    `SMTP sessions through starttls-wrapper beside implicit TLS and plaintext, and beside ` +
      `skarnet's s6-tcpserver/s6-ucspitlsd/smtpd-starttls-proxy-io chain and stunnel's ` +
      `"protocol = smtp" server mode where installed, same backend ` +
      `(${process.env.SMTP_BACKEND ?? "bench/smtp/sink.c"}), same client; "-D": every ` +
      `tcpserver of ours with -D (TCP_NODELAY). Medians of ${rounds} interleaved rounds, ` +
      `${seconds} s or ${count} sessions each; ratios: median of the per-round ratios ` +
      `(this configuration / the reference, both measured in the same round) to implicit TLS ` +
      `of the same variant, and to skarnet's chain. Load average ` +
      `${load0.map((l) => l.toFixed(2)).join(" ")} at the start.`,
    "",
    "| configuration | c | sessions/s [min..max] | server ms CPU/session | client ms CPU/session | p50 ms | max ms | rate vs implicit | server CPU vs implicit | rate vs skarnet | server CPU/session vs skarnet |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const s of summary) {
    lines.push(
      `| ${s.config} | ${s.concurrency} | ${s.rate.toFixed(1)} [${s.rate_min.toFixed(0)}..${s.rate_max.toFixed(0)}] ` +
        `| ${s.cpu_ms_per_session.toFixed(2)} | ${s.client_cpu_ms_per_session.toFixed(2)} ` +
        `| ${s.p50_ms.toFixed(1)} | ${s.max_ms.toFixed(1)} | ${x(s.rate_vs_implicit)} ` +
        `| ${x(s.cpu_vs_implicit)} | ${x(s.rate_vs_skarnet)} | ${x(s.cpu_vs_skarnet)} |`,
    );
  }
  lines.push("");
  for (const s of summary.filter((k) => k.mode === "starttls" && !k.peer)) {
    const ok = s.rate_vs_implicit >= 0.6 ? "met" : "NOT met";
    lines.push(
      `- c=${s.concurrency}: ${s.config} / implicit TLS = ${s.rate_vs_implicit.toFixed(2)} (target >= 0.6: ${ok})`,
    );
  }
  for (const s of summary.filter((k) => k.mode === "starttls" && !k.peer && hasSkarnet)) {
    const ok = s.rate_vs_skarnet >= 2 && s.cpu_vs_skarnet <= 0.5 ? "met" : "NOT met";
    lines.push(
      `- c=${s.concurrency}: ${s.config} / skarnet = ${s.rate_vs_skarnet.toFixed(2)}x sessions/s, ` +
        `${s.cpu_vs_skarnet.toFixed(2)}x server CPU/session (target >= 2x at <= 0.5x: ${ok})`,
    );
  }
  if (configs.some((k) => k.name === "stunnel smtp"))
    lines.push(
      `- stunnel smtp: stunnel's SMTP server mode waits 200 ms for the client to speak first ` +
        `(its implicit-TLS detection) before it relays the greeting, so its sessions/s is ` +
        `bounded by that wait (c / 0.2 s), not by its CPU.`,
    );
  const md = lines.join("\n") + "\n";
  console.log(md);
  writeFileSync(`${base}.md`, md);
  writeFileSync(
    `${base}.json`,
    JSON.stringify(
      {
        when: new Date(t0).toISOString(),
        rounds,
        seconds: Number(seconds),
        count: Number(count),
        loadavg_start: load0,
        loadavg_end: loadavg(),
        node: execFileSync(node, ["--version"]).toString().trim(),
        backend,
        variants,
        skarnet_prefix: hasSkarnet ? skarnetPrefix : undefined,
        configs: configs.map(({ name, variant, mode, peer }) => ({ name, variant, mode, peer })),
        summary,
        runs,
      },
      null,
      2,
    ) + "\n",
  );
  console.error(`smtp: results in ${base}.{md,json,log}`);
} catch (error) {
  if (!failed) console.error(`bench smtp: fatal: ${error.stack ?? error.message}`);
  failed = true;
} finally {
  for (const s of servers) if (!s.exited) s.child.kill("SIGTERM");
  await Promise.all(
    servers.map(async (s) => {
      if (s.exited) return;
      const t = setTimeout(() => s.child.kill("SIGKILL"), 3000);
      await once(s.child, "exit");
      clearTimeout(t);
    }),
  );
  log.end();
  rmSync(tmp, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
