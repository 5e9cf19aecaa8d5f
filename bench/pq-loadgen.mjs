// A TLS load client on Node 24's OpenSSL (3.5), which can offer the post-quantum hybrid group
// X25519MLKEM768; Debian 12's OpenSSL 3.0, which the shared harness's C loadgen links, cannot.
// It speaks the harness loadgen's command line and JSON for `conn --tls` (bench/run.mjs part
// `pq` puts it in a private copy of the harness as build/loadgen), so the harness drives the
// servers, reads their CPU from /proc and keeps the rounds as for every other TLS part:
//   pq-loadgen.mjs conn -p PORT [-H HOST] [-n N] [-c C] [-t SECS] [--io-timeout S] --tls
//                  [--groups L] [--sni NAME] [--tls-max 1.2|1.3] [--ciphersuites L]
// Each connection is a full handshake (no session is offered), reads to the server's EOF and
// closes. Load comes from worker processes (one per core, the c connections shared among them),
// so one JavaScript event loop does not cap the rate. Every loop is bounded by -n and -t.
import { fork } from "node:child_process";
import { availableParallelism } from "node:os";
import { connect } from "node:tls";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    p: { type: "string" },
    H: { type: "string", default: "127.0.0.1" },
    n: { type: "string", default: "1000" },
    c: { type: "string", default: "1" },
    t: { type: "string", default: "10" },
    "io-timeout": { type: "string", default: "10" },
    tls: { type: "boolean" },
    groups: { type: "string" },
    sni: { type: "string", default: "localhost" },
    "tls-max": { type: "string" },
    ciphersuites: { type: "string" },
    worker: { type: "string" },
  },
});

if (values.worker !== undefined) await worker();
else await main();

async function main() {
  if (positionals[0] !== "conn" || !values.tls || !values.p) {
    console.error(
      "pq-loadgen: usage: pq-loadgen.mjs conn -p PORT --tls [-n N] [-c C] [-t S] [--groups L]",
    );
    process.exit(2);
  }
  const n = Number(values.n);
  const c = Number(values.c);
  const workers = Math.min(c, availableParallelism());
  const started = process.hrtime.bigint();
  const reports = await Promise.all(
    Array.from({ length: workers }, (_, i) => {
      // Worker i runs its share of the concurrency and of the connections.
      const share = (total) => Math.floor(total / workers) + (i < total % workers ? 1 : 0);
      const args = [...process.argv.slice(2), "--worker", `${share(n)},${share(c)}`];
      const child = fork(process.argv[1], args, {
        stdio: ["ignore", "ignore", "inherit", "ipc"],
      });
      return new Promise((resolve, reject) => {
        child.once("message", resolve);
        child.once("exit", (code) => code !== 0 && reject(new Error(`worker ${i} exited ${code}`)));
      });
    }),
  );
  const wall = Number(process.hrtime.bigint() - started) / 1e9;
  const sum = (key) => reports.reduce((s, r) => s + r[key], 0);
  const errors = {};
  for (const r of reports)
    for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
  const hs = reports.flatMap((r) => r.hs).sort((a, b) => a - b);
  const pct = (q) => (hs.length ? hs[Math.min(hs.length - 1, Math.floor(q * hs.length))] : 0);
  const first = reports.find((r) => r.tls);
  const ok = sum("ok");
  console.log(
    JSON.stringify({
      mode: "conn",
      tls: 1,
      n,
      c,
      started: sum("started"),
      ok,
      unclean: 0,
      errors,
      wall_s: wall,
      rate_per_s: ok / wall,
      bytes_in: sum("bytesIn"),
      bytes_out: 0,
      client_cpu_s: sum("cpu"),
      ...(first?.tls ?? {}),
      hs_p50_ms: pct(0.5),
      hs_p90_ms: pct(0.9),
      hs_p99_ms: pct(0.99),
      hs_max_ms: hs.at(-1) ?? 0,
    }),
  );
}

async function worker() {
  const [n, c] = values.worker.split(",").map(Number);
  const deadline = Date.now() + Number(values.t) * 1000;
  const ioTimeout = Number(values["io-timeout"]) * 1000;
  const report = { started: 0, ok: 0, bytesIn: 0, errors: {}, hs: [], tls: undefined, cpu: 0 };
  const fail = (kind) => (report.errors[kind] = (report.errors[kind] ?? 0) + 1);
  const one = () =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const socket = connect({
        host: values.H,
        port: Number(values.p),
        servername: values.sni,
        rejectUnauthorized: false,
        ...(values.groups ? { ecdhCurve: values.groups } : {}),
        ...(values["tls-max"] ? { maxVersion: `TLSv${values["tls-max"]}` } : {}),
        ...(values.ciphersuites ? { ciphersuites: values.ciphersuites } : {}),
      });
      let bytes = 0;
      socket.setTimeout(ioTimeout, () => socket.destroy(new Error("timeout")));
      socket.once("secureConnect", () => {
        report.hs.push(performance.now() - t0);
        report.tls ??= {
          tls_proto: socket.getProtocol(),
          tls_cipher: socket.getCipher().standardName,
          tls_group: socket.getEphemeralKeyInfo()?.name,
        };
      });
      socket.on("data", (b) => (bytes += b.length));
      socket.once("end", () => socket.end());
      socket.once("error", (e) => {
        fail(e.message === "timeout" ? "timeout" : "tls");
        resolve();
      });
      socket.once("close", (hadError) => {
        if (!hadError && bytes > 0) {
          report.ok++;
          report.bytesIn += bytes;
        } else if (!hadError) fail("eof");
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (report.started < n && Date.now() < deadline) {
        report.started++;
        await one();
      }
    }),
  );
  const usage = process.cpuUsage();
  report.cpu = (usage.user + usage.system) / 1e6;
  process.send(report, () => process.exit(0));
}
