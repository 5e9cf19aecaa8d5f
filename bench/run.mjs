// npm run bench: our tcpserver beside djb's, side by side in one run, through the shared
// harness (../shared/bench: bench.py drives the servers, build/loadgen makes the load).
//   1. accept + spawn /bin/echo hi, concurrency 1 and 16 (djb's tcpserver is the reference);
//   2. the same while the server holds 2,000 idle connections (each with a `cat` child), to
//      show that the spawn path does not slow down as the server holds more;
//   3.-7. TLS: handshakes (beside stunnel and haproxy), 1 GiB down and up, memory per idle
//      connection, handshakes while 2,000 TLS connections are held in-process, and tlsd's
//      start-up as a process of its own;
//   5b. mem-warm: memory per idle TLS connection in the steady state (after a warm-up) beside
//      the first hold that `mem` measures, ours and stunnel's daemon alike (bench/mem-warm.mjs);
//   8. smtp: SMTP sessions through starttls-wrapper beside implicit TLS and plaintext
//      (bench/smtp.mjs, a script of its own: the harness has no SMTP client);
//  8b. postgres: PostgreSQL with TLS from starttls-wrapper beside PostgreSQL's own TLS (pgbench,
//      bench/postgres.mjs);
//   9. sniff: full handshakes through `tcpserver tls-sniff ... tlsd` against `tcpserver tlsd`;
//  11. transparent: interception (TPROXY) against the direct path and haproxy in transparent
//      mode, in network namespaces (bench/transparent.mjs; root only);
//  10. ab: this checkout's `tcpserver tlsd` against another one's (BENCH_BASELINE), for a change;
//  12. metrics: full handshakes through `tcpserver tlsd` with and without --metrics
//      (bench/metrics.mjs).
//  3b. pq: the TLS handshakes of 3. with a client that offers X25519MLKEM768 (bench/pq-loadgen.mjs);
//  3c. workers: `tcpserver --workers 1` against `--workers 2` (tlsd, full handshakes).
//  13. split: where a connection's CPU goes, process by process, ours beside djb's tcpserver and
//      haproxy, with the client's latencies (bench/split.mjs).
// Results go to bench/results/; `node bench/tables.mjs` (npm run bench:tables) writes the
// README's performance tables from them.
import { execFileSync, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { availableParallelism, release } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { onPrivateNode, serversNode, sharingWarnings } from "./private-node.mjs";

// Before anything else: our servers' PSS is measured with no process of the bench on their
// node binary (private-node.mjs).
onPrivateNode();

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const shared = process.env.BENCH_HARNESS ?? join(root, "..", "shared", "bench");
const harness = join(root, "build", "bench-harness");
// BENCH_ONLY=conn,tls,... runs only those parts.
const only = (name) => (process.env.BENCH_ONLY ?? name).split(",").includes(name);
// The harness is not needed for smtp or mem-warm alone (BENCH_ONLY=smtp,mem-warm).
const harnessParts = [
  "conn",
  "held",
  "tls",
  "bulk",
  "mem",
  "tls-held",
  "sniff",
  "ab",
  "transparent",
  "metrics",
  "pq",
  "workers",
  "split",
];
if (harnessParts.some(only)) {
  if (!existsSync(join(harness, "bench.py"))) {
    if (!existsSync(join(shared, "bench.py"))) {
      console.error(`bench: fatal: no harness at ${shared} (set BENCH_HARNESS)`);
      process.exit(111);
    }
    // A private copy: the harness builds its helpers and certificates beside itself.
    cpSync(shared, harness, { recursive: true });
  }
  // Our package.json says "type": "module"; the harness's Node helpers are CommonJS.
  writeFileSync(join(harness, "package.json"), '{ "type": "commonjs" }\n');
  if (!existsSync(join(harness, "build", "loadgen"))) {
    execFileSync("bash", [join(harness, "setup.sh")], { stdio: "inherit" });
  }
}
const out = join(root, "bench", "results");
mkdirSync(out, { recursive: true });
// The machine this run measured on, for bench/tables.mjs to print beside every table it makes
// from this run's results (the figures only compare within one machine and one run).
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
writeFileSync(join(out, `machine-${stamp}.json`), `${JSON.stringify(machineFacts(), null, 2)}\n`);
const bin = join(root, "bin");
const rounds = process.env.BENCH_ROUNDS ?? "5";
const common = "-R -H -l 0 -c 10000 -b 1024 127.0.0.1 $PORT";

function bench(args, dir = harness) {
  const r = spawnSync("python3", [join(dir, "bench.py"), ...args, "--out", out], {
    stdio: "inherit",
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

/** A process of another program on our servers' node binary lowers their PSS (private-node.mjs). */
function warnShared(part) {
  for (const warning of sharingWarnings()) console.error(`bench: warning: ${part}: ${warning}`);
}

// 1. Idle server.
if (only("conn"))
  bench([
    "conn",
    "--anchors",
    "tcpserver,node-spawn",
    "--plain",
    `ts-tcpserver=exec ${bin}/tcpserver ${common} $PROG`,
    "--ref",
    "tcpserver",
    "--rounds",
    rounds,
    "-c",
    "1,16",
    "--tag",
    "idle",
  ]);

// 2. Holding 2,000 idle connections. Rules send the held ones (from 127.0.0.2) to `cat` and the
// measured ones to $PROG, through one sh for both servers alike.
const rules = `printf '127.0.0.2:allow,HOLD="cat"\\n' | ${bin}/tcprules $TMPD/r.cdb $TMPD/r.tmp`;
const program = `/bin/sh -c 'exec \${HOLD:-$PROG}'`;
const hold = `node ${root}/bench/hold.mjs $PORT 2000 $BPORT &`;
const server = (tcpserver, held) =>
  `${rules}; ${held ? hold : ""} exec ${tcpserver} -x $TMPD/r.cdb ${common} ${program}`;
if (only("held"))
  bench([
    "conn",
    "--anchors",
    "none",
    "--plain",
    `djb-idle=${server("tcpserver", false)}`,
    "--plain",
    `djb-held-2000=${server("tcpserver", true)}`,
    "--plain",
    `ts-idle=${server(`${bin}/tcpserver`, false)}`,
    "--plain",
    `ts-held-2000=${server(`${bin}/tcpserver`, true)}`,
    "--ref",
    "djb-idle",
    "--rounds",
    process.env.BENCH_HELD_ROUNDS ?? "3",
    "-c",
    "16",
    "--tag",
    "held",
  ]);

// 3. TLS: full handshakes through our tcpserver + tlsd (in-process) beside haproxy and hitch
// (each in front of djb's tcpserver running the same program), stunnel (its daemon, and one per
// connection under djb's tcpserver), and our tlsd spawned per connection by djb's tcpserver
// beside the harness's 40-line Node tlsd, and ours on node:tls (--engine node; the default is
// the native TLS engine); ECDSA P-256 and RSA-2048, c=1 and c=16.
const tlsd = `CERTFILE=$CERT KEYFILE=$KEY PATH=${bin}:$PATH exec ${bin}/tcpserver ${common} tlsd`;
const tlsSpecs = [
  "--tls",
  `ts-tcpserver+tlsd=${tlsd} $PROG`,
  "--tls",
  `tcpserver+ts-tlsd=CERTFILE=$CERT KEYFILE=$KEY exec tcpserver ${common} ${bin}/tlsd $PROG`,
  // node:tls, what tlsd ran on before the native engine (docs/dev/native-tls.md).
  "--tls",
  `ts-tcpserver+tlsd-node=${tlsd} --engine node $PROG`,
];
/** Full handshakes beside haproxy (the reference) and other anchors: both keys, c=1 and 16. */
const handshakes = (anchors, specs, tag, extra = []) => [
  ...["tls", "--anchors", anchors, ...specs, "--ref", "haproxy", ...extra],
  ...["--keys", "ecdsa,rsa", "--rounds", process.env.BENCH_TLS_ROUNDS ?? "3"],
  ...["-c", "1,16", "--tag", tag],
];
if (only("tls"))
  bench(
    handshakes("haproxy,hitch,stunnel-exec,tcpserver+stunnel,tcpserver+node-tlsd", tlsSpecs, "tls"),
  );

// 3b. Post-quantum handshakes: the same servers with the client offering X25519MLKEM768 first.
// The harness's C loadgen links Debian 12's OpenSSL 3.0, which has no ML-KEM; this part runs a
// private copy of the harness whose loadgen is bench/pq-loadgen.mjs on Node 24's OpenSSL 3.5
// (one client for every server). haproxy, hitch and stunnel link the system's OpenSSL 3.0 and
// answer with X25519; the tables record the group each one negotiated.
if (only("pq")) {
  const pqHarness = join(root, "build", "bench-harness-pq");
  cpSync(harness, pqHarness, { recursive: true });
  writeFileSync(
    join(pqHarness, "build", "loadgen"),
    `#!/bin/sh\nexec ${serversNode} ${join(root, "bench", "pq-loadgen.mjs")} "$@"\n`,
    { mode: 0o755 },
  );
  const ours = tlsSpecs.slice(0, 2);
  bench(
    handshakes("haproxy,hitch,stunnel-exec", ours, "pq", ["--groups", "X25519MLKEM768:X25519"]),
    pqHarness,
  );
}

// 3c. Multi-core: full handshakes through `tcpserver --workers N tlsd`, N = 1 and 2 (and
// haproxy for scale), ECDSA, c=16 and 32. On a 2-core machine the load client shares the
// cores, so the question is whether the second worker adds work done per CPU second, not a
// clean 2x; the CPU per handshake shows whether the workers' accept path costs anything.
if (only("workers")) {
  const workers = (n) =>
    `ts-workers-${n}=CERTFILE=$CERT KEYFILE=$KEY PATH=${bin}:$PATH exec ${bin}/tcpserver ` +
    `--workers ${n} ${common} tlsd $PROG`;
  bench([
    ...["tls", "--anchors", "haproxy", "--tls", workers(1), "--tls", workers(2)],
    ...["--ref", "ts-workers-1", "--keys", "ecdsa", "-c", "16,32", "--tag", "workers"],
    ...["--rounds", process.env.BENCH_TLS_ROUNDS ?? "3"],
  ]);
}

// 4. 1 GiB through the TLS layer, down and up.
if (only("bulk")) {
  bench([
    "bulk",
    "--anchors",
    "tcpserver+stunnel,stunnel-exec",
    "--tls",
    `ts-tcpserver+tlsd=${tlsd} $PROG`,
    "--ref",
    "stunnel-exec",
    "--rounds",
    process.env.BENCH_BULK_ROUNDS ?? "3",
    "--tag",
    "bulk",
  ]);
}

// 5. Memory per idle TLS connection (100 held, each with a `cat`), tlsd on the native engine
// (its default) and on node:tls.
if (only("mem")) {
  warnShared("mem");
  bench([
    "mem",
    "--anchors",
    "stunnel-exec,haproxy",
    "--tls",
    `ts-tcpserver+tlsd=${tlsd} $PROG`,
    "--tls",
    `ts-tcpserver+tlsd-node=${tlsd} --engine node $PROG`,
    "--ref",
    "stunnel-exec",
    "--tag",
    "mem",
  ]);
}

// 5b. Memory per idle TLS connection once warm: the first hold of `mem` charges one-time costs
// (V8's optimized code from the first handshakes) to the connections; this part warms both
// servers up (MEM_WARM_HANDSHAKES full handshakes and a hold/release) before it measures, and
// reports the first hold beside it. BENCH_MEM_WARM_ROUNDS (default 3) rounds.
if (only("mem-warm")) {
  const r = spawnSync(process.execPath, [join(root, "bench", "mem-warm.mjs")], {
    stdio: "inherit",
    env: { ...process.env, MEM_WARM_ROUNDS: process.env.BENCH_MEM_WARM_ROUNDS ?? "3" },
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

// 6. Handshakes while 2,000 idle TLS connections are held in the same process (tlsd in-process,
// each held one with a `cat`, routed by rules from 127.0.0.2 as in 2.).
if (only("tls-held")) {
  const tlsServer = (held) =>
    `${rules}; ${held ? `node ${root}/bench/hold.mjs $PORT 2000 $BPORT 900 tls &` : ""} ` +
    `CERTFILE=$CERT KEYFILE=$KEY PATH=${bin}:$PATH exec ${bin}/tcpserver -x $TMPD/r.cdb ${common} tlsd ${program}`;
  bench([
    "tls",
    "--anchors",
    "none",
    "--tls",
    `ts-tlsd-idle=${tlsServer(false)}`,
    "--tls",
    `ts-tlsd-held-2000=${tlsServer(true)}`,
    "--ref",
    "ts-tlsd-idle",
    "--keys",
    "ecdsa",
    "--rounds",
    process.env.BENCH_TLS_ROUNDS ?? "3",
    "-c",
    "16",
    "--tag",
    "tls-held",
  ]);
}

// 7. Start-up of tlsd as a process of its own (what djb's tcpserver pays per connection), in
// both runtime forms, the bundle and the single executable (bench/startup.mjs; STARTUP_RUNS).
if (only("startup")) {
  const r = spawnSync(process.execPath, [join(root, "bench", "startup.mjs")], {
    stdio: "inherit",
    env: { ...process.env, STARTUP_MARKDOWN: join(out, `startup-${stamp}.md`) },
  });
  if (r.status !== 0)
    console.error("bench: warning: startup failed (it needs hyperfine, cc, libssl-dev, ucspi-tcp)");
}

// 8. SMTP sessions per second: STARTTLS (remote hand-over and local mode) against implicit TLS
// and plaintext, same backend. BENCH_ROUNDS applies (default 3 there).
if (only("smtp")) {
  const r = spawnSync(process.execPath, [join(root, "bench", "smtp.mjs")], {
    stdio: "inherit",
    env: { ...process.env, BENCH_ROUNDS: process.env.BENCH_SMTP_ROUNDS ?? "3" },
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

// 11. Transparent interception in network namespaces (needs root, nftables, haproxy).
if (only("postgres")) {
  const r = spawnSync(process.execPath, [join(root, "bench", "postgres.mjs")], {
    stdio: "inherit",
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

if (only("transparent")) {
  if (process.getuid?.() !== 0) console.error("bench: transparent: skipped (needs root)");
  else {
    const r = spawnSync(process.execPath, [join(root, "bench", "transparent.mjs")], {
      stdio: "inherit",
      env: { ...process.env, BENCH_ROUNDS: process.env.BENCH_TRANSPARENT_ROUNDS ?? "3" },
    });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
}

// 9. What tls-sniff costs a TLS connection: full handshakes per second (c=1 and c=16) through
// `tls-sniff --plain { ... } tlsd` (the one-port recipe; every connection here is TLS) against
// `tlsd` alone, both in-process under our tcpserver.
if (only("sniff")) {
  const tlsServer = (chain) =>
    `CERTFILE=$CERT KEYFILE=$KEY PATH=${bin}:$PATH exec ${bin}/tcpserver ${common} ${chain} $PROG`;
  for (const c of ["1", "16"])
    bench([
      "tls",
      "--anchors",
      "none",
      "--tls",
      `tlsd=${tlsServer("tlsd")}`,
      "--tls",
      `tls-sniff+tlsd=${tlsServer("tls-sniff --plain { /bin/echo plain } tlsd")}`,
      "--ref",
      "tlsd",
      "--keys",
      "ecdsa",
      "--rounds",
      process.env.BENCH_TLS_ROUNDS ?? "3",
      "-c",
      c,
      "--tag",
      `sniff-c${c}`,
    ]);
}

// 10. A/B: full handshakes of this checkout's `tcpserver tlsd` against another built checkout's
// (BENCH_BASELINE=/path/to/checkout), same load, interleaved rounds, ECDSA and RSA, c=1 and 16:
// what a change does to the handshake path.
if (only("ab")) {
  const base = process.env.BENCH_BASELINE;
  if (!base || !existsSync(join(base, "bin", "tcpserver"))) {
    console.error("bench: fatal: ab needs BENCH_BASELINE=<a built checkout>");
    process.exit(100);
  }
  const tlsServer = (dir) =>
    `CERTFILE=$CERT KEYFILE=$KEY PATH=${dir}/bin:$PATH exec ${dir}/bin/tcpserver ${common} tlsd $PROG`;
  for (const c of ["1", "16"])
    bench([
      "tls",
      "--anchors",
      "none",
      "--tls",
      `baseline=${tlsServer(base)}`,
      "--tls",
      `this=${tlsServer(root)}`,
      "--ref",
      "baseline",
      "--keys",
      "ecdsa,rsa",
      "--rounds",
      process.env.BENCH_TLS_ROUNDS ?? "3",
      "-c",
      c,
      "--tag",
      `ab-c${c}`,
    ]);
}

// 12. What tcpserver --metrics costs a handshake (c=1 and c=16). BENCH_METRICS_ROUNDS (default 3).
if (only("metrics")) {
  const r = spawnSync(process.execPath, [join(root, "bench", "metrics.mjs")], {
    stdio: "inherit",
    env: { ...process.env, BENCH_ROUNDS: process.env.BENCH_METRICS_ROUNDS ?? "3" },
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

// 13. Where a connection's CPU goes, process by process, ours against djb's tcpserver (plain)
// and haproxy in front of it (TLS), c=1 and c=16 (bench/split.mjs). BENCH_SPLIT_ROUNDS (3).
if (only("split")) {
  const r = spawnSync(process.execPath, [join(root, "bench", "split.mjs")], {
    stdio: "inherit",
    env: {
      ...process.env,
      BENCH_ROUNDS: process.env.BENCH_SPLIT_ROUNDS ?? "3",
      SPLIT_MARKDOWN: join(out, `split-${stamp}.md`),
    },
  });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

/** CPU, cores, kernel, the runtimes' OpenSSL, and how long `node -e 0` takes (the machine's speed). */
function machineFacts() {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1];
  const starts = [];
  for (let i = 0; i < 11; i++) {
    const t = process.hrtime.bigint();
    spawnSync(serversNode, ["-e", "0"]);
    starts.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  starts.sort((a, b) => a - b);
  const version = (cmd, args) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    return `${r.stdout ?? ""}${r.stderr ?? ""}`.split("\n")[0].trim() || "absent";
  };
  return {
    date: new Date().toISOString(),
    cpu,
    cores: availableParallelism(),
    kernel: release(),
    node: version(serversNode, [
      "-p",
      "`Node ${process.version}, OpenSSL ${process.versions.openssl}`",
    ]),
    systemOpenssl: version("openssl", ["version"]),
    nodeStartMs: Number(starts[5].toFixed(1)),
  };
}

for (const file of readdirSync(out)
  .filter((f) => f.endsWith(".md"))
  .sort()
  .slice(-8)) {
  console.log(`\n## ${file}\n`);
  console.log(readFileSync(join(out, file), "utf8"));
}
