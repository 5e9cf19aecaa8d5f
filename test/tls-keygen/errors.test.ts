// Every bad argument of tls-keygen: the exact stderr (one line naming the bad value, plus the
// usage line for misuse), the exit code, an empty stdout and no file written. The usage lines
// are word for word the synopsis of docs/tls-keygen.md.
import assert from "node:assert/strict";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import { COMMANDS, USAGE, usageFor } from "../../src/tls-keygen/options.ts";
import { keygen, keygenOk, openssl, workDir } from "../helpers/keygen.ts";
import { ROOT } from "../helpers/programs.ts";

const work = workDir("keygen-errors");

before(async () => {
  writeFileSync(work.path("exists.pem"), "x\n");
  writeFileSync(work.path("garbage.pem"), "not a certificate\n");
  await Promise.all([
    keygenOk(["ca", "ca.pem", "ca.key"], work.dir),
    keygenOk(["self-signed", "leaf.pem", "leaf.key"], work.dir),
    keygenOk(["csr", "-s", "x.test", "other.csr", "other.key"], work.dir),
    // A CA certificate whose keyUsage leaves out keyCertSign.
    openssl([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      work.path("nosign.key"),
      "-out",
      work.path("nosign.pem"),
      "-days",
      "2",
      "-subj",
      "/CN=No Sign",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,digitalSignature",
    ]).then((r) => assert.equal(r.code, 0, r.out)),
  ]);
});

const FIXTURES = [
  "ca.key",
  "ca.pem",
  "exists.pem",
  "garbage.pem",
  "leaf.key",
  "leaf.pem",
  "nosign.key",
  "nosign.pem",
  "other.csr",
  "other.key",
];

const usage = (command: string) => `tls-keygen: usage: ${usageFor(command)}\n`;
const misuse = (command: string, message: string) => `tls-keygen: ${message}\n${usage(command)}`;
const fatal = (message: string) => `tls-keygen: fatal: ${message}\n`;
const ss = (...args: string[]) => ["self-signed", ...args, "c.pem", "k.pem"];
const long63 = "a".repeat(64);
const name254 = `${"a".repeat(60)}.`.repeat(4) + "b".repeat(10);

const CASES: [string[], number, string][] = [
  [[], 100, `tls-keygen: usage: ${USAGE}\n`],
  [["frob", "a", "b"], 100, `tls-keygen: unknown command: frob\ntls-keygen: usage: ${USAGE}\n`],
  [["self-signed"], 100, misuse("self-signed", "missing certfile and keyfile")],
  [["self-signed", "c.pem"], 100, misuse("self-signed", "missing keyfile")],
  [["ca", "c.pem"], 100, misuse("ca", "missing cakey")],
  [["csr"], 100, misuse("csr", "missing csrfile and keyfile")],
  [["self-signed", "c.pem", "k.pem", "x"], 100, misuse("self-signed", "extra argument: x")],
  [
    ["self-signed", "c.pem", "k.pem", "--force"],
    100,
    misuse("self-signed", "extra argument: --force (options go before the file names)"),
  ],
  [ss("-x"), 100, misuse("self-signed", "illegal option -- x")],
  [ss("--bogus"), 100, misuse("self-signed", "illegal option -- bogus")],
  [["self-signed", "-d"], 100, misuse("self-signed", "option requires an argument -- d")],
  [
    ss("--permit", "x.test"),
    100,
    misuse("self-signed", "option --permit does not apply to self-signed"),
  ],
  [["ensure", "-f", "c", "k"], 100, misuse("ensure", "option --force does not apply to ensure")],
  [["csr", "-d", "3", "c", "k"], 100, misuse("csr", "option --days does not apply to csr")],
  [["ca", "-C", "x", "c", "k"], 100, misuse("ca", "option --ca-cert does not apply to ca")],
  [["ca", "--server", "c", "k"], 100, misuse("ca", "option --server does not apply to ca")],
  [["leaf", "c.pem", "k.pem"], 100, misuse("leaf", "leaf needs -C cacert and -K cakey")],
  [
    ["leaf", "-C", "ca.pem", "c.pem", "k.pem"],
    100,
    misuse("leaf", "leaf needs -C cacert and -K cakey"),
  ],
  [["self-signed", "c.pem", "c.pem"], 100, fatal("certfile and keyfile are the same file: c.pem")],
  [["ca", "c.pem", "c.pem"], 100, fatal("cacert and cakey are the same file: c.pem")],
  [["self-signed", "", "k.pem"], 100, fatal("empty file name")],
  [ss("-t", "dsa"), 100, fatal("bad --key-type value dsa: want ecdsa, ed25519 or rsa")],
  [ss("-b", "4096"), 100, fatal("option --rsa-bits needs --key-type rsa")],
  [
    ss("-t", "rsa", "-b", "1024"),
    100,
    fatal("bad --rsa-bits value 1024: want a multiple of 8 from 2048 to 8192"),
  ],
  [
    ss("-t", "rsa", "--rsa-bits=2050"),
    100,
    fatal("bad --rsa-bits value 2050: want a multiple of 8 from 2048 to 8192"),
  ],
  [ss("-d", "0"), 100, fatal("bad --days value 0: want a whole number from 1 to 36500")],
  [
    ss("--days", "36501"),
    100,
    fatal("bad --days value 36501: want a whole number from 1 to 36500"),
  ],
  [ss("-d", "1.5"), 100, fatal("bad --days value 1.5: want a whole number from 1 to 36500")],
  [ss("-d", "007"), 100, fatal("bad --days value 007: want a whole number from 1 to 36500")],
  [ss("-d", " 7"), 100, fatal('bad --days value " 7": want a whole number from 1 to 36500')],
  [ss("-n", ""), 100, fatal('bad --cn value "": want 1 to 64 characters')],
  [
    ss("-n", "x".repeat(65)),
    100,
    fatal(`bad --cn value ${"x".repeat(65)}: want 1 to 64 characters`),
  ],
  [ss("-n", "a\tb"), 100, fatal('bad --cn value "a\\tb": has a control character')],
  [ss("-s", "a..b"), 100, fatal("bad --san value a..b: empty label")],
  // Not the default names in its place, as before: an empty variable in a script, say.
  [ss("-s", ""), 100, fatal('bad --san value "": names nothing')],
  [ss("-s", "a.example", "-s", ","), 100, fatal("bad --san value ,: names nothing")],
  [
    ss("-s", "-bad.example"),
    100,
    fatal("bad --san value -bad.example: label -bad starts or ends with -"),
  ],
  [
    ss("-s", "foo_bar.example"),
    100,
    fatal("bad --san value foo_bar.example: label foo_bar has a character other than a-z, 0-9, -"),
  ],
  [ss("-s", "*.com"), 100, fatal("bad --san value *.com: a wildcard needs two labels after *.")],
  [
    ss("-s", "foo.*.example"),
    100,
    fatal("bad --san value foo.*.example: a wildcard must be the whole first label (*.name)"),
  ],
  [
    ss("-s", "f*.example.org"),
    100,
    fatal("bad --san value f*.example.org: a wildcard must be the whole first label (*.name)"),
  ],
  [ss("-s", "256.1.1.1"), 100, fatal("bad --san value 256.1.1.1: not an IPv4 address")],
  [ss("-s", "1.2.3"), 100, fatal("bad --san value 1.2.3: not an IPv4 address")],
  [ss("-s", "01.2.3.4"), 100, fatal("bad --san value 01.2.3.4: not an IPv4 address")],
  [
    ss("-s", "example.123"),
    100,
    fatal("bad --san value example.123: the last label is all digits"),
  ],
  [ss("-s", "1:2:3"), 100, fatal("bad --san value 1:2:3: not an IPv6 address")],
  [ss("-s", "[::1"), 100, fatal("bad --san value [::1: not an IPv6 address")],
  [
    ss("-s", "fe80::1%eth0"),
    100,
    fatal("bad --san value fe80::1%eth0: an IPv6 zone id has no place in a certificate"),
  ],
  [ss("-s", "IP:example.org"), 100, fatal("bad --san value IP:example.org: not an IPv4 address")],
  [ss("-s", "ok.test,bad..test"), 100, fatal("bad --san value bad..test: empty label")],
  [
    ss("-s", `${long63}.example`),
    100,
    fatal(`bad --san value ${long63}.example: label ${long63} is longer than 63 characters`),
  ],
  [ss("-s", name254), 100, fatal(`bad --san value ${name254}: longer than 253 characters`)],
  [
    ["ca", "--permit", "10.0.0.1/8", "c", "k"],
    100,
    fatal("bad --permit value 10.0.0.1/8: host bits set (the network is 10.0.0.0/8)"),
  ],
  [
    ["ca", "-p", "fd00::1/8", "c", "k"],
    100,
    fatal("bad --permit value fd00::1/8: host bits set (the network is fd00::/8)"),
  ],
  [
    ["ca", "-p", "10.0.0.0/33", "c", "k"],
    100,
    fatal("bad --permit value 10.0.0.0/33: prefix length 33 is not a number from 0 to 32"),
  ],
  [
    ["ca", "-p", "fd00::/129", "c", "k"],
    100,
    fatal("bad --permit value fd00::/129: prefix length 129 is not a number from 0 to 128"),
  ],
  [
    ["ca", "-p", "10.0.0.0/", "c", "k"],
    100,
    fatal('bad --permit value 10.0.0.0/: prefix length "" is not a number from 0 to 32'),
  ],
  [
    ["ca", "-p", "10.0.0.0/08", "c", "k"],
    100,
    fatal("bad --permit value 10.0.0.0/08: prefix length 08 is not a number from 0 to 32"),
  ],
  [["ca", "-p", "foo/8", "c", "k"], 100, fatal("bad --permit value foo/8: not an IPv4 address")],
  [
    ["ca", "-p", "10.0.0/8", "c", "k"],
    100,
    fatal("bad --permit value 10.0.0/8: not an IPv4 address"),
  ],
  [
    ["ca", "-p", "*.example.org", "c", "k"],
    100,
    fatal("bad --permit value *.example.org: write .example.org for the names below it"),
  ],
  [
    ["ca", "-p", "a b", "c", "k"],
    100,
    fatal('bad --permit value "a b": label "a b" has a character other than a-z, 0-9, -'),
  ],
  [
    ["self-signed", "nodir/c.pem", "k.pem"],
    100,
    fatal("unable to create nodir/c.pem: directory nodir does not exist"),
  ],
  [
    ["ca", "c.pem", "exists.pem/k.pem"],
    100,
    fatal("unable to create exists.pem/k.pem: exists.pem is not a directory"),
  ],
  [
    ["self-signed", "exists.pem", "k.pem"],
    100,
    fatal("exists.pem exists: use --force to replace it"),
  ],
  [
    ["csr", "-s", "x.test", "c.csr", "exists.pem"],
    100,
    fatal("exists.pem exists: use --force to replace it"),
  ],
  [
    ["leaf", "-C", "nope.pem", "-K", "ca.key", "c.pem", "k.pem"],
    100,
    fatal("unable to read CA certificate nope.pem: file does not exist"),
  ],
  [
    ["leaf", "-C", "garbage.pem", "-K", "ca.key", "c.pem", "k.pem"],
    100,
    fatal("no PEM certificate in garbage.pem"),
  ],
  [
    ["leaf", "-C", "leaf.pem", "-K", "leaf.key", "c.pem", "k.pem"],
    100,
    fatal("leaf.pem is not a CA certificate (no CA:TRUE)"),
  ],
  [
    ["leaf", "-C", "nosign.pem", "-K", "nosign.key", "c.pem", "k.pem"],
    100,
    fatal("nosign.pem may not sign certificates (no keyCertSign)"),
  ],
  [
    ["leaf", "-C", "ca.pem", "-K", "other.key", "c.pem", "k.pem"],
    100,
    fatal("CA key other.key does not match CA certificate ca.pem"),
  ],
  [
    ["leaf", "-C", "ca.pem", "-K", "nope.key", "c.pem", "k.pem"],
    100,
    fatal("unable to read CA key nope.key: file does not exist"),
  ],
  [
    ["leaf", "-C", "ca.pem", "-K", "garbage.pem", "c.pem", "k.pem"],
    100,
    fatal("no private key in garbage.pem: want PEM (PKCS#8, SEC1 or PKCS#1)"),
  ],
  [
    ["self-signed", "-r", "c.pem", "nokey.pem"],
    100,
    fatal("unable to read key nokey.pem: file does not exist"),
  ],
  [
    ["self-signed", "-r", "-t", "rsa", "c.pem", "k.pem"],
    100,
    fatal("--reuse-key signs with the key in k.pem: no --key-type or --rsa-bits"),
  ],
  [["ticket"], 100, misuse("ticket", "missing ticketfile")],
  [["ticket", "t", "u"], 100, misuse("ticket", "extra argument: u")],
  [
    ["ticket", "t", "-k", "4"],
    100,
    misuse("ticket", "extra argument: -k (options go before the file names)"),
  ],
  [["ticket", "-f", "t"], 100, misuse("ticket", "option --force does not apply to ticket")],
  [
    ["ticket", "-t", "rsa", "t"],
    100,
    misuse("ticket", "option --key-type does not apply to ticket"),
  ],
  [ss("-k", "3"), 100, misuse("self-signed", "option --keep does not apply to self-signed")],
  [["ticket", ""], 100, fatal("empty file name")],
  [
    ["ticket", "-k", "1", "t"],
    100,
    fatal("bad --keep value 1: want a whole number from 2 to 1000"),
  ],
  [
    ["ticket", "-k", "0", "t"],
    100,
    fatal("bad --keep value 0: want a whole number from 2 to 1000"),
  ],
  [
    ["ticket", "--keep=1001", "t"],
    100,
    fatal("bad --keep value 1001: want a whole number from 2 to 1000"),
  ],
  [
    ["ticket", "-k", "three", "t"],
    100,
    fatal("bad --keep value three: want a whole number from 2 to 1000"),
  ],
  [["ticket", "nodir/t"], 100, fatal("unable to create nodir/t: directory nodir does not exist")],
  [["csr", "c.csr", "k.key"], 100, fatal("a request needs a name: give --san or --cn")],
  [
    ["self-signed", "--client", "c.pem", "k.pem"],
    100,
    fatal("a client certificate needs a name: give --san or --cn"),
  ],
];

test("every bad argument: one line naming it (and the usage line for misuse), exit 100, nothing written", async () => {
  const queue = [...CASES];
  const failures: string[] = [];
  const worker = async () => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      const [args, code, stderr] = item;
      const result = await keygen(args, work.dir);
      const got = JSON.stringify([result.code, result.stdout, result.stderr]);
      const want = JSON.stringify([code, "", stderr]);
      if (got !== want)
        failures.push(`tls-keygen ${JSON.stringify(args)}\n  got  ${got}\n  want ${want}`);
    }
  };
  await Promise.all([1, 2, 3, 4].map(worker));
  assert.deepEqual(failures, []);
  assert.deepEqual(readdirSync(work.dir).sort(), FIXTURES);
});

test("each usage line is word for word a synopsis line of docs/tls-keygen.md", () => {
  const page = readFileSync(join(ROOT, "docs", "tls-keygen.md"), "utf8");
  const synopsis = /## Synopsis\n\n```\n([^`]*)```/.exec(page)?.[1] ?? "";
  const lines = synopsis.split("\n").filter((line) => line !== "");
  assert.deepEqual(lines, [...COMMANDS.map((c) => usageFor(c))]);
});
