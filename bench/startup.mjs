// node bench/startup.mjs: tlsd's start-up as a process of its own, against a bare `node -e 0`
// on the same Node binary (the goal: at most 1.3x), in both runtime forms: the bundle
// (bin/tlsd: the launcher, node, dist/tlsd.cjs; a checkout and the npm package) and the single
// executable (the launcher, build/ucspi-tls with every program and V8's code cache of them; the
// Debian package; scripts/build-sea.mjs, which this runs first). Three paths, all timed with
// hyperfine:
//   usage  bin/tlsd with no arguments: loads, prints its usage line, exits 100;
//   ready  bin/tlsd with CERTFILE/KEYFILE on a socket that ends at once (bench/startup/
//          sockpair.c): loads the TLS code and the certificate, starts the handshake, sees EOF
//          and exits 98, i.e. everything a connection pays before the first TLS byte;
//   conn   djb's tcpserver spawning bin/tlsd /bin/true, one client connection per run (connect,
//          full handshake, read to the end: bench/startup/tls-connect.c), against the same
//          tcpserver spawning `node -e 0` (connect, read to EOF), and spawning /bin/true.
// The single executable runs from a scratch copy of the Debian package's layout (bin/tlsd → the
// launcher, build/ucspi-tls beside it); "ucspi-tls --version" is its floor, as `node -e 0` is
// node's. STARTUP_RUNS (default 40) runs per command; STARTUP_MARKDOWN=FILE also writes the
// table there. NODE_EXTRA_CA_CERTS, when set, makes every TLS context parse those certificates
// too (about 3 ms for Debian's bundle): a server's environment usually lacks it;
// STARTUP_KEEP_EXTRA_CA=1 keeps it for the measurement.
import { execFileSync, spawn } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, listening } from "./ports.mjs";
import { serversNode as node } from "./private-node.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
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
  // The single executable, in the package's layout: the launcher finds it beside itself.
  const seaScript = join(root, "scripts/build-sea.mjs");
  const built = execFileSync(process.execPath, [seaScript, "--no-build"], { encoding: "utf8" });
  const single = built.trim();
  const sea = join(dir, "sea");
  mkdirSync(join(sea, "build"), { recursive: true });
  mkdirSync(join(sea, "bin"));
  copyFileSync(join(root, "build/ucspi-launch"), join(sea, "build/ucspi-launch"));
  symlinkSync(single, join(sea, "build/ucspi-tls"));
  symlinkSync("../build/ucspi-launch", join(sea, "bin/tlsd"));
  const seaTlsd = join(sea, "bin/tlsd");

  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  execFileSync(join(bin, "tls-keygen"), ["self-signed", cert, key]);
  env.CERTFILE = cert;
  env.KEYFILE = key;

  const ports = [];
  for (let i = 0; i < 4; i++) ports.push(await freePort());
  const [pNode, pTlsd, pSea, pTrue] = ports;
  servers.push(serve(pNode, [node, "-e", "0"]));
  servers.push(serve(pTlsd, [join(bin, "tlsd"), "/bin/true"]));
  servers.push(serve(pSea, [seaTlsd, "/bin/true"]));
  servers.push(serve(pTrue, ["/bin/true"]));
  for (const port of ports) await listening(port);

  // [label, command, what its ratio is to]; "conn" rows to the tcpserver + node -e 0 one.
  const commands = [
    ["node -e 0", `${node} -e 0`, "node"],
    ["single executable: ucspi-tls --version", `${single} --version`, "node"],
    ["tlsd, usage: bundle", `${bin}/tlsd`, "node"],
    ["tlsd, usage: single executable", seaTlsd, "node"],
    ["tlsd, ready: bundle", `${sockpair} ${bin}/tlsd /bin/cat`, "node"],
    ["tlsd, ready: single executable", `${sockpair} ${seaTlsd} /bin/cat`, "node"],
    ["sockpair node -e 0", `${sockpair} ${node} -e 0`, "node"],
    ["conn: tcpserver + node -e 0", `${client} -p 127.0.0.1 ${pNode}`, "conn"],
    ["conn: tcpserver + tlsd, bundle", `${client} 127.0.0.1 ${pTlsd}`, "conn"],
    ["conn: tcpserver + tlsd, single executable", `${client} 127.0.0.1 ${pSea}`, "conn"],
    ["conn: tcpserver + /bin/true", `${client} -p 127.0.0.1 ${pTrue}`, "conn"],
  ];
  const json = join(dir, "hyperfine.json");
  execFileSync(
    "hyperfine",
    ["-N", "-i", "-w", "5", "-r", runs, "--export-json", json, ...commands.map((c) => c[1])],
    { stdio: ["ignore", "inherit", "inherit"], env },
  );
  const results = JSON.parse(readFileSync(json, "utf8")).results;
  const ms = (s) => (s * 1000).toFixed(1);
  const mean = (label) => results[commands.findIndex((c) => c[0] === label)].mean;
  const base = { node: mean("node -e 0"), conn: mean("conn: tcpserver + node -e 0") };
  const lines = ["| path | mean ± sd (ms) | ratio |", "|---|---|---|"];
  results.forEach((r, i) => {
    const [label, , to] = commands[i];
    const ratio = `${(r.mean / base[to]).toFixed(2)}x${to === "conn" ? " conn node -e 0" : ""}`;
    lines.push(`| ${label} | ${ms(r.mean)} ± ${ms(r.stddev)} | ${ratio} |`);
  });
  // The two runtime forms of each path side by side.
  lines.push(
    "",
    "| path | bundle (ms) | single executable (ms) | difference |",
    "|---|---|---|---|",
  );
  for (const [path, bundle, single] of [
    ["usage", "tlsd, usage: bundle", "tlsd, usage: single executable"],
    ["ready", "tlsd, ready: bundle", "tlsd, ready: single executable"],
    ["conn", "conn: tcpserver + tlsd, bundle", "conn: tcpserver + tlsd, single executable"],
  ]) {
    const [b, s] = [mean(bundle), mean(single)];
    const change = `${ms(s - b)} ms (${(((s - b) / b) * 100).toFixed(1)}%)`;
    lines.push(`| ${path} | ${ms(b)} | ${ms(s)} | ${change} |`);
  }
  console.log(`\n${lines.join("\n")}`);
  if (process.env.STARTUP_MARKDOWN)
    writeFileSync(process.env.STARTUP_MARKDOWN, `${lines.join("\n")}\n`);
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
