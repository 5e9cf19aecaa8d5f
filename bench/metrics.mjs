// npm run bench (part "metrics"): what tcpserver --metrics costs a TLS connection. Full
// handshakes per second (ECDSA P-256, c=1 and c=16) through `tcpserver tlsd $PROG` without the
// option (the reference) and with `--metrics` on a UNIX socket, scraped every 5 s by curl as
// Prometheus would (more often than its default 15 s), both in the same run, interleaved rounds,
// through the harness (bench/run.mjs sets it up). The target: at most 2% fewer handshakes/s.
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = join(root, "bin");
const harness = join(root, "build", "bench-harness");
const out = join(root, "bench", "results");
mkdirSync(out, { recursive: true });
const common = "-R -H -l 0 -c 10000 -b 1024";
const server = (metrics) =>
  `CERTFILE=$CERT KEYFILE=$KEY PATH=${bin}:$PATH exec ${bin}/tcpserver ${common} ${metrics} ` +
  "127.0.0.1 $PORT tlsd $PROG";
// The scraper lives in the server's session, so the harness counts its CPU and ends it.
const scraper =
  "(while sleep 5; do curl -s --unix-socket $TMPD/metrics.sock http://localhost/metrics " +
  ">/dev/null; done) & ";

for (const c of ["1", "16"]) {
  const r = spawnSync(
    "python3",
    [
      join(harness, "bench.py"),
      "tls",
      "--anchors",
      "none",
      "--tls",
      `no-metrics=${server("")}`,
      "--tls",
      `metrics=${scraper}${server("--metrics $TMPD/metrics.sock")}`,
      "--ref",
      "no-metrics",
      "--keys",
      "ecdsa",
      "--rounds",
      process.env.BENCH_ROUNDS ?? "3",
      "-c",
      c,
      "--tag",
      `metrics-c${c}`,
      "--out",
      out,
    ],
    { stdio: "inherit" },
  );
  if (r.status !== 0) process.exit(r.status ?? 1);
}
