// What tlsd's certificate store costs with many SNI pairs and client certificates: a CERTDIR
// of BENCH_NAMES certificates (200) made by tls-keygen, CAFILE the system's CA bundle, and a
// CRLFILE of BENCH_REVOKED entries (5,000). Makes every context (as the first client for each
// name does), then again (SIGHUP's reload), and counts the reads of CAFILE and CRLFILE. Not part of the test suite: run it by
// hand, `node bench/cert-store.mjs` (the files are kept in BENCH_DIR for the next run).
import { execFileSync } from "node:child_process";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const names = Number(process.env.BENCH_NAMES ?? 200);
const revoked = Number(process.env.BENCH_REVOKED ?? 5000);
const dir = process.env.BENCH_DIR ?? `/tmp/ucspi-bench-cert-store-${names}-${revoked}`;
const CAFILE = process.env.BENCH_CAFILE ?? "/etc/ssl/certs/ca-certificates.crt";
const live = join(dir, "live");
const CRLFILE = join(dir, "crl.pem");

function setUp() {
  if (existsSync(join(dir, "done"))) return;
  mkdirSync(live, { recursive: true });
  const keygen = (...args) =>
    execFileSync(join(root, "bin", "tls-keygen"), args, { stdio: ["ignore", "ignore", "inherit"] });
  const ca = join(dir, "ca.pem");
  const caKey = join(dir, "ca.key");
  keygen("ca", "-f", "-n", "Bench CA", ca, caKey);
  for (let i = 0; i < names; i++) {
    const name = `host${i}.example`;
    mkdirSync(join(live, name), { recursive: true });
    const [cert, key] = [join(live, name, "fullchain.pem"), join(live, name, "privkey.pem")];
    keygen("leaf", "-f", "-s", name, "-C", ca, "-K", caKey, cert, key);
  }
  // openssl ca's database, filled by hand: one revoked serial per line.
  const index = [];
  for (let i = 1; i <= revoked; i++)
    index.push(
      `R\t301231000000Z\t250101000000Z\t${i.toString(16).padStart(8, "0").toUpperCase()}\tunknown\t/CN=r${i}`,
    );
  writeFileSync(join(dir, "index.txt"), index.join("\n") + "\n");
  writeFileSync(join(dir, "crlnumber"), "01\n");
  const cnf = join(dir, "ca.cnf");
  writeFileSync(
    cnf,
    `[ca]\ndefault_ca = b\n[b]\ndatabase = ${dir}/index.txt\ncrlnumber = ${dir}/crlnumber\n` +
      `default_md = sha256\ndefault_crl_days = 30\ncertificate = ${ca}\nprivate_key = ${caKey}\n`,
  );
  execFileSync("openssl", ["ca", "-config", cnf, "-gencrl", "-out", CRLFILE], { stdio: "ignore" });
  writeFileSync(join(dir, "done"), "");
}

setUp();

// Every read of CAFILE and CRLFILE, whoever makes it (cert-store.ts imports readFileSync).
const fs = createRequire(import.meta.url)("node:fs");
const reads = new Map();
const readFileSync = fs.readFileSync;
fs.readFileSync = (file, ...rest) => {
  if (file === CAFILE || file === CRLFILE) reads.set(file, (reads.get(file) ?? 0) + 1);
  return readFileSync(file, ...rest);
};
syncBuiltinESMExports();
const { CertStore, storeConfig } = await import("../src/tls/cert-store.ts");

const env = { CERTDIR: live, CAFILE, CRLFILE };
const count = () =>
  `CAFILE read ${reads.get(CAFILE) ?? 0}x, CRLFILE read ${reads.get(CRLFILE) ?? 0}x`;
// Wall time, and this process's CPU time (less moved by whatever else runs on the machine).
const timed = (what, f) => {
  reads.clear();
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  f();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const { user, system } = process.cpuUsage(cpu);
  const cpuMs = (user + system) / 1000;
  console.log(`${what}: ${ms.toFixed(0)} ms (CPU ${cpuMs.toFixed(0)} ms), ${count()}`);
};

console.log(`${names} CERTDIR names, CAFILE ${CAFILE}, CRLFILE with ${revoked} serials`);
const store = new CertStore(storeConfig(env, 1, true));
timed("start (CERTDIR scanned)", () => store.check());
// Each name once, as clients asking for it would: CERTDIR's contexts are made when first asked.
timed("first client for each name (every context made)", () => {
  for (let i = 0; i < names; i++) store.contextFor(`host${i}.example`);
});
timed("reload (SIGHUP)", () => {
  const problems = store.reload();
  if (problems.length > 0) throw new Error(problems.join("; "));
});
