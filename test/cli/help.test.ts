// --help on every program (issue 14): what it does, its usage and where its page is, on stdout,
// exit 0; any other unknown option is still djb's usage error, exit 100.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { escapeRegExp } from "../helpers/normalize.ts";
import { ROOT, ours, run } from "../helpers/programs.ts";

// Every program the package installs, so that a new one cannot go without.
const PROGRAMS = Object.keys(
  (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: Record<string, string> })
    .bin,
);

for (const name of PROGRAMS) {
  test(`${name} --help: one paragraph on stdout, exit 0`, async () => {
    // No fds 6/7 for tlsc and no stdin: --help needs neither.
    const r = await run(ours(name), ["--help"], { stdio: ["ignore", "pipe", "pipe"] });
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    assert.match(r.stdout, new RegExp(`^${name}: .+\\n`));
    assert.match(
      r.stdout,
      new RegExp(`\\nEvery option, .*: man ${name}, or docs/${name}\\.md in ucspi-tls\\.\\n$`),
    );
    assert.ok(existsSync(join(ROOT, "docs", `${name}.md`)), "the page it names is there");
    if (name !== "tcprules" && name !== "tcprulescheck")
      assert.match(r.stdout, new RegExp(`\\nusage: ${name} `));
  });
}

test("every program starts from V8's compile cache of its bundle, which the build made (the launcher preloads dist/compile-cache.cjs)", async () => {
  for (const name of PROGRAMS) {
    // Node's own account of the cache (its debug output, on stderr).
    const r = await run(ours(name), ["--help"], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, NODE_DEBUG_NATIVE: "COMPILE_CACHE" },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `V8 code cache for CommonJS ${escapeRegExp(`${ROOT}/dist/${name}.cjs`)} was accepted`,
      ),
      r.stderr,
    );
  }
});

/** `name args` with its stdout /dev/full, a pipe whose reader is gone, or closed: its stderr
 * and exit code. */
async function stdoutGone(name: string, args: string[], how: "full" | "pipe" | "closed") {
  if (how === "closed")
    return run("/bin/sh", ["-c", 'exec "$0" "$@" >&-', ours(name), ...args], {
      stdio: ["ignore", "ignore", "pipe"],
    });
  const full = how === "full" ? openSync("/dev/full", "w") : undefined;
  const child = spawn(ours(name), args, { stdio: ["ignore", full ?? "pipe", "pipe"] });
  if (full !== undefined) closeSync(full);
  child.stdout?.destroy();
  let stderr = "";
  child.stderr?.on("data", (b: Buffer) => (stderr += b.toString("latin1")));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, stderr };
}

// Ours died with Node's stack trace (the stage programs, tls-everywhere --dry-run) or "fatal:
// internal error: EPIPE: broken pipe, write"; with stdout closed --help went to the launcher's
// /dev/null and exited 0, the text lost.
for (const name of PROGRAMS) {
  test(`${name} --help where stdout cannot take it: one line saying so, exit 111`, async () => {
    for (const [how, cause] of [
      ["full", "out of disk space"],
      ["pipe", "broken pipe"],
      ["closed", "file descriptor not open"],
    ] as const) {
      const r = await stdoutGone(name, ["--help"], how);
      assert.deepEqual(
        [r.code, r.stderr],
        [111, `${name}: fatal: unable to write to stdout: ${cause}\n`],
        how,
      );
    }
  });
}

test("tls-everywhere --dry-run with stdout full: one line saying so, exit 111", async () => {
  const r = await stdoutGone("tls-everywhere", ["--dry-run", "--ports=25"], "full");
  assert.deepEqual(
    [r.code, r.stderr],
    [111, "tls-everywhere: fatal: unable to write to stdout: out of disk space\n"],
  );
});

test("tcpserver and tcpclient: Debian's ucspi-tcp-ipv6 usage line as its own, then ours beyond it", async () => {
  const server = await run(ours("tcpserver"), ["--help"], { stdio: ["ignore", "pipe", "pipe"] });
  assert.match(
    server.stdout,
    /\nusage: tcpserver \[ -461UXpPhHrRoOdDqQv \] .* host port program\nbeyond djb's: \[ -C n \] .*\[ --drain seconds \] \[ --metrics address \]\n/,
  );
  const client = await run(ours("tcpclient"), ["--help"], { stdio: ["ignore", "pipe", "pipe"] });
  assert.match(
    client.stdout,
    /\nusage: tcpclient \[ -46hHrRdDqQv \] .* \[ -I interface \] host port program\nEvery option/,
  );
});

test("an unknown option is still a usage error, exit 100", async () => {
  for (const name of ["tcpserver", "tcpclient", "tlsd", "starttls-wrapper", "tls-sniff"]) {
    const r = await run(ours(name), ["--bogus"], { stdio: ["ignore", "pipe", "pipe"] });
    assert.equal(r.code, 100, name);
    assert.match(r.stderr, new RegExp(`^${name}: illegal option -- bogus\\n${name}: usage: `));
  }
});

test("on a Node older than 24 every program says so in one line and exits 111", async () => {
  const fake = join(ROOT, "test", "fixtures", "node-20.cjs");
  for (const name of ["tlsd", "tls-keygen", "tcpserver"]) {
    const r = await run(
      process.execPath,
      ["-r", fake, join(ROOT, "dist", `${name}.cjs`), "--help"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    assert.equal(r.code, 111, name);
    assert.equal(r.stdout, "");
    assert.equal(
      r.stderr,
      `${name}: fatal: Node.js 24 or later is needed, this is 20.20.2: on Linux x86-64 ucspi-tls brings its own (npm install), elsewhere put Node 24 first on PATH\n`,
    );
  }
});
