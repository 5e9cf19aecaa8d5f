// bin/tcprulescheck beside djb's: same output and exit code for the same environment and cdb;
// each reads the other's tcprules output; damaged files fail the same way.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import fc from "fast-check";
import { cdbMake } from "../../src/rules/cdb.ts";
import { djb, ours, run } from "../helpers/programs.ts";
import { REFERENCE_LINES, rulesText } from "../helpers/rules.ts";
import { scratchDir } from "../helpers/scratch.ts";

const work = scratchDir("tcprulescheck");

const b = (text: string) => Buffer.from(text, "latin1");

// The reference rules (the last one, ":deny", kept last) and a few more.
const REFERENCE = rulesText([
  ...REFERENCE_LINES.slice(0, -1),
  'bob@=mail.example.com:deny,X="never shown"',
  "=localhost:allow",
  "=:allow,X='named'",
  "\xe9@1.2.3.4:allow,V='\xff\xfe'",
  ":deny",
]);

type Env = Record<string, string>;

interface Checked {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function check(program: string, args: readonly string[], env: Env): Promise<Checked> {
  const { code, stdout, stderr } = await run(program, args, { env });
  return { code, stdout, stderr };
}

/** djb's and our tcprulescheck on the same file and environment: [djb's, ours]. */
function both(args: readonly string[], env: Env = {}): Promise<[Checked, Checked]> {
  return Promise.all([
    check(djb("tcprulescheck"), args, env),
    check(ours("tcprulescheck"), args, env),
  ]);
}

let djbCdb = "";
let ourCdb = "";

before(async () => {
  djbCdb = join(work, "djb.cdb");
  ourCdb = join(work, "ours.cdb");
  for (const [program, path] of [
    [djb("tcprules"), djbCdb],
    [ours("tcprules"), ourCdb],
  ] as const) {
    const made = await run(program, [path, `${path}.tmp`], { input: REFERENCE });
    assert.equal(made.code, 0, made.stderr);
  }
  assert.deepEqual(readFileSync(ourCdb), readFileSync(djbCdb));
});

const CLIENTS: Env[] = [
  { TCPREMOTEIP: "10.1.2.4" },
  { TCPREMOTEIP: "10.3.9.9" },
  { TCPREMOTEIP: "9.9.9.9", TCPREMOTEHOST: "www.example.com" },
  { TCPREMOTEIP: "9.9.9.9", TCPREMOTEHOST: "mail.example.com" },
  { TCPREMOTEIP: "9.9.9.9", TCPREMOTEHOST: "mail.example.com", TCPREMOTEINFO: "bob" },
  { TCPREMOTEIP: "127.0.0.1" },
  { TCPREMOTEIP: "127.0.0.1", TCPREMOTEINFO: "joe" },
  { TCPREMOTEIP: "127.0.0.2" },
  { TCPREMOTEIP: "127.0.0.3", TCPREMOTEHOST: "localhost" },
  { TCPREMOTEIP: "127.0.0.3", TCPREMOTEHOST: "LOCALHOST" },
  { TCPREMOTEIP: "127.0.0.3", TCPREMOTEHOST: "" },
  { TCPREMOTEIP: "1.2.3.4", TCPREMOTEINFO: "\u00e9" },
  { TCPREMOTEIP: "9.9.9.9" },
  { TCPREMOTEIP: "" },
  {},
];

test("usage: no argument, exit 100", async () => {
  const [theirs, mine] = await both([]);
  assert.deepEqual(mine, {
    code: 100,
    stdout: "",
    stderr: "tcprulescheck: usage: tcprulescheck rules.cdb\n",
  });
  assert.deepEqual(mine, theirs);
});

test("every client, on djb's cdb and on ours, with djb's program and ours", async () => {
  for (const env of CLIENTS) {
    const runs = await Promise.all([
      check(djb("tcprulescheck"), [djbCdb], env),
      check(ours("tcprulescheck"), [djbCdb], env),
      check(djb("tcprulescheck"), [ourCdb], env),
      check(ours("tcprulescheck"), [ourCdb], env),
    ]);
    for (const r of runs) assert.deepEqual(r, runs[0], JSON.stringify(env));
    assert.equal(runs[0]?.code, 0);
  }
});

test("the report's exact shape: rule, variables, verdict; or default", async () => {
  const [, allow] = await both([ourCdb], { TCPREMOTEIP: "127.0.0.1" });
  assert.equal(
    allow.stdout,
    "rule 127.0.0.1:\nset environment variable RELAYCLIENT=\nset environment variable GREETING=hi there\nallow connection\n",
  );
  const [, deny] = await both([ourCdb], {
    TCPREMOTEIP: "9.9.9.9",
    TCPREMOTEHOST: "mail.example.com",
    TCPREMOTEINFO: "bob",
  });
  assert.equal(deny.stdout, "rule bob@=mail.example.com:\ndeny connection\n");
  const empty = join(work, "empty-rules.cdb");
  writeFileSync(empty, cdbMake([]));
  const [theirs, mine] = await both([empty], { TCPREMOTEIP: "1.2.3.4" });
  assert.deepEqual(mine, { code: 0, stdout: "default:\nallow connection\n", stderr: "" });
  assert.deepEqual(mine, theirs);
});

test("value items as djb prints them: variables up to a D, + without =, junk ignored", async () => {
  const path = join(work, "items.cdb");
  const data = b("+A=1\0X junk\0\0+B\0D\0+C=never\0");
  writeFileSync(
    path,
    cdbMake([
      { key: b("1.2.3.4"), data },
      { key: b("5."), data: b("+A=1\0+Z=rest") },
    ]),
  );
  for (const ip of ["1.2.3.4", "5.6.7.8"]) {
    const [theirs, mine] = await both([path], { TCPREMOTEIP: ip });
    assert.deepEqual(mine, theirs, ip);
  }
  const [, mine] = await both([path], { TCPREMOTEIP: "1.2.3.4" });
  assert.equal(
    mine.stdout,
    "rule 1.2.3.4:\nset environment variable A=1\nset environment variable B\ndeny connection\n",
  );
});

test("unreadable rules: exit 111 with djb's cause text", async () => {
  const good = readFileSync(djbCdb);
  const files: [string, Buffer][] = [
    ["empty.cdb", Buffer.alloc(0)],
    ["one.cdb", Buffer.alloc(1)],
    ["short.cdb", good.subarray(0, 100)],
    ["cut.cdb", good.subarray(0, good.length - 9)],
  ];
  for (const [name, bytes] of files) writeFileSync(join(work, name), bytes);
  const expected: [string, string][] = [
    ["missing.cdb", "file does not exist"],
    ["empty.cdb", "invalid argument"],
    ["one.cdb", "protocol error"],
    ["short.cdb", "protocol error"],
  ];
  for (const [name, cause] of expected) {
    const path = join(work, name);
    const [theirs, mine] = await both([path], { TCPREMOTEIP: "127.0.0.1" });
    assert.deepEqual(mine, {
      code: 111,
      stdout: "",
      stderr: `tcprulescheck: fatal: unable to read ${path}: ${cause}\n`,
    });
    assert.deepEqual(mine, theirs);
  }
  // A file cut in its hash tables fails for some clients only, the same ones for both.
  for (const env of CLIENTS) {
    const [theirs, mine] = await both([join(work, "cut.cdb")], env);
    assert.deepEqual(mine, theirs, JSON.stringify(env));
  }
});

test("a directory: ours says so (djb's crashes with SIGSEGV)", async () => {
  const dir = join(work, "a-dir");
  mkdirSync(dir);
  const mine = await check(ours("tcprulescheck"), [dir], {});
  assert.deepEqual(mine, {
    code: 111,
    stdout: "",
    stderr: `tcprulescheck: fatal: unable to read ${dir}: is a directory\n`,
  });
});

test("damaged cdbs: the same report or the same failure as djb's", async () => {
  const good = readFileSync(djbCdb);
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ at: fc.nat({ max: good.length - 1 }), byte: fc.nat({ max: 255 }) }), {
        minLength: 1,
        maxLength: 8,
      }),
      fc.oneof(
        { weight: 3, arbitrary: fc.constant(good.length) },
        { weight: 1, arbitrary: fc.nat({ max: good.length }) },
      ),
      fc.constantFrom(...CLIENTS),
      async (edits, length, env) => {
        const bytes = Buffer.from(good.subarray(0, length));
        for (const { at, byte } of edits) if (at < bytes.length) bytes[at] = byte;
        const path = join(work, `damaged${n++}.cdb`);
        writeFileSync(path, bytes);
        const [theirs, mine] = await both([path], env);
        assert.deepEqual(mine, theirs);
      },
    ),
    { numRuns: 40 },
  );
});

test("TCPLOCALPORT: PORT/key rules first, as tcpserver --transparent tries them; djb's keys after", async () => {
  const cdb = join(work, "ports.cdb");
  const made = await run(ours("tcprules"), [cdb, `${cdb}.tmp`], {
    input: rulesText([
      "25/10.0.0.:allow,RELAY='yes'",
      "25/:deny",
      "10.0.0.7:allow,WHO='any port'",
      ":deny",
    ]),
  });
  assert.equal(made.code, 0, made.stderr);
  const ask = (env: Env) => check(ours("tcprulescheck"), [cdb], env);
  const relay = await ask({ TCPREMOTEIP: "10.0.0.7", TCPLOCALPORT: "25" });
  assert.equal(
    relay.stdout,
    "rule 25/10.0.0.:\nset environment variable RELAY=yes\nallow connection\n",
  );
  const denied = await ask({ TCPREMOTEIP: "192.0.2.1", TCPLOCALPORT: "25" });
  assert.equal(denied.stdout, "rule 25/:\ndeny connection\n");
  const otherPort = await ask({ TCPREMOTEIP: "10.0.0.7", TCPLOCALPORT: "443" });
  assert.equal(
    otherPort.stdout,
    "rule 10.0.0.7:\nset environment variable WHO=any port\nallow connection\n",
  );
  // Not a port: djb's keys only, as djb's tcprulescheck (which ignores the variable).
  for (const junk of ["", "0", "65536", "25x"]) {
    const [theirs, mine] = await both([cdb], { TCPREMOTEIP: "10.0.0.7", TCPLOCALPORT: junk });
    assert.deepEqual(mine, theirs, junk);
  }
});
