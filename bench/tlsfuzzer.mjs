// node bench/tlsfuzzer.mjs: tlsfuzzer's scripts against our `tcpserver tlsd` (on node:tls,
// `tlsd --engine node`, and on its native engine, the default) and stunnel's daemon, side by side in one run: how
// many of each script's conversations each server passes.
// Not a speed measure and not in `npm run bench` (tlsfuzzer is neither in Debian 12 nor on
// this machine's PyPI mirror): point TLSFUZZER at a checkout of github.com/tlsfuzzer/tlsfuzzer
// and TLSLITE at one of github.com/tlsfuzzer/tlslite-ng (python3-ecdsa from pip or apt).
// All three servers: one RSA-2048 certificate (tlsfuzzer's scripts mostly expect RSA), each
// connection running bench/tlsfuzzer-http (reads the request line, answers a short HTTP/1.0
// response and ends), so a script's "GET / then close" conversations see the same program.
// TLSFUZZER_ONLY=script.py,... runs those alone. Results: bench/results/tlsfuzzer-STAMP.md.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "./ports.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const fuzzer = process.env.TLSFUZZER;
const tlslite = process.env.TLSLITE;
if (!fuzzer || !tlslite) {
  process.stderr.write("tlsfuzzer: fatal: set TLSFUZZER and TLSLITE to the two checkouts\n");
  process.exit(100);
}

/** Our TLS 1.2 offers AEAD suites with forward secrecy only: the scripts that take -C are given
 * one, where their default (TLS_RSA_WITH_AES_128_CBC_SHA) would fail every conversation. */
const GCM = ["-C", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"];
const SCRIPTS = [
  ["test-tls13-conversation.py"],
  ["test-tls13-ccs.py"],
  ["test-tls13-connection-abort.py"],
  ["test-tls13-empty-alert.py"],
  ["test-tls13-finished.py"],
  ["test-tls13-hrr.py"],
  ["test-tls13-invalid-ciphers.py"],
  ["test-tls13-keyshare-omitted.py"],
  ["test-tls13-keyupdate.py"],
  ["test-tls13-lengths.py"],
  ["test-tls13-nociphers.py"],
  ["test-tls13-record-padding.py"],
  ["test-tls13-rsa-signatures.py"],
  ["test-tls13-session-resumption.py"],
  ["test-tls13-signature-algorithms.py"],
  ["test-tls13-unencrypted-alert.py"],
  ["test-tls13-version-negotiation.py", ...GCM],
  ["test-tls13-zero-content-type.py"],
  ["test-tls13-zero-length-data.py"],
  ["test-connection-abort.py", ...GCM],
  ["test-ecdhe-rsa-key-exchange-with-bad-messages.py", ...GCM],
  ["test-fuzzed-ciphertext.py", ...GCM],
  ["test-invalid-compression-methods.py", ...GCM],
  ["test-record-layer-fragmentation.py", ...GCM],
  ["test-renegotiation-disabled.py", ...GCM],
  ["test-truncating-of-client-hello.py", ...GCM],
].filter(([s]) => !process.env.TLSFUZZER_ONLY || process.env.TLSFUZZER_ONLY.split(",").includes(s));

const tmp = mkdtempSync(join(tmpdir(), "ucspi-tlsfuzzer-"));
const cert = join(tmp, "rsa.pem");
const key = join(tmp, "rsa.key");
const http = join(root, "bench", "tlsfuzzer-http");
spawnSync(
  join(root, "bin", "tls-keygen"),
  ["self-signed", "-t", "rsa", "-n", "localhost", cert, key],
  {
    stdio: "inherit",
  },
);

const ourPort = await freePort();
const nativePort = await freePort();
const stunnelPort = await freePort();
/** `tcpserver tlsd` on port, with tlsd's extra options (the engine) before the program. */
const tlsd = (port, options) =>
  spawn(
    join(root, "bin", "tcpserver"),
    ["-RHl0", "-c", "100", "127.0.0.1", String(port), "tlsd", ...options, http],
    {
      env: { PATH: `${join(root, "bin")}:/usr/bin:/bin`, CERTFILE: cert, KEYFILE: key },
      stdio: "ignore",
    },
  );
const ours = tlsd(ourPort, ["--engine", "node"]);
const native = tlsd(nativePort, ["--engine", "native"]);
const conf = join(tmp, "stunnel.conf");
writeFileSync(
  conf,
  `foreground = yes\npid =\ndebug = 3\n[t]\naccept = 127.0.0.1:${stunnelPort}\ncert = ${cert}\nkey = ${key}\nexec = ${http}\nexecArgs = tlsfuzzer-http\n`,
);
const stunnel = spawn("stunnel4", [conf], { stdio: "ignore" });
await sleep(1500);

/** PASS and FAIL counts of one script against one port (a run past 10 minutes counts none). */
function runScript([script, ...args], port) {
  const r = spawnSync(
    "python3",
    [join(fuzzer, "scripts", script), "-h", "127.0.0.1", "-p", String(port), ...args],
    {
      env: { ...process.env, PYTHONPATH: `${fuzzer}:${tlslite}` },
      encoding: "utf8",
      timeout: 600_000,
    },
  );
  const count = (what) =>
    Number(new RegExp(`^${what}: (\\d+)$`, "m").exec(r.stdout ?? "")?.[1] ?? 0);
  return { pass: count("PASS"), fail: count("FAIL") };
}

const rows = [];
try {
  for (const entry of SCRIPTS) {
    const cells = [ourPort, nativePort, stunnelPort]
      .map((port) => runScript(entry, port))
      .map(({ pass, fail }) => `${pass} / ${fail}`);
    const row = `| ${entry.join(" ")} | ${cells.join(" | ")} |`;
    process.stdout.write(`${row}\n`);
    rows.push(row);
  }
} finally {
  ours.kill();
  native.kill();
  stunnel.kill();
  rmSync(tmp, { recursive: true, force: true });
}
const out = join(root, "bench", "results");
mkdirSync(out, { recursive: true });
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").replace(/\..*/, "");
writeFileSync(
  join(out, `tlsfuzzer-${stamp}.md`),
  `| script | ours, node:tls: pass / fail | ours, native engine: pass / fail | stunnel: pass / fail |\n` +
    `|---|---:|---:|---:|\n${rows.join("\n")}\n`,
);
