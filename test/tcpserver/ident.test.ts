// TCPREMOTEINFO (ident, RFC 1413, on by default) beside djb's tcpserver: both ask the same fake
// identd on 127.0.0.113:113, the source address of the test's clients, and must send the same
// query, set the same variable, log the same line and pick the same rule.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { join } from "node:path";
import { ROOT, djb, ours, run } from "../helpers/programs.ts";
import { hidePortVars } from "../helpers/normalize.ts";
import { startIdentd } from "../helpers/identd.ts";
import type { FakeIdentd } from "../helpers/identd.ts";
import { rulesText } from "../helpers/rules.ts";
import { logShape, session } from "../helpers/session.ts";
import type { Client, Session } from "../helpers/session.ts";
import { scratchDir } from "../helpers/scratch.ts";

const PRINT_ENV = join(ROOT, "test/fixtures/print-env");
const SERVER_ENV = { PATH: "/usr/bin:/bin" };
/** The clients' source address, where the identd listens; used by no other test. */
const CLIENT_IP = "127.0.0.113";
/** A source address with no identd behind it (connection refused on port 113). */
const NO_IDENTD_IP = "127.0.0.114";

let identd: FakeIdentd;
let dir = "";
let cdb = "";

before(async () => {
  identd = await startIdentd(CLIENT_IP);
  dir = scratchDir("ident");
  cdb = join(dir, "rules.cdb");
  const lines = [
    `joe@${CLIENT_IP}:allow,X="ident"`,
    `${CLIENT_IP}:allow,X="ip"`,
    `${NO_IDENTD_IP}:allow,X="ip"`,
    `mallory@${CLIENT_IP}:deny`,
    ":deny",
  ];
  const r = await run(djb("tcprules"), [cdb, `${cdb}.tmp`], { input: rulesText(lines) });
  assert.equal(r.code, 0, r.stderr);
});

after(async () => {
  await identd.close();
});

function env(out: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of out.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) vars.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return vars;
}

/** The same clients on djb's tcpserver and ours (ident on: no -R); they must agree. */
async function sideBySide(
  args: readonly string[],
  clients: readonly Client[],
): Promise<{ djb: Session; ours: Session; djbQueries: string[]; ourQueries: string[] }> {
  identd.queries.length = 0;
  const a = await session(djb("tcpserver"), args, "127.0.0.1", [PRINT_ENV], clients, {
    env: SERVER_ENV,
  });
  const djbQueries = identd.queries.splice(0);
  const b = await session(ours("tcpserver"), args, "127.0.0.1", [PRINT_ENV], clients, {
    env: SERVER_ENV,
  });
  const ourQueries = identd.queries.splice(0);
  assert.deepEqual(b.outputs.map(hidePortVars), a.outputs.map(hidePortVars), "client output");
  assert.deepEqual(logShape(b.log), logShape(a.log), `log\nours:\n${b.log}\ndjb:\n${a.log}`);
  return { djb: a, ours: b, djbQueries, ourQueries };
}

test("the identd gets exactly `REMOTEPORT , LOCALPORT` CRLF; joe becomes TCPREMOTEINFO", async () => {
  identd.answer = (query) => `${query} : USERID : UNIX : joe\r\n`;
  const r = await sideBySide(["-H", "-l0"], [{ localAddress: CLIENT_IP }]);
  for (const [who, s, queries] of [
    ["djb", r.djb, r.djbQueries],
    ["ours", r.ours, r.ourQueries],
  ] as const) {
    const vars = env(s.outputs[0] ?? "");
    assert.equal(vars.get("TCPREMOTEINFO"), "joe", who);
    assert.deepEqual(
      queries,
      [`${vars.get("TCPREMOTEPORT")} , ${vars.get("TCPLOCALPORT")}\r\n`],
      `${who}: the query`,
    );
  }
  assert.match(r.ours.log, /^tcpserver: ok \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.113:joe:\d+$/m);
});

test("an ident rule (joe@IP) wins over the IP rule; other answers fall back to it", async () => {
  const users = ["joe", "mallory", "bob"];
  let next = 0;
  identd.answer = (query) => `${query} : USERID : UNIX : ${users[next++ % users.length]}\r\n`;
  const clients = [
    ...users.map(() => ({ localAddress: CLIENT_IP })),
    { localAddress: NO_IDENTD_IP },
  ];
  next = 0;
  const a = await session(
    djb("tcpserver"),
    ["-H", "-l0", "-x", cdb],
    "127.0.0.1",
    [PRINT_ENV],
    clients,
    {
      env: SERVER_ENV,
    },
  );
  next = 0;
  const b = await session(
    ours("tcpserver"),
    ["-H", "-l0", "-x", cdb],
    "127.0.0.1",
    [PRINT_ENV],
    clients,
    {
      env: SERVER_ENV,
    },
  );
  assert.deepEqual(b.outputs.map(hidePortVars), a.outputs.map(hidePortVars));
  assert.deepEqual(logShape(b.log), logShape(a.log), `ours:\n${b.log}\ndjb:\n${a.log}`);
  const [joe, , bob, none] = b.outputs.map(env);
  assert.equal(joe?.get("X"), "ident");
  assert.equal(joe?.get("TCPREMOTEINFO"), "joe");
  assert.equal(b.outputs[1], "", "mallory@ is denied");
  assert.equal(bob?.get("X"), "ip");
  assert.equal(bob?.get("TCPREMOTEINFO"), "bob");
  // No identd at the source address: no TCPREMOTEINFO, the IP rule.
  assert.equal(none?.get("X"), "ip");
  assert.equal(none?.has("TCPREMOTEINFO"), false);
  assert.match(b.log, /^tcpserver: deny \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.113:mallory:\d+$/m);
});

const ODD_ANSWERS: [string, (query: string) => string][] = [
  ["spaces and tabs inside the user id", (q) => `${q} : USERID : UNIX : al \tice\r\n`],
  ["colons inside the user id", (q) => `${q}:USERID:UNIX:jo:e\n`],
  ["an ERROR reply", (q) => `${q} : ERROR : NO-USER\r\n`],
  ["bytes the log must hide", (q) => `${q} : USERID : UNIX : a%b\x7fc\r\n`],
  ["a byte above 127 (latin1 e-acute)", (q) => `${q} : USERID : UNIX : jos\xe9\r\n`],
  ["a user id of 300 bytes", (q) => `${q} : USERID : UNIX : ${"u".repeat(300)}\r\n`],
  ["no newline before EOF", (q) => `${q} : USERID : UNIX : joe`],
  ["garbage", () => "what?\r\n"],
];

for (const [what, answer] of ODD_ANSWERS) {
  test(`an identd answer with ${what}: the same TCPREMOTEINFO and log as djb's`, async () => {
    identd.answer = answer;
    await sideBySide(["-H", "-l0"], [{ localAddress: CLIENT_IP }]);
  });
}

test("a silent identd and -t 1: the connection is still served, without TCPREMOTEINFO", async () => {
  identd.answer = () => undefined;
  const r = await sideBySide(["-t", "1", "-H", "-l0"], [{ localAddress: CLIENT_IP }]);
  assert.equal(r.djbQueries.length, 1);
  assert.equal(r.ourQueries.length, 1);
  const vars = env(r.ours.outputs[0] ?? "");
  assert.equal(vars.get("TCPREMOTEIP"), CLIENT_IP);
  assert.match(r.ours.outputs[0] ?? "", /^TCPREMOTEINFO unset$/m);
  assert.match(r.ours.log, /^tcpserver: ok \d+ 0:127\.0\.0\.1:\d+ :127\.0\.0\.113::\d+$/m);
});

test("-R: no ident query at all", async () => {
  identd.answer = (query) => `${query} : USERID : UNIX : joe\r\n`;
  const r = await sideBySide(["-R", "-H", "-l0"], [{ localAddress: CLIENT_IP }]);
  assert.deepEqual(r.djbQueries, []);
  assert.deepEqual(r.ourQueries, []);
  assert.match(r.ours.outputs[0] ?? "", /^TCPREMOTEINFO unset$/m);
});
