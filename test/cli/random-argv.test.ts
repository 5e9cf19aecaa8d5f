// Random command lines for every program (fast-check): options of all of ours with and without
// values, numbers out of range, braces, empty and odd strings, in any order. Whatever they are,
// each program ends on its own (tcpserver may also start serving: then it is stopped), and when
// it fails it says so on stderr in lines that each name one of our programs, in our words: no
// stack trace, no runtime's error code, no "undefined". Each runs in a network namespace of its
// own with only a loopback that is down (unshare -n), in a scratch directory, stdin /dev/null:
// a name in argv is never looked up outside, and nothing is written outside the scratch
// directory. tls-everywhere runs with --dry-run first: it prints its rules or refuses.
import assert from "node:assert/strict";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { makePki } from "../helpers/certs.ts";
import { RUNTIME_WORDS } from "../helpers/normalize.ts";
import { BIN, ours, run } from "../helpers/programs.ts";
import { scratchDir } from "../helpers/scratch.ts";

const scratch = scratchDir("argv");
const pki = makePki();
const pair = pki.server("localhost", ["localhost"]);
// On PATH: ours, and of the rest only what TOKENS names and ours may run (a word of TOKENS
// such as "mysql" must not start a real client of the machine's).
// cat and sh say their own failures in one line of a fixed form: what they would print
// themselves depends on the words drawn (GNU cat's usage error is two lines, the second naming
// no program; sh -x and -v echo the script), and their words are not what this test is about.
const others = join(scratch, "bin");
mkdirSync(others);
symlinkSync("/bin/true", join(others, "true"));
for (const name of ["cat", "sh"])
  writeFileSync(
    join(others, name),
    `#!/bin/sh\n/bin/${name} "$@" 2>/dev/null\nstatus=$?\n` +
      `[ $status = 0 ] || echo "${name}: exit $status" >&2\nexit $status\n`,
    { mode: 0o755 },
  );
/** A configuration that lets the TLS programs get past it to their command lines. */
const ENV = { PATH: `${BIN}:${others}`, HOME: scratch, CERTFILE: pair.cert, KEYFILE: pair.key };

/** Every program but tls-everywhere (it keeps its state in /run, outside the namespace). */
const PROGRAMS = [
  "tcpserver",
  "tcpclient",
  "tcprules",
  "tcprulescheck",
  "tlsd",
  "tlsc",
  "starttls-wrapper",
  "tls-sniff",
  "acme-challenge",
  "tcpforward",
  "tls-keygen",
  "ucspi-demo",
];

const TOKENS = [
  ...["-v", "-v2", "-q", "-Q", "-1", "-R", "-r", "-H", "-h", "-l", "-l0", "-x", "-X", "-c"],
  ...["-C", "-b", "-B", "-p", "-P", "-t", "-T", "-K", "-k", "-s", "-S", "-z", "-Z", "-y", "-Y"],
  ...["-j", "-J", "-n", "-N", "-u", "-g", "-U", "-6", "-7", "-e", "-E", "-d", "-D", "-o", "-O"],
  ...["--proxy", "--help", "--alpn", "--sni", "--plain", "--starttls", "--metrics", "--drain"],
  ...[
    "--workers",
    "--transparent",
    "--mod-ssl",
    "--no-verify-cert",
    "--mark",
    "--plaintext-fallback",
  ],
  ...["{", "}", "--", "-", "", " ", "0", "1", "-1", "65536", "99999999999999999999", "1e3"],
  ...["0x10", "NaN", "127.0.0.1", "::1", "0.0.0.0", "localhost", "smtp", "mysql", "xmpp", "h2"],
  ...["cat", "true", "sh", "self-signed", "ensure", "ca", "key", "rules.cdb", "rules.tmp", "é"],
  ...["a:b", "x=y", "12:34", "\t", "%", "../up"],
  // Every program's other options that take a value, in the next word and glued, and numbers
  // of fds (tlsc's -6 and -7 take one): a word taken for a value, or a value taken for an
  // option, is what parsers get wrong; and tlsc -6 9 -7 9 talked to Node's own fds (closed
  // here, Node's by the time tlsc looked) and aborted.
  ...["-I", "-i", "-f", "-66", "-69", "-70", "-k6", "-t0", "-p6", "2", "3", "5", "6", "7"],
  ...["8", "9", "12", "15", "16", "20", "255", "-79", "-611", "-716", "--write-fd=16"],
  ...["--ssh", "--http", "--prefix", "--sni-level", "--servername", "--read-fd", "--write-fd"],
  ...["--read-fd=9", "--local-name", "--source-ports", "--proxy-from", "--log"],
  ...["--per-ip-limit", "--worker", "--worker-shares-listener", "--redirected", "--protocol"],
  ...["--require-tls", "--opportunistic", "--verbosity", "--pre-tls-timeout", "--max-record"],
  ...["--max-commands", "--client-cert", "--verify-cert", "--mandatory-sni", "--delayed", "--cn"],
  ...["--san", "--days", "--key-type", "--rsa-bits", "--permit", "--ca-cert", "--keep", "--force"],
  ...["--reuse-key", "--workers=0", "--drain=", "--metrics=0", "--log=x", "--sni-level=9"],
];

const argv = fc.array(fc.oneof(fc.constantFrom(...TOKENS), fc.string({ maxLength: 8 })), {
  maxLength: 6,
});

/** The start of a line that names one of ours, or one of the programs in TOKENS that ours may
 * run (`cat: exit 1`, see above). */
const OURS = new RegExp(`^(${PROGRAMS.join("|")}|tls-everywhere|ucspi-spawner|cat|sh): `);

for (const program of PROGRAMS) {
  test(`${program}: random command lines end, and each failure is said in lines that name ours, in our words`, async () => {
    await fc.assert(
      fc.asyncProperty(argv, async (args) => {
        const r = await run("/usr/bin/unshare", ["-n", ours(program), ...args], {
          cwd: scratch,
          env: { ...ENV, CERTDIR: scratch },
          timeoutMs: program === "tcpserver" ? 3000 : 20_000,
        });
        const said = `${program} ${JSON.stringify(args)}: ${r.stderr}`;
        // tcpserver with a command line it takes serves until stopped.
        if (program === "tcpserver" && r.signal === "SIGKILL") return;
        assert.equal(r.signal, null, `did not end: ${said}`);
        assert.doesNotMatch(r.stderr, RUNTIME_WORDS, said);
        if (r.code === 0) return;
        assert.notEqual(r.stderr, "", `exit ${r.code} without a word: ${said}`);
        for (const line of r.stderr.trimEnd().split("\n")) assert.match(line, OURS, said);
      }),
      { numRuns: 25 },
    );
  });
}

/** tls-everywhere's own words: its options with and without values, port lists and chains. */
const EVERYWHERE_TOKENS = [
  ...["--remove", "--ports", "--exclude", "--listen", "--mark", "--table", "--silence"],
  ...["--state", "--limit", "--workers", "--ipv4-only", "--port", "--ports=25,80-90"],
  ...["--exclude=22", "--listen=0", "--mark=4294967295", "--port=25", "25", "80-90", "90-80"],
  ...["1-65535", "0-1", "22,", ",", "{", "}", "starttls-wrapper", "tcpforward", "-p", "smtp"],
];

test("tls-everywhere --dry-run: random command lines end, print rules or are refused in lines that name it, in its words", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.oneof(fc.constantFrom(...EVERYWHERE_TOKENS, ...TOKENS), fc.string({ maxLength: 8 })),
        {
          maxLength: 6,
        },
      ),
      async (args) => {
        // --dry-run first: whatever follows, nothing is installed (nor read from /run).
        const r = await run(
          "/usr/bin/unshare",
          ["-n", ours("tls-everywhere"), "--dry-run", ...args],
          {
            cwd: scratch,
            env: ENV,
            timeoutMs: 20_000,
          },
        );
        const said = `tls-everywhere --dry-run ${JSON.stringify(args)}: ${r.stderr}`;
        assert.equal(r.signal, null, `did not end: ${said}`);
        assert.doesNotMatch(r.stderr, RUNTIME_WORDS, said);
        if (r.code === 0) {
          assert.match(r.stdout, /^# /m, `no rules printed: ${said}`);
          // The rules it would install, or (--remove) the commands that take them out.
          assert.match(r.stdout, /^nft (-f - <<'EOF'|delete table inet tls_everywhere)$/m, said);
          return;
        }
        assert.equal(r.code, 100, said);
        for (const line of r.stderr.trimEnd().split("\n"))
          assert.match(line, /^tls-everywhere: /, said);
      },
    ),
    // Drawn once in a run: --remove alone printed its commands without a word of what they are.
    { numRuns: 40, examples: [[["--remove"]], [[]]] },
  );
});
