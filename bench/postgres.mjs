// node bench/postgres.mjs (or BENCH_ONLY=postgres npm run bench): PostgreSQL with TLS from
// starttls-wrapper beside PostgreSQL's own TLS (issue 13), side by side in one run, in
// interleaved rounds, with one PostgreSQL 15 server (ssl=on) behind both:
//   own      pgbench → PostgreSQL's TLS (ssl=on)
//   wrapper  pgbench → tcpserver starttls-wrapper -p postgres tcpforward → PostgreSQL, plaintext
// Load: Debian's pgbench with a script of `SELECT 1`, sslmode=verify-full against the one
// certificate both use (ECDSA P-256, made by bin/tls-keygen):
//   connect  -C: a new connection (SSLRequest, handshake, start-up, query) per transaction,
//            concurrency 1 and 8 (PG_CONCURRENCY);
//   query    connections kept, queries back to back (the relay's cost per query): one
//            connection (latency-bound: the relay's two hops per query), and eight.
// Server CPU per connection: PostgreSQL's postmaster utime+stime+cutime+cstime (the backends
// are reaped into its cutime/cstime) plus our tcpserver's or pgbouncer's, from /proc before and
// after each measurement. PG_SECONDS (default 3) per measurement, BENCH_ROUNDS (default 3).
// Results: a markdown table on stdout and bench/results/postgres-STAMP.{json,md}.
import { execFileSync, spawn } from "node:child_process";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "bin");
const PG_BIN = "/usr/lib/postgresql/15/bin";
const PGBOUNCER = "/usr/sbin/pgbouncer";
const rounds = Number(process.env.BENCH_ROUNDS ?? "3");
const seconds = process.env.PG_SECONDS ?? "3";
const concurrencies = (process.env.PG_CONCURRENCY ?? "1,8").split(",").map(Number);
const TICK_MS = 1000 / Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim() || 100);

const out = join(root, "bench", "results");
mkdirSync(out, { recursive: true });
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").replace(/\..*/, "");
const tmp = mkdtempSync(join(tmpdir(), "ucspi-pg-bench-"));
const children = [];

function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "latin1")
    .replace(/^.*\) /, "")
    .split(" ");
  // utime stime cutime cstime: fields 14-17 of stat, 12-15 after the name.
  return [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i]), 0) * TICK_MS;
}

function freePortSync() {
  const script =
    "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})";
  return Number(execFileSync(process.execPath, ["-e", script]).toString().trim());
}

async function waitFor(check, what) {
  for (let i = 0; i < 300; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`bench postgres: fatal: ${what}`);
}

/** Waits until a PostgreSQL server (or pgbouncer) answers on port. */
function answers(port, what) {
  return waitFor(() => {
    try {
      execFileSync("pg_isready", ["-q", "-h", "127.0.0.1", "-p", String(port)]);
      return true;
    } catch {
      return false;
    }
  }, what);
}

try {
  // One certificate for both paths; PostgreSQL wants its key owned by it and private.
  const uid = Number(execFileSync("id", ["-u", "postgres"]).toString());
  const gid = Number(execFileSync("id", ["-g", "postgres"]).toString());
  chownSync(tmp, uid, gid);
  const cert = join(tmp, "cert.pem");
  const key = join(tmp, "key.pem");
  execFileSync(join(bin, "tls-keygen"), [
    "self-signed",
    "-n",
    "localhost",
    "-s",
    "localhost",
    cert,
    key,
  ]);
  chownSync(key, uid, gid);
  const data = join(tmp, "data");
  execFileSync(
    "runuser",
    ["-u", "postgres", "--", `${PG_BIN}/initdb`, "-D", data, "-A", "trust", "-U", "postgres"],
    { stdio: "ignore" },
  );
  const pgPort = freePortSync();
  const pg = spawn(
    "runuser",
    [
      ...[
        "-u",
        "postgres",
        "--",
        `${PG_BIN}/postgres`,
        "-D",
        data,
        "-p",
        String(pgPort),
        "-k",
        tmp,
      ],
      ...["-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", `ssl_cert_file=${cert}`],
      ...["-c", `ssl_key_file=${key}`, "-c", "max_connections=100", "-c", "fsync=off"],
    ],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  children.push(pg);
  await answers(pgPort, "postgres did not start");
  const postmaster = Number(readFileSync(join(data, "postmaster.pid"), "latin1").split("\n")[0]);

  /** tcpserver starttls-wrapper -p postgres tcpforward `to`: its port and pid. */
  const startWrapper = async (to) => {
    const child = spawn(
      join(bin, "tcpserver"),
      [
        ...["-1", "-R", "-H", "-l", "0", "-c", "200", "127.0.0.1", "0"],
        ...["starttls-wrapper", "-p", "postgres", "tcpforward", ...to],
      ],
      {
        stdio: ["ignore", "pipe", "inherit"],
        env: { ...process.env, PATH: `${bin}:/usr/bin:/bin`, CERTFILE: cert, KEYFILE: key },
      },
    );
    children.push(child);
    const port = await new Promise((resolve) =>
      child.stdout.once("data", (b) => resolve(Number(String(b).trim()))),
    );
    return { port, pids: [postmaster, child.pid] };
  };
  const wrapper = await startWrapper(["127.0.0.1", String(pgPort)]);
  const wrapperUnix = await startWrapper([join(tmp, `.s.PGSQL.${pgPort}`)]);

  let bouncer;
  if (existsSync(PGBOUNCER)) {
    const port = freePortSync();
    const ini = join(tmp, "pgbouncer.ini");
    writeFileSync(join(tmp, "userlist.txt"), '"postgres" ""\n');
    writeFileSync(
      ini,
      [
        "[databases]",
        `postgres = host=127.0.0.1 port=${pgPort} dbname=postgres`,
        "[pgbouncer]",
        `listen_addr = 127.0.0.1`,
        `listen_port = ${port}`,
        "unix_socket_dir =",
        "auth_type = trust",
        `auth_file = ${join(tmp, "userlist.txt")}`,
        "pool_mode = session",
        "max_client_conn = 200",
        "default_pool_size = 20",
        "client_tls_sslmode = require",
        `client_tls_cert_file = ${cert}`,
        `client_tls_key_file = ${key}`,
        `logfile = ${join(tmp, "pgbouncer.log")}`,
        "",
      ].join("\n"),
    );
    const child = spawn("runuser", ["-u", "postgres", "--", PGBOUNCER, "-q", ini], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    children.push(child);
    await answers(port, "pgbouncer did not start");
    const pid = Number(
      execFileSync("pgrep", ["-u", "postgres", "-f", `^${PGBOUNCER} -q ${ini}`]).toString(),
    );
    bouncer = { port, pids: [postmaster, pid] };
    children.push({ kill: (signal) => process.kill(pid, signal) });
  } else {
    console.error(
      `bench postgres: pgbouncer left out: no ${PGBOUNCER} (apt-get install pgbouncer)`,
    );
  }

  const script = join(tmp, "select1.sql");
  writeFileSync(script, "SELECT 1;\n");
  const targets = {
    own: { port: pgPort, pids: [postmaster] },
    wrapper,
    "wrapper, UNIX socket": wrapperUnix,
    ...(bouncer ? { pgbouncer: bouncer } : {}),
  };
  const loads = [
    ...concurrencies.map((c) => ({
      name: `connect c=${c}`,
      connect: true,
      args: ["-C", "-c", String(c), "-j", String(Math.min(c, 2))],
    })),
    { name: "query c=1", args: ["-c", "1", "-j", "1"] },
    { name: "query c=8", args: ["-c", "8", "-j", "2"] },
  ];
  const results = {};
  for (let round = 0; round < rounds; round++) {
    for (const load of loads) {
      // pgbouncer pools its server connections: only the query loads are the same work.
      const names = Object.keys(targets).filter((t) => t !== "pgbouncer" || !load.connect);
      const order = round % 2 === 0 ? names : [...names].reverse();
      for (const target of order) {
        const { port, pids } = targets[target];
        const before = pids.reduce((s, p) => s + cpuMs(p), 0);
        const said = execFileSync(
          `${PG_BIN}/pgbench`,
          [
            "-n",
            "-f",
            script,
            "-T",
            seconds,
            ...load.args,
            "-h",
            "localhost",
            "-p",
            String(port),
            "-U",
            "postgres",
            "postgres",
          ],
          {
            env: {
              ...process.env,
              PGSSLMODE: "verify-full",
              PGSSLROOTCERT: cert,
              PGGSSENCMODE: "disable",
            },
            stdio: ["ignore", "pipe", "pipe"],
          },
        ).toString();
        // The last backends exit after pgbench does: their CPU is the postmaster's once reaped.
        await new Promise((r) => setTimeout(r, 300));
        const cpu = pids.reduce((s, p) => s + cpuMs(p), 0) - before;
        const tps = Number(/tps = ([\d.]+)/.exec(said)?.[1]);
        const done = Number(/number of transactions actually processed: (\d+)/.exec(said)?.[1]);
        if (!(tps > 0) || !(done > 0))
          throw new Error(`bench postgres: fatal: pgbench said:\n${said}`);
        const key = `${load.name}|${target}`;
        (results[key] ??= []).push({ tps, cpuPer: cpu / done });
      }
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const others = Object.keys(targets).filter((t) => t !== "own");
  const lines = [
    `| load | PostgreSQL's TLS /s | ${others.map((t) => `${t} /s (rate)`).join(" | ")} | server CPU per transaction: own | ${others.join(" | ")} |`,
    `|---|---|${others.map(() => "---|").join("")}---|${others.map(() => "---|").join("")}`,
  ];
  for (const load of loads) {
    const at = (target) => results[`${load.name}|${target}`];
    const tps = (target) => median(at(target).map((r) => r.tps));
    const cpu = (target) => median(at(target).map((r) => r.cpuPer));
    const [a, ca] = [tps("own"), cpu("own")];
    const rate = (t) => (at(t) ? `${tps(t).toFixed(0)} (${(tps(t) / a).toFixed(2)}×)` : "-");
    const cost = (t) => (at(t) ? `${cpu(t).toFixed(3)} ms (${(cpu(t) / ca).toFixed(2)}×)` : "-");
    const cells = [load.name, a.toFixed(0), ...others.map(rate), `${ca.toFixed(3)} ms`];
    lines.push(`| ${[...cells, ...others.map(cost)].join(" | ")} |`);
  }
  const table = lines.join("\n");
  console.log(`\n${table}\n`);
  writeFileSync(join(out, `postgres-${stamp}.json`), JSON.stringify(results, null, 2));
  writeFileSync(join(out, `postgres-${stamp}.md`), `${table}\n`);
} finally {
  for (const child of children.reverse()) child.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 1000));
  rmSync(tmp, { recursive: true, force: true });
}
