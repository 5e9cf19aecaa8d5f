// npm run bench: our tcpserver beside djb's, accept + spawn /bin/echo hi, concurrency 1 and 16,
// on an idle server and on one that holds 2,000 idle connections. Uses the shared harness in
// ../shared/bench (its bench.py drives the servers and its loadgen the load); the table it
// prints is what the README shows.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const harness = process.env.BENCH_HARNESS ?? join(root, "..", "shared", "bench");
if (!existsSync(join(harness, "bench.py"))) {
  console.error(`bench: fatal: no harness at ${harness} (set BENCH_HARNESS)`);
  process.exit(111);
}
const out = join(root, "bench", "results");
mkdirSync(out, { recursive: true });
if (!existsSync(join(harness, "build", "loadgen"))) {
  execFileSync("bash", [join(harness, "setup.sh")], { stdio: "inherit" });
}
const ours = join(root, "bin", "tcpserver");
const common = "-R -H -l 0 -c 10000 -b 1024 127.0.0.1 $PORT $PROG";
const rounds = process.env.BENCH_ROUNDS ?? "5";
const extra = process.argv.slice(2);
const result = spawnSync(
  "python3",
  [
    join(harness, "bench.py"),
    "conn",
    "--anchors",
    "tcpserver",
    "--plain",
    `ts-tcpserver=exec ${ours} ${common}`,
    "--ref",
    "tcpserver",
    "--rounds",
    rounds,
    "-c",
    "1,16",
    "--out",
    out,
    ...extra,
  ],
  { stdio: "inherit" },
);
process.exit(result.status ?? 1);
