// tls-keygen ticket: tlsd's TICKETFILE made (two fresh keys) and rotated (a fresh key at the end,
// the newest `count` kept), read with tlsd's parser, written mode 0600 as a new inode; a file
// tlsd would refuse is refused in one line that quotes none of it, and left as it was.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync } from "node:fs";
import { symlinkSync, writeFileSync } from "node:fs";
import { test } from "node:test";
import fc from "fast-check";
import { parseTicketKeys } from "../../src/tls/tickets.ts";
import { makePki } from "../helpers/certs.ts";
import { keygen, workDir } from "../helpers/keygen.ts";
import { BIN, djb } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { sClientSession } from "../helpers/tls-client.ts";

const work = workDir("keygen-ticket");

/** The key lines of a ticket file, after checking that tlsd's parser takes it as it is: every
 * line a key, the line before the last the one that encrypts. */
function keysOf(file: string): string[] {
  const text = readFileSync(file, "latin1");
  const parsed = parseTicketKeys(text);
  assert.notEqual(typeof parsed, "string", `tlsd's parser refuses ${file}: ${String(parsed)}`);
  const lines = text.split("\n");
  assert.equal(lines.pop(), "", "the file ends with a newline");
  const keys = parsed as Exclude<typeof parsed, string>;
  assert.equal(keys.known.length, lines.length, "a key on every line");
  assert.equal(keys.encrypt, keys.known.at(-2));
  return lines;
}

/** `tls-keygen ticket ARGS` in the scratch directory; asserts a clean exit 0. */
async function ticket(...args: string[]): Promise<string> {
  const r = await keygen(["ticket", ...args], work.dir);
  assert.deepEqual([r.code, r.stdout], [0, ""], r.stderr);
  return r.stderr;
}

const modeOf = (file: string) => statSync(file).mode & 0o777;

test("a new file: two fresh keys, mode 0600, the first one encrypting; -v says so in one line", async () => {
  const file = work.path("new");
  const said = await ticket("-v", "new");
  assert.equal(said, "tls-keygen: info: wrote 2 ticket keys to new\n");
  const keys = keysOf(file);
  assert.equal(keys.length, 2);
  assert.notEqual(keys[0], keys[1]);
  assert.equal(modeOf(file), 0o600);
  // Another new file has other keys.
  await ticket("other");
  assert.equal(
    keysOf(work.path("other")).filter((k) => keys.includes(k)).length,
    0,
    "fresh keys each time",
  );
});

test("rotation: one fresh key at the end, the newest count kept (3 by default), a new inode of mode 0600", async () => {
  const file = work.path("rotated");
  await ticket("rotated");
  const [a = "", b = ""] = keysOf(file);
  chmodSync(file, 0o644); // a file others could read becomes the key file it should be
  const before = statSync(file).ino;
  assert.equal(await ticket("-v", "rotated"), "tls-keygen: info: wrote 3 ticket keys to rotated\n");
  const three = keysOf(file);
  assert.deepEqual(three.slice(0, 2), [a, b]);
  assert.notEqual(statSync(file).ino, before, "renamed into place: a new inode");
  assert.equal(modeOf(file), 0o600);
  await ticket("rotated");
  const next = keysOf(file);
  assert.deepEqual(next.slice(0, 2), three.slice(1));
  assert.equal(next.length, 3);
  // -k: more kept, then fewer.
  await ticket("--keep=5", "rotated");
  assert.deepEqual(keysOf(file).slice(0, 3), next);
  await ticket("-k", "2", "rotated");
  const two = keysOf(file);
  assert.equal(two.length, 2);
  assert.ok(!next.includes(two[1] ?? ""));
  assert.deepEqual(
    readdirSync(work.dir).filter((n) => n.endsWith(".tmp")),
    [],
  );
});

test("an existing file's comments and blank lines are not kept, its keys are, as tlsd read them", async () => {
  const [a, b] = [randomBytes(48).toString("base64"), randomBytes(48).toString("base64")];
  writeFileSync(work.path("commented"), `# made by hand\n\n  ${a}\r\n# spare\n${b}\n\n`, {
    mode: 0o600,
  });
  await ticket("commented");
  const keys = keysOf(work.path("commented"));
  assert.deepEqual(keys.slice(0, 2), [a, b]);
  assert.equal(keys.length, 3);
});

test("a symbolic link in place of the file: read through, then replaced by the file (as -f does), its target left", async () => {
  mkdirSync(work.path("shared"));
  await ticket("shared/keys");
  const target = readFileSync(work.path("shared/keys"), "latin1");
  symlinkSync("shared/keys", work.path("linked"));
  await ticket("linked");
  assert.ok(statSync(work.path("linked"), { throwIfNoEntry: true }).isFile());
  assert.ok(
    !readdirSync(work.dir, { withFileTypes: true })
      .find((e) => e.name === "linked")
      ?.isSymbolicLink(),
  );
  assert.deepEqual(keysOf(work.path("linked")).slice(0, 2), target.split("\n").slice(0, 2));
  assert.equal(readFileSync(work.path("shared/keys"), "latin1"), target);
});

const key = () => randomBytes(48).toString("base64");
const SECRET = randomBytes(47).toString("base64"); // a line that must never be shown

for (const [what, content, cause] of [
  [
    "a key of 47 bytes",
    `# keys\n${key()}\n${SECRET}\n${key()}\n`,
    "line 3 is not 48 bytes in base64",
  ],
  [
    "two keys of one name",
    (() => {
      const k = randomBytes(48);
      return `${k.toString("base64")}\n${Buffer.concat([k.subarray(0, 16), randomBytes(32)]).toString("base64")}\n`;
    })(),
    "line 2 has the name (first 16 bytes) of a key before it",
  ],
  ["no key", "# none yet\n\n", "no key in it"],
  ["over 64 KiB", `${key()}\n`.repeat(1009) + SECRET, "over 65536 bytes"],
] as const) {
  test(`an existing file tlsd would refuse (${what}): one line naming no key, exit 100, the file untouched`, async () => {
    const name = `bad-${what.replace(/\W/g, "-")}`;
    const file = work.path(name);
    writeFileSync(file, content, { mode: 0o600 });
    const before = statSync(file);
    const entries = readdirSync(work.dir).sort();
    const r = await keygen(["ticket", "-v", name], work.dir);
    assert.deepEqual(
      [r.code, r.stdout, r.stderr],
      [100, "", `tls-keygen: fatal: unable to use ticket keys ${name}: ${cause} (left as it is)\n`],
    );
    const after = statSync(file);
    assert.equal(readFileSync(file, "latin1"), content);
    assert.deepEqual([after.ino, after.mtimeMs], [before.ino, before.mtimeMs]);
    assert.deepEqual(readdirSync(work.dir).sort(), entries, "no temp file left");
  });
}

test("a symbolic link to nothing, or a directory, in place of the file: one line, exit 100, left as it is", async () => {
  symlinkSync("nowhere", work.path("dangling"));
  mkdirSync(work.path("a-dir"));
  for (const [name, said] of [
    ["dangling", "dangling is a symbolic link to nothing: remove it, and a new file is made"],
    ["a-dir", "unable to create a-dir: is a directory"],
  ] as const) {
    const r = await keygen(["ticket", name], work.dir);
    assert.deepEqual([r.code, r.stdout, r.stderr], [100, "", `tls-keygen: fatal: ${said}\n`]);
  }
  assert.deepEqual(readdirSync(work.path("a-dir")), []);
});

test("property: any rotations with any count leave a file tlsd parses, the newest key last and min(count, n+2) keys", async () => {
  let round = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 2, max: 6 }), { maxLength: 5 }), async (counts) => {
      const name = `prop-${round++}`;
      await ticket(name);
      let keys = keysOf(work.path(name));
      assert.equal(keys.length, 2);
      for (const count of counts) {
        await ticket("-k", String(count), name);
        const now = keysOf(work.path(name));
        const newest = now.at(-1) ?? "";
        assert.ok(!keys.includes(newest), "the newest key is fresh, and last");
        // The keys before it, the newest of those there were; with one count throughout
        // the file holds min(count, n+2) keys after n rotations.
        assert.deepEqual(now, [...keys, newest].slice(-count));
        keys = now;
      }
      if (counts.length > 0 && counts.every((c) => c === counts[0])) {
        assert.equal(keys.length, Math.min(counts[0] ?? 0, counts.length + 2));
      }
    }),
    { numRuns: 15 },
  );
});

// tlsd reads the file tls-keygen writes: a tlsd per connection under djb's tcpserver (so each
// connection reads the file as it is now) resumes a session made before one rotation, and not
// one whose key the second rotation dropped.
test("tlsd with TICKETFILE from tls-keygen ticket: a session resumes after one rotation, not after its key is dropped", async () => {
  const pki = makePki();
  const server = pki.server("localhost", ["localhost"]);
  await ticket("served");
  const s = await startServer(
    djb("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "/bin/echo", "served"],
    {
      env: {
        PATH: `${BIN}:/usr/bin:/bin`,
        CERTFILE: server.cert,
        KEYFILE: server.key,
        TICKETFILE: work.path("served"),
      },
    },
  );
  const connect = (file: string, resume: boolean, saveTo = file) =>
    sClientSession(s.port, pki.ca.cert, work.path(file), "-tls1_3", resume, work.path(saveTo));
  try {
    const first = await connect("session", false);
    assert.match(first, /^New, TLSv1\.3/m);
    await ticket("served");
    const again = await connect("session", true, "renewed");
    assert.match(again, /^Reused, TLSv1\.3/m);
    assert.match(again, /^served$/m);
    // The second rotation drops the key the session was made under (the first line).
    await ticket("served");
    assert.match(await connect("session", true, "x"), /^New, TLSv1\.3/m);
  } finally {
    await s.stop();
  }
});
