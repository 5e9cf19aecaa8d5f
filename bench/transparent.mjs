// npm run bench (part "transparent"): what transparent interception costs, in network
// namespaces made here (a client and a server namespace on a veth pair, as the tests do), side
// by side in one run, interleaved rounds. One Node service in the server namespace answers on
// several ports; the load client is the harness's loadgen, in the client namespace.
//   direct     client → service:8080, nothing in between (the reference);
//   ours       client → service:8081, TPROXY → tcpserver --transparent, tls-sniff, tcpforward
//              --transparent (plaintext) or tls-sniff, tcpforward --if-plain { tlsd, tcpforward
//              --transparent } (TLS: the service has none), as tls-everywhere runs it;
//   ours-2w    the same as ours on service:8086 (TPROXY → :9997), with tcpserver --workers 2:
//              two processes on the port, as haproxy runs two threads here;
//   ours-tlsd  client → :9443, `tcpserver tlsd tcpforward 10.77.0.1 8080` (no interception:
//              what the TLS path costs without it);
//   ours-tlsd-node  the same on :9444 with `tlsd --engine node` (node:tls, not tlsd's default,
//              the native TLS engine: docs/dev/native-tls.md);
//   haproxy    client → service:8083 (TLS) or 8085 (plaintext), TPROXY → haproxy `bind ...
//              transparent [ssl]` and `source 0.0.0.0 usesrc clientip` to the service on 8084.
// Connections/s (plaintext, c=16), full TLS handshakes/s (ECDSA P-256, c=16) and 1 GiB down,
// plaintext and TLS. Needs root, nftables, iproute2, haproxy; the harness (bench/run.mjs).
import { execFileSync, spawn } from "node:child_process";
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { makeLab } from "../test/helpers/netns.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "bin");
const harness = join(root, "build", "bench-harness");
const loadgen = join(harness, "build", "loadgen");
const cert = join(harness, "certs", "ecdsa");
const rounds = Number(process.env.BENCH_ROUNDS ?? "3");
const out = join(root, "bench", "results");
mkdirSync(out, { recursive: true });

const lab = makeLab("bn");
const S = lab.server;
const C = lab.client;
const children = [];
const logs = new Map();
const tmp = mkdtempSync(join(tmpdir(), "ucspi-bench-tp-"));
// Each server's stderr goes to a file: this script blocks in each load run, and a server that
// logged into a full pipe meanwhile would stall.
const start = (name, file, args, env = process.env) => {
  const path = join(tmp, `${name}.log`);
  const fd = openSync(path, "w");
  const child = spawn("ip", ["netns", "exec", S, file, ...args], {
    stdio: ["ignore", fd, fd],
    env,
  });
  closeSync(fd);
  logs.set(name, () => readFileSync(path, "utf8"));
  child.on("exit", (code, signal) => {
    if (!stopping) console.error(`bench: ${name} ended (${code ?? signal}):\n${logs.get(name)()}`);
  });
  children.push(child);
};
let stopping = false;
const stop = () => {
  stopping = true;
  for (const child of children) child.kill("SIGKILL");
  lab.destroy();
};
process.on("exit", stop);

// The service: the first line is the request; "bulk" gets 1 GiB, anything else "hi".
const service = join(tmp, "service.mjs");
writeFileSync(
  service,
  `import { createServer } from "node:net";
const chunk = Buffer.alloc(1 << 20);
for (const port of [8080, 8081, 8084, 8086])
  createServer((s) => {
    s.once("data", (b) => {
      if (!b.toString().startsWith("bulk")) return s.end("hi\\n");
      let left = 1024;
      const more = () => {
        while (left > 0) { left--; if (!s.write(chunk)) return s.once("drain", more); }
        s.end();
      };
      more();
    });
    s.on("error", () => {});
  }).listen(port, "10.77.0.1");
`,
);
start("service", process.execPath, [service]);

const rules = join(tmp, "rules.nft");
writeFileSync(
  rules,
  `table inet bench {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname "lo" return
    tcp flags & (fin | syn | rst | ack) != syn socket transparent 1 meta mark set 1 accept
    fib daddr type local tcp dport 8081 tproxy ip to :9999 meta mark set 1 accept
    fib daddr type local tcp dport 8086 tproxy ip to :9997 meta mark set 1 accept
    fib daddr type local tcp dport 8083 tproxy ip to :9996 meta mark set 1 accept
    fib daddr type local tcp dport 8085 tproxy ip to :9995 meta mark set 1 accept
  }
  chain out {
    type route hook output priority mangle; policy accept;
    meta mark 2 ct mark set meta mark
    ct mark 2 meta mark set ct mark
    ip daddr ${lab.clientIp} tcp sport 8084 meta mark set 1
  }
}
`,
);
lab.sh(
  S,
  `nft -f ${rules}
   ip rule add fwmark 1 lookup 100; ip rule add fwmark 2 lookup 100
   ip route add local 0.0.0.0/0 dev lo table 100`,
);

const env = {
  ...process.env,
  PATH: `${bin}:${process.env.PATH}`,
  CERTFILE: `${cert}.crt`,
  KEYFILE: `${cert}.key`,
};
const forward = [
  "tcpforward",
  "--transparent",
  "--mark",
  "2",
  ...(process.env.BENCH_SOURCE_PORTS ? ["--source-ports", process.env.BENCH_SOURCE_PORTS] : []),
];
// BENCH_WORKERS=N: our tcpservers run N processes on the port (haproxy runs 2 threads).
const limits = [
  "-c",
  "10000",
  "-b",
  "1024",
  ...(process.env.BENCH_WORKERS ? ["--workers", process.env.BENCH_WORKERS] : []),
];
/** The chain as tls-everywhere runs it, on `port`; `workers`: tcpserver --workers. */
const ours = (name, port, workers) =>
  start(
    name,
    join(bin, "tcpserver"),
    [
      process.env.BENCH_LOGS ? "-vRHl0" : "-RHl0",
      ...limits,
      ...(workers ? ["--workers", String(workers)] : []),
      "--transparent",
      "0",
      String(port),
      "tls-sniff",
      ...(process.env.BENCH_LOGS ? ["-v2"] : []),
      "--plain",
      "{",
      ...forward,
      "}",
      ...forward,
      "--if-plain",
      "{",
      "tlsd",
      ...forward,
      "}",
    ],
    env,
  );
ours("ours", 9999);
ours("ours-2w", 9997, 2);
start(
  "ours-tlsd",
  join(bin, "tcpserver"),
  ["-RHl0", ...limits, lab.serverIp, "9443", "tlsd", "tcpforward", lab.serverIp, "8080"],
  env,
);
start(
  "ours-tlsd-node",
  join(bin, "tcpserver"),
  [
    ...["-RHl0", ...limits, lab.serverIp, "9444", "tlsd", "--engine", "node"],
    ...["tcpforward", lab.serverIp, "8080"],
  ],
  env,
);
const haproxyConfig = join(tmp, "haproxy.cfg");
writeFileSync(
  haproxyConfig,
  `global
  maxconn 4000
  nbthread 2
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend tls
  bind 0.0.0.0:9996 transparent ssl crt ${cert}.pem
  default_backend service
frontend plain
  bind 0.0.0.0:9995 transparent
  default_backend service
backend service
  server s 10.77.0.1:8084 source 0.0.0.0 usesrc clientip
`,
);
start("haproxy", "haproxy", ["-db", "-f", haproxyConfig]);

/** One loadgen run in the client namespace: its JSON line. */
function load(args) {
  let text;
  try {
    text = execFileSync("ip", ["netns", "exec", C, loadgen, ...args, "--io-timeout", "20"], {
      encoding: "utf8",
      timeout: 120_000,
    });
  } catch (error) {
    // loadgen exits non-zero when a connection failed; its line still says how many.
    text = error.stdout ?? "";
  }
  return JSON.parse(text.trim().split("\n").pop());
}

const host = lab.serverIp;
const conn = (port, tls, count = 3000) => {
  const r = load([
    "conn",
    "-H",
    host,
    "-p",
    String(port),
    "-n",
    String(count),
    "-c",
    "16",
    "-t",
    "10",
    "--send",
    "hi\n",
    ...(tls ? ["--tls"] : []),
  ]);
  return { value: r.rate_per_s, ok: r.ok, n: r.started, errors: r.errors };
};
const bulk = (port, tls) => {
  const r = load([
    "bulk",
    "-H",
    host,
    "-p",
    String(port),
    "-t",
    "60",
    "--send",
    "bulk\n",
    "--down",
    "1G",
    ...(tls ? ["--tls"] : []),
  ]);
  return { value: r.bytes_in / r.wall_s / 2 ** 20, ok: r.ok, n: r.started };
};

// Every path answers before the runs start.
for (const [port, tls] of [
  [8080, false],
  [8081, false],
  [8081, true],
  [8086, false],
  [8086, true],
  [9443, true],
  [8083, true],
  [8085, false],
]) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      if (conn(port, tls, 1).ok > 0) break;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) {
      if (process.env.BENCH_KEEP) {
        console.error(`bench: kept: ${S} ${C}`);
        execFileSync("sleep", ["100"]);
      }
      console.error(`bench: fatal: port ${port}${tls ? " (TLS)" : ""} never answered`);
      for (const [name, log] of logs) console.error(`--- ${name}\n${log()}`);
      process.exit(111);
    }
    execFileSync("sleep", ["0.2"]);
  }
}

const workloads = [
  {
    name: "connections/s, plaintext, c=16",
    unit: "conn/s",
    ref: "direct",
    runs: {
      direct: () => conn(8080, false),
      ours: () => conn(8081, false),
      "ours-2w": () => conn(8086, false),
      haproxy: () => conn(8085, false),
    },
  },
  {
    name: "TLS handshakes/s, ECDSA P-256, c=16",
    unit: "hs/s",
    ref: "ours-tlsd",
    runs: {
      "ours-tlsd": () => conn(9443, true),
      "ours-tlsd-node": () => conn(9444, true),
      ours: () => conn(8081, true),
      "ours-2w": () => conn(8086, true),
      haproxy: () => conn(8083, true),
    },
  },
  {
    name: "1 GiB down, plaintext",
    unit: "MiB/s",
    ref: "direct",
    runs: {
      direct: () => bulk(8080, false),
      ours: () => bulk(8081, false),
      haproxy: () => bulk(8085, false),
    },
  },
  {
    name: "1 GiB down, TLS",
    unit: "MiB/s",
    ref: "ours-tlsd",
    runs: {
      "ours-tlsd": () => bulk(9443, true),
      "ours-tlsd-node": () => bulk(9444, true),
      ours: () => bulk(8081, true),
      haproxy: () => bulk(8083, true),
    },
  },
];

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const lines = [
  `# transparent interception (${new Date().toISOString()}, ${rounds} interleaved rounds, namespaces on a veth pair)`,
  "",
  "| workload | path | median | [min..max] | ratio to ref (median of per-round) |",
  "|---|---|---|---|---|",
];
// TRANSPARENT_ONLY=0,2 runs only those workloads (by index).
const chosen = process.env.TRANSPARENT_ONLY?.split(",").map(Number);
for (const w of workloads.filter((_, i) => !chosen || chosen.includes(i))) {
  const names = Object.keys(w.runs);
  const values = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < rounds; round++) {
    // The order rotates each round, so that every path sees the same drift.
    const order = names.map((_, i) => names[(i + round) % names.length]);
    for (const name of order) {
      const r = w.runs[name]();
      if (r.ok !== r.n)
        console.error(
          `bench: warning: ${w.name} ${name}: ${r.n - r.ok} of ${r.n} failed: ${JSON.stringify(r.errors)}`,
        );
      values[name].push(r.value);
      console.error(`bench: ${w.name} round ${round + 1} ${name}: ${r.value.toFixed(1)} ${w.unit}`);
    }
  }
  for (const name of names) {
    const v = values[name];
    const ratios = v.map((x, i) => x / values[w.ref][i]);
    lines.push(
      `| ${w.name} | ${name} | ${median(v).toFixed(0)} ${w.unit} | [${Math.min(...v).toFixed(0)}..${Math.max(...v).toFixed(0)}] | ${name === w.ref ? "ref" : `${median(ratios).toFixed(2)}× [${Math.min(...ratios).toFixed(2)}..${Math.max(...ratios).toFixed(2)}]`} |`,
    );
  }
}
if (process.env.BENCH_LOGS)
  for (const [name, log] of logs) console.error(`--- ${name}\n${log().slice(-3000)}`);
const table = `${lines.join("\n")}\n`;
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
writeFileSync(join(out, `${stamp}-transparent.md`), table);
process.stdout.write(table);
stop();
