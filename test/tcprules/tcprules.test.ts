// bin/tcprules beside djb's tcprules: same files, stdout, stderr and exit codes for the same
// input; the cdb is replaced atomically, and our rules.tmp never stays behind.
import assert from "node:assert/strict";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { spawn } from "node:child_process";
import type { StdioOptions } from "node:child_process";
import { cdbFind } from "../../src/rules/cdb.ts";
import { djb, ours, run } from "../helpers/programs.ts";
import { waitFor } from "../helpers/server.ts";
import { REFERENCE_LINES, rulesText } from "../helpers/rules.ts";
import { scratchDir } from "../helpers/scratch.ts";

const work = scratchDir("tcprules");

const b = (text: string) => Buffer.from(text, "latin1");

const REFERENCE = rulesText(REFERENCE_LINES);

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
  cdb: Buffer | undefined;
  tmpLeft: boolean;
}

let folders = 0;

/** Runs `program ...args` in a fresh folder (prepared by `setup`), and collects what it left. */
async function outcome(
  program: string,
  args: readonly string[],
  input: Buffer | undefined,
  setup: (dir: string) => void = () => {},
  stdio?: StdioOptions,
): Promise<Outcome> {
  const dir = join(work, `run${folders++}`);
  mkdirSync(dir);
  setup(dir);
  const options = stdio ? { cwd: dir, stdio } : { cwd: dir, input };
  const result = await run(program, args, options);
  const cdbPath = join(dir, "rules.cdb");
  return {
    code: result.code,
    stdout: result.stdout,
    stderr: result.stderr,
    cdb: existsSync(cdbPath) && statSync(cdbPath).isFile() ? readFileSync(cdbPath) : undefined,
    tmpLeft: existsSync(join(dir, "rules.tmp")),
  };
}

/** Both programs on the same arguments and input; returns [djb's, ours]. */
async function both(
  args: readonly string[],
  input?: Buffer,
  setup?: (dir: string) => void,
): Promise<[Outcome, Outcome]> {
  return Promise.all([
    outcome(djb("tcprules"), args, input, setup),
    outcome(ours("tcprules"), args, input, setup),
  ]);
}

const ARGS = ["rules.cdb", "rules.tmp"];

test("usage: fewer than two arguments, exit 100", async () => {
  for (const args of [[], ["rules.cdb"]]) {
    const [theirs, mine] = await both(args, b(""));
    assert.equal(mine.code, 100);
    assert.equal(mine.stderr, "tcprules: usage: tcprules rules.cdb rules.tmp\n");
    assert.deepEqual(mine, theirs);
  }
});

test("the reference rules compile to djb's bytes; extra arguments are ignored", async () => {
  for (const args of [ARGS, [...ARGS, "extra", "words"]]) {
    const [theirs, mine] = await both(args, REFERENCE);
    assert.equal(mine.code, 0, mine.stderr);
    assert.equal(mine.stderr, "");
    assert.ok(mine.cdb && mine.cdb.length > 2048);
    assert.deepEqual(mine, theirs);
  }
});

test("inputs byte for byte like djb's: empty, comments only, no final newline, latin1, NUL", async () => {
  const inputs = [
    "",
    "# only a comment\n\n",
    "1.2.3.4:deny",
    "\xe9\xff:allow,V='\x80'\n",
    "a\0b:allow,V=/\0/\n",
    "1.2.3.0-255:allow\n",
  ];
  for (const input of inputs) {
    const [theirs, mine] = await both(ARGS, b(input));
    assert.equal(mine.code, 0, `${JSON.stringify(input)}: ${mine.stderr}`);
    assert.deepEqual(mine, theirs, JSON.stringify(input));
  }
});

test("a bad line: djb's message byte for byte, exit 100, no cdb; our rules.tmp is removed", async () => {
  const inputs = [
    "ok:allow\nbad line:nope\n",
    "1.2.3.4:allow\r\n",
    "x\0y:bad\n",
    "\xe9:allow,V=\n",
  ];
  for (const input of inputs) {
    const [theirs, mine] = await both(ARGS, b(input));
    assert.equal(mine.code, 100);
    assert.equal(mine.stdout, "");
    assert.equal(mine.stderr, theirs.stderr);
    assert.match(mine.stderr, /^tcprules: fatal: unable to parse this line: /);
    assert.equal(mine.cdb, undefined);
    assert.equal(theirs.cdb, undefined);
    // djb leaves its half-written rules.tmp behind; we do not.
    assert.equal(theirs.tmpLeft, true);
    assert.equal(mine.tmpLeft, false);
  }
});

test("a bad line leaves the old cdb untouched (atomic replace)", async () => {
  const dir = join(work, "atomic");
  mkdirSync(dir);
  const cdbPath = join(dir, "rules.cdb");
  const first = await run(ours("tcprules"), ARGS, { cwd: dir, input: b("1.2.3.4:deny\n") });
  assert.equal(first.code, 0, first.stderr);
  const before = readFileSync(cdbPath);
  const inode = statSync(cdbPath).ino;

  const bad = await run(ours("tcprules"), ARGS, {
    cwd: dir,
    input: b("5.6.7.8:allow\n5.6.7.9:oops\n"),
  });
  assert.equal(bad.code, 100);
  assert.deepEqual(readFileSync(cdbPath), before);
  assert.equal(statSync(cdbPath).ino, inode);
  assert.equal(existsSync(join(dir, "rules.tmp")), false);

  // A good run replaces it by rename: a new file, the new rules, no rules.tmp.
  const good = await run(ours("tcprules"), ARGS, { cwd: dir, input: b("5.6.7.8:allow,X='new'\n") });
  assert.equal(good.code, 0, good.stderr);
  const after = readFileSync(cdbPath);
  assert.equal(cdbFind(after, b("1.2.3.4")), undefined);
  assert.deepEqual(cdbFind(after, b("5.6.7.8")), b("+X=new\0"));
  assert.notEqual(statSync(cdbPath).ino, inode);
  assert.equal(existsSync(join(dir, "rules.tmp")), false);
});

test("an existing rules.tmp is overwritten, not appended to", async () => {
  const setup = (dir: string) => writeFileSync(join(dir, "rules.tmp"), Buffer.alloc(100_000, 0x41));
  const [theirs, mine] = await both(ARGS, REFERENCE, setup);
  assert.equal(mine.code, 0, mine.stderr);
  assert.deepEqual(mine, theirs);
});

test("cannot create rules.tmp: exit 111 with djb's cause text", async () => {
  const cases: [string[], (dir: string) => void][] = [
    [["rules.cdb", "missing/rules.tmp"], () => {}],
    [["rules.cdb", "sub"], (dir) => mkdirSync(join(dir, "sub"))],
    [["rules.cdb", ""], () => {}],
  ];
  for (const [args, setup] of cases) {
    const [theirs, mine] = await both(args, REFERENCE, setup);
    assert.equal(mine.code, 111);
    assert.match(mine.stderr, /^tcprules: fatal: unable to create /);
    assert.deepEqual(mine, theirs);
  }
});

test("cannot move rules.tmp over rules.cdb: exit 111; ours removes rules.tmp", async () => {
  const cases: [string[], (dir: string) => void, string][] = [
    [["missing/rules.cdb", "rules.tmp"], () => {}, "file does not exist"],
    [["sub", "rules.tmp"], (dir) => mkdirSync(join(dir, "sub")), "is a directory"],
  ];
  for (const [args, setup, cause] of cases) {
    const [theirs, mine] = await both(args, REFERENCE, setup);
    assert.equal(mine.code, 111);
    assert.equal(
      mine.stderr,
      `tcprules: fatal: unable to move rules.tmp to ${args[0]}: ${cause}\n`,
    );
    assert.equal(mine.stderr, theirs.stderr);
    assert.equal(theirs.tmpLeft, true);
    assert.equal(mine.tmpLeft, false);
  }
});

test("cannot read stdin (a directory): exit 111, unable to read input", async () => {
  const fd = openSync(work, "r");
  try {
    const stdio: StdioOptions = [fd, "pipe", "pipe"];
    const [theirs, mine] = await Promise.all([
      outcome(djb("tcprules"), ARGS, undefined, undefined, stdio),
      outcome(ours("tcprules"), ARGS, undefined, undefined, stdio),
    ]);
    assert.equal(mine.code, 111);
    assert.equal(mine.stderr, "tcprules: fatal: unable to read input: is a directory\n");
    assert.equal(mine.stderr, theirs.stderr);
    assert.equal(mine.cdb, undefined);
    assert.equal(mine.tmpLeft, false);
  } finally {
    closeSync(fd);
  }
});

test("the cdb gets the same permissions as djb's (0644 less the umask)", async () => {
  const [theirs, mine] = await Promise.all(
    [djb("tcprules"), ours("tcprules")].map(async (program) => {
      const dir = join(work, `mode${folders++}`);
      mkdirSync(dir);
      await run(program, ARGS, { cwd: dir, input: REFERENCE });
      const mode = statSync(join(dir, "rules.cdb")).mode & 0o777;
      rmSync(dir, { recursive: true });
      return mode;
    }),
  );
  assert.equal(mine, theirs);
});

// Node's own answer to SIGUSR1 is to open its inspector on 127.0.0.1:9229 (and ours then failed
// with "unable to read input: interrupted system call"). djb's dies of it; ours, blocked in its
// read, may finish first: either way, no inspector and no failure.
test("SIGUSR1 while reading the rules: no inspector, no failed read", async () => {
  const dir = join(work, `run${folders++}`);
  mkdirSync(dir);
  const child = spawn(ours("tcprules"), ARGS, { cwd: dir, stdio: ["pipe", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("latin1")));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  // rules.tmp is made before the input is read: tcprules is running, and reading.
  await waitFor(() => existsSync(join(dir, "rules.tmp")) || undefined);
  child.kill("SIGUSR1");
  const inspector = waitFor(() => (/Debugger/.test(stderr) ? true : undefined), 3_000).catch(
    () => false,
  );
  const first = await Promise.race([exited.then(() => false), inspector]);
  child.stdin.end("1.2.3.4:deny\n");
  const { code, signal } = await exited;
  assert.equal(first, false, stderr);
  assert.equal(stderr, "");
  assert.ok(signal === "SIGUSR1" || code === 0, `code ${code}, signal ${signal}`);
});

// With fd 0 closed, Node would open its own descriptors there, and an empty input compiles to
// a cdb that allows every client. djb's read fails: so does ours, and the old cdb stays.
test("stdin closed: djb's message and exit 111, no cdb written", async () => {
  const closedStdin = (program: string) =>
    outcome("/bin/sh", ["-c", 'exec "$0" "$@" <&-', program, ...ARGS], undefined);
  const [theirs, mine] = await Promise.all([
    closedStdin(djb("tcprules")),
    closedStdin(ours("tcprules")),
  ]);
  assert.equal(mine.code, 111);
  assert.equal(mine.stderr, "tcprules: fatal: unable to read input: file descriptor not open\n");
  assert.equal(mine.stderr, theirs.stderr);
  assert.equal(mine.cdb, undefined);
  assert.equal(theirs.cdb, undefined);
  assert.equal(mine.tmpLeft, false);
});
