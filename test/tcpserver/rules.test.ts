// tcpserver -x beside djb's: rules compiled by djb's tcprules and by ours, served by both
// tcpservers, from clients on different loopback addresses. Child environment, what the client
// reads and the -v log must be the same (pids and ports aside).
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, djb, ours, run } from "../helpers/programs.ts";
import { hidePortVars } from "../helpers/normalize.ts";
import { rulesText } from "../helpers/rules.ts";
import { freePort } from "../helpers/interop.ts";
import { startServer, talk } from "../helpers/server.ts";
import { logShape, session } from "../helpers/session.ts";
import type { Client, Session } from "../helpers/session.ts";
import { scratchDir } from "../helpers/scratch.ts";

const PRINT_ENV = join(ROOT, "test/fixtures/print-env");
const SERVER_ENV = { PATH: "/usr/bin:/bin" };
const SERVERS = [
  ["djb", djb("tcpserver")],
  ["ours", ours("tcpserver")],
] as const;
const MAKERS = [
  ["djb's tcprules", djb("tcprules")],
  ["our tcprules", ours("tcprules")],
] as const;

const RULES = [
  "# test rules",
  "127.0.0.2:deny",
  '127.0.0.1:allow,RELAYCLIENT="",GREETING="hi there"',
  '127.0.0.10-19:allow,X="range"',
  '127.0.1.:allow,X="prefix"',
  '127.0.2.3:deny,X="denied anyway"',
  ":deny",
];

/** One client per case; the comment says which rule it must meet. */
const CLIENTS: Client[] = [
  { localAddress: "127.0.0.1" }, // allow with RELAYCLIENT and GREETING
  { localAddress: "127.0.0.2" }, // deny
  { localAddress: "127.0.0.10" }, // range, low end
  { localAddress: "127.0.0.15" }, // range
  { localAddress: "127.0.0.19" }, // range, high end
  { localAddress: "127.0.0.20" }, // just past the range: catch-all deny
  { localAddress: "127.0.1.7" }, // prefix 127.0.1.
  { localAddress: "127.0.2.3" }, // deny with variables
  { localAddress: "127.0.0.9" }, // catch-all deny
];

let dir = "";

before(() => {
  dir = scratchDir("tcpserver-rules");
});

let counter = 0;

/** Compiles `lines` with `maker` into `cdb` (a tmp file beside it, renamed over it). */
async function tcprules(maker: string, lines: readonly string[], cdb: string): Promise<void> {
  const r = await run(maker, [cdb, `${cdb}.tmp${counter++}`], { input: rulesText(lines) });
  assert.equal(r.code, 0, `${maker} failed: ${r.stderr}`);
}

function freshPath(name: string): string {
  const sub = join(dir, `${counter++}`);
  mkdirSync(sub);
  return join(sub, name);
}

/** The same session on djb's tcpserver and ours, and the assertion that they agree. */
async function sideBySide(
  args: readonly string[],
  clients: readonly Client[],
  program: readonly string[] = [PRINT_ENV],
): Promise<{ djb: Session; ours: Session }> {
  const a = await session(djb("tcpserver"), args, "127.0.0.1", program, clients, {
    env: SERVER_ENV,
  });
  const b = await session(ours("tcpserver"), args, "127.0.0.1", program, clients, {
    env: SERVER_ENV,
  });
  assert.deepEqual(b.outputs.map(hidePortVars), a.outputs.map(hidePortVars), "client output");
  assert.deepEqual(logShape(b.log), logShape(a.log), `log\nours:\n${b.log}\ndjb:\n${a.log}`);
  return { djb: a, ours: b };
}

for (const [makerName, maker] of MAKERS) {
  test(`a cdb made by ${makerName}: allow with variables, deny, ranges, prefix, catch-all`, async () => {
    const cdb = freshPath("rules.cdb");
    await tcprules(maker, RULES, cdb);
    const { ours: b } = await sideBySide(["-R", "-H", "-l0", "-x", cdb], CLIENTS);
    const [allowed, denied, low, mid, high, past, prefix, denyVars, rest] = b.outputs;
    assert.match(allowed ?? "", /^RELAYCLIENT=$/m);
    assert.match(allowed ?? "", /^GREETING=hi there$/m);
    assert.match(allowed ?? "", /^TCPREMOTEIP=127\.0\.0\.1$/m);
    assert.match(allowed ?? "", /^X unset$/m);
    for (const out of [low, mid, high]) {
      assert.match(out ?? "", /^X=range$/m);
      assert.match(out ?? "", /^RELAYCLIENT unset$/m);
    }
    assert.match(prefix ?? "", /^X=prefix$/m);
    assert.match(prefix ?? "", /^TCPREMOTEIP=127\.0\.1\.7$/m);
    // A denied client sees EOF and nothing else.
    for (const out of [denied, past, denyVars, rest]) assert.equal(out, "");
    const shape = logShape(b.log);
    const denies = shape.events.filter((l) => l.startsWith("tcpserver: deny "));
    assert.deepEqual(denies, [
      "tcpserver: deny PID 0:127.0.0.1:PORT :127.0.0.2::PORT",
      "tcpserver: deny PID 0:127.0.0.1:PORT :127.0.0.20::PORT",
      "tcpserver: deny PID 0:127.0.0.1:PORT :127.0.2.3::PORT",
      "tcpserver: deny PID 0:127.0.0.1:PORT :127.0.0.9::PORT",
    ]);
    assert.equal(shape.events.filter((l) => l === "tcpserver: end PID status 25600").length, 4);
    assert.equal(shape.events.filter((l) => l === "tcpserver: end PID status 0").length, 5);
  });
}

test("rule values are bytes: UTF-8 and non-UTF-8 values reach the child as djb's do", async () => {
  const cdb = freshPath("rules.cdb");
  await tcprules(
    djb("tcprules"),
    ['127.0.0.1:allow,X="caf\xc3\xa9",GREETING="caf\xe9"', '127.0.0.2:allow,X="a b\tc"'],
    cdb,
  );
  const { ours: b } = await sideBySide(
    ["-R", "-H", "-l0", "-x", cdb],
    [{ localAddress: "127.0.0.1" }, { localAddress: "127.0.0.2" }],
  );
  // Outputs are read as latin1: one character per byte.
  assert.match(b.outputs[0] ?? "", /^X=caf\xc3\xa9$/m);
  assert.match(b.outputs[0] ?? "", /^GREETING=caf\xe9$/m);
  assert.match(b.outputs[1] ?? "", /^X=a b\tc$/m);
});

test("djb's tcprules and ours write the same cdb bytes for these rules", async () => {
  const a = freshPath("rules.cdb");
  const b = freshPath("rules.cdb");
  await tcprules(djb("tcprules"), RULES, a);
  await tcprules(ours("tcprules"), RULES, b);
  assert.deepEqual(readFileSync(b), readFileSync(a));
});

test("the rules file is re-read for every connection (replaced by both tcprules)", async () => {
  const cdb = freshPath("rules.cdb");
  const set = (maker: string, lines: string[]) => () => tcprules(maker, lines, cdb);
  const clients: Client[] = [
    { before: set(djb("tcprules"), ['127.0.0.1:allow,X="one"']) },
    { before: set(ours("tcprules"), ["127.0.0.1:deny"]) },
    { before: set(djb("tcprules"), ['127.0.0.:allow,X="three"', "127.0.0.1:deny"]) },
    { before: set(ours("tcprules"), ['127.0.0.1:allow,X="four"']) },
    { localAddress: "127.0.0.44" }, // no rule for it any more: default allow, no X
  ];
  const { ours: b } = await sideBySide(["-R", "-H", "-l0", "-x", cdb], clients);
  assert.deepEqual(
    b.outputs.map((o) => /^X.*$/m.exec(o)?.[0] ?? "EOF"),
    ["X=one", "EOF", "EOF", "X=four", "X unset"],
  );
});

test("the rules file written over in place (same inode, same size) counts from the next connection", async () => {
  const cdb = freshPath("rules.cdb");
  const first = freshPath("first.cdb");
  const second = freshPath("second.cdb");
  await tcprules(ours("tcprules"), ['127.0.0.1:allow,X="AAAA"'], first);
  await tcprules(ours("tcprules"), ['127.0.0.1:allow,X="BBBB"'], second);
  const [a, b] = [readFileSync(first), readFileSync(second)];
  assert.equal(a.length, b.length);
  const clients: Client[] = [
    { before: () => writeFileSync(cdb, a) },
    { before: () => writeFileSync(cdb, b) },
    { before: () => writeFileSync(cdb, a) },
  ];
  const { ours: s } = await sideBySide(["-R", "-H", "-l0", "-x", cdb], clients);
  assert.deepEqual(
    s.outputs.map((o) => /^X.*$/m.exec(o)?.[0]),
    ["X=AAAA", "X=BBBB", "X=AAAA"],
  );
});

test("rules replaced atomically while the server runs: every connection sees old or new", async () => {
  for (const [who, server] of SERVERS) {
    const cdb = freshPath("rules.cdb");
    await tcprules(ours("tcprules"), ['127.0.0.1:allow,X="a"'], cdb);
    const s = await startServer(
      server,
      ["-v", "-R", "-H", "-l0", "-x", cdb, "127.0.0.1", "0"].concat(PRINT_ENV),
      {
        env: SERVER_ENV,
      },
    );
    try {
      let stop = false;
      const writer = (async () => {
        for (let i = 0; !stop; i++) {
          const maker = i % 2 ? djb("tcprules") : ours("tcprules");
          await tcprules(maker, [`127.0.0.1:allow,X="${i % 2 ? "b" : "a"}"`], cdb);
        }
      })();
      const seen = new Set<string>();
      for (let i = 0; i < 40; i++) {
        const out = await talk(s.port);
        seen.add(/^X.*$/m.exec(out)?.[0] ?? `no X in: ${out}`);
      }
      stop = true;
      await writer;
      for (const x of seen) assert.match(x, /^X=[ab]$/, who);
      await s.waitForLog(/ end /, 40);
      assert.doesNotMatch(s.log(), /warning|deny/, who);
    } finally {
      await s.stop();
    }
  }
});

test("-X with a missing rules file: every client allowed, no variables", async () => {
  const missing = join(dir, "no-such-rules.cdb");
  const { ours: b } = await sideBySide(
    ["-X", "-R", "-H", "-l0", "-x", missing],
    [{ localAddress: "127.0.0.1" }, { localAddress: "127.0.0.2" }],
  );
  for (const out of b.outputs) assert.match(out, /^PROTO=TCP$/m);
  assert.doesNotMatch(b.log, /warning|deny/);
});

test("no -X and a missing rules file: each connection dropped with a warning, status 28416", async () => {
  const missing = join(dir, "no-such-rules.cdb");
  const { ours: b } = await sideBySide(
    ["-R", "-H", "-l0", "-x", missing],
    [{ localAddress: "127.0.0.1" }, { localAddress: "127.0.0.3" }],
  );
  assert.deepEqual(b.outputs, ["", ""]);
  assert.deepEqual(logShape(b.log).events, [
    "tcpserver: pid PID from 127.0.0.1",
    `tcpserver: warning: dropping connection, unable to read ${missing}: file does not exist`,
    "tcpserver: end PID status 28416",
    "tcpserver: pid PID from 127.0.0.3",
    `tcpserver: warning: dropping connection, unable to read ${missing}: file does not exist`,
    "tcpserver: end PID status 28416",
  ]);
});

test("-X does not excuse a rules file that is there but unreadable (a directory)", async () => {
  // No djb peer here: djb's tcpserver dies of SIGSEGV in the child (`end PID status 11`) when
  // the rules "file" is a directory. Ours drops the connection as for any unreadable file.
  const sub = freshPath("rules.cdb");
  mkdirSync(sub);
  const b = await session(
    ours("tcpserver"),
    ["-X", "-R", "-H", "-l0", "-x", sub],
    "127.0.0.1",
    [PRINT_ENV],
    [{}],
    {
      env: SERVER_ENV,
    },
  );
  assert.deepEqual(b.outputs, [""]);
  assert.deepEqual(logShape(b.log).events, [
    "tcpserver: pid PID from 127.0.0.1",
    `tcpserver: warning: dropping connection, unable to read ${sub}: is a directory`,
    "tcpserver: end PID status 28416",
  ]);
});

/** Rules with a record for 127.0.0.1, compiled by djb's tcprules, as a base to damage. */
async function goodCdb(): Promise<Buffer> {
  const cdb = freshPath("rules.cdb");
  await tcprules(djb("tcprules"), ['127.0.0.1:allow,X="good"', ":deny"], cdb);
  return readFileSync(cdb);
}

/** Deterministic junk (a linear congruential generator). */
function junk(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const CORRUPT: [string, (good: Buffer) => Buffer][] = [
  ["an empty file", () => Buffer.alloc(0)],
  ["a header cut short", (good) => good.subarray(0, 1000)],
  ["records and tables cut off", (good) => good.subarray(0, 2060)],
  ["the hash tables cut off", (good) => good.subarray(0, good.length - 20)],
  [
    "a header of 0xff bytes",
    (good) => Buffer.concat([Buffer.alloc(2048, 0xff), good.subarray(2048)]),
  ],
  ["junk bytes", () => junk(4096, 7)],
  ["a header only, all zero (an empty cdb)", () => Buffer.alloc(2048)],
  [
    "hash slots pointing past the end",
    (good) => {
      const bad = Buffer.from(good);
      // The hash tables follow the records; the lowest table position in the header is the first.
      let tables = bad.length;
      for (let i = 0; i < 256; i++) tables = Math.min(tables, bad.readUInt32LE(i * 8));
      for (let at = tables; at + 8 <= bad.length; at += 8) {
        if (bad.readUInt32LE(at + 4) !== 0) bad.writeUInt32LE(0xfffffff0, at + 4);
      }
      return bad;
    },
  ],
  [
    "a record length beyond the end",
    (good) => {
      const bad = Buffer.from(good);
      bad.writeUInt32LE(0x7fffffff, 2048); // first record's key length
      return bad;
    },
  ],
];

for (const [what, damage] of CORRUPT) {
  test(`a corrupt rules cdb (${what}): same verdict and log as djb's`, async () => {
    const cdb = freshPath("rules.cdb");
    const bytes = damage(await goodCdb());
    writeFileSync(`${cdb}.tmp`, bytes);
    renameSync(`${cdb}.tmp`, cdb);
    const { djb: a } = await sideBySide(
      ["-R", "-H", "-l0", "-x", cdb],
      [{ localAddress: "127.0.0.1" }, { localAddress: "127.0.0.2" }],
    );
    // Whatever djb does with these bytes, it is the same for ours (checked in sideBySide); the
    // log says which it was, for the record.
    assert.ok(a.log.length > 0);
  });
}

test("--redirected: rules keyed by the port the client asked for (PORT/key) come first; without it djb's keys alone", async () => {
  const port = await freePort();
  const cdb = freshPath("ports.cdb");
  await tcprules(
    ours("tcprules"),
    [
      `${port}/127.0.0.2:deny`,
      `${port}/:allow,PORTRULE="for ${port}"`,
      '9/:allow,PORTRULE="for port 9"',
      ':allow,PORTRULE="none"',
    ],
    cdb,
  );
  const program = ["sh", "-c", 'echo "$PORTRULE"'];
  for (const [flags, expected] of [
    [["--redirected"], `for ${port}\n`],
    [[], "none\n"],
  ] as const) {
    const server = await startServer(
      ours("tcpserver"),
      [...flags, "-RHl0", "-x", cdb, "127.0.0.1", String(port), ...program],
      {
        env: SERVER_ENV,
      },
    );
    try {
      assert.equal(await talk(server.port, ""), expected);
      // The deny keyed by the port holds only where ports are looked at.
      const denied = await talk(server.port, "", "127.0.0.1", { localAddress: "127.0.0.2" });
      assert.equal(denied, flags.length > 0 ? "" : "none\n");
    } finally {
      await server.stop();
    }
  }
});
