// IPv6 beside Debian's ucspi-tcp-ipv6 tcpserver (1:0.88-7), the peer our IPv6 behaviour follows:
// the child environment (PROTO=TCP6, TCP6* variables, the mapped form for an IPv4 client of a
// dual-stack listener), the -v log lines, and rules keyed by IPv6 addresses.
//
// The peer is not installed (it conflicts with ucspi-tcp); CI extracts it with
//   mkdir -p build/peers && cd build/peers && apt-get download ucspi-tcp-ipv6 &&
//   dpkg-deb -x ucspi-tcp-ipv6_*.deb ucspi-tcp-ipv6
// Debian's binary binds `::` for host `0` and does not take `::` itself (it asks DNS); ours binds
// 0.0.0.0 for `0` (djb) and `::` for `::`. So ours on `::` is compared with Debian's on `::0`
// and on `0`.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { before, test } from "node:test";
import { ROOT, debianIpv6, ours, run } from "../helpers/programs.ts";
import { hidePortVars } from "../helpers/normalize.ts";
import { rulesText } from "../helpers/rules.ts";
import { startServer, talk } from "../helpers/server.ts";
import { logShape, session } from "../helpers/session.ts";
import type { Client, Session } from "../helpers/session.ts";
import { scratchDir } from "../helpers/scratch.ts";

const PRINT_ENV = join(ROOT, "test/fixtures/print-env");
const SERVER_ENV = { PATH: "/usr/bin:/bin" };

const debian = debianIpv6;

let dir = "";
before(() => {
  dir = scratchDir("ipv6");
});

const V6_CLIENT: Client = { host: "::1", localAddress: "::1" };
const V4_CLIENT: Client = { host: "127.0.0.1", localAddress: "127.0.0.1" };

function envOf(out: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of out.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) vars.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return vars;
}

/** Debian's tcpserver on `peerHost`, ours on `ourHost`, the same clients; they must agree. */
async function sideBySide(
  peerHost: string,
  ourHost: string,
  args: readonly string[],
  clients: readonly Client[],
): Promise<{ peer: Session; ours: Session }> {
  const a = await session(debian("tcpserver"), args, peerHost, [PRINT_ENV], clients, {
    env: SERVER_ENV,
  });
  const b = await session(ours("tcpserver"), args, ourHost, [PRINT_ENV], clients, {
    env: SERVER_ENV,
  });
  assert.deepEqual(b.outputs.map(hidePortVars), a.outputs.map(hidePortVars), "client output");
  assert.deepEqual(logShape(b.log), logShape(a.log), `log\nours:\n${b.log}\nDebian's:\n${a.log}`);
  return { peer: a, ours: b };
}

test("Debian's ucspi-tcp-ipv6 tcpserver is there to compare with", () => {
  const r = debian("tcpserver");
  assert.ok(r.endsWith("/usr/bin/tcpserver"));
});

test("on ::1: an IPv6 client gets PROTO=TCP6 and the TCP6* variables, as Debian's", async () => {
  const { ours: b } = await sideBySide("::1", "::1", ["-RHl0"], [V6_CLIENT, V6_CLIENT]);
  const vars = envOf(b.outputs[0] ?? "");
  assert.equal(vars.get("PROTO"), "TCP6");
  assert.equal(vars.get("TCP6REMOTEIP"), "::1");
  assert.equal(vars.get("TCPREMOTEIP"), "::1");
  assert.equal(vars.get("TCP6LOCALIP"), "::1");
  assert.equal(vars.get("TCP6LOCALHOST"), "0");
  assert.equal(vars.get("TCP6REMOTEPORT"), vars.get("TCPREMOTEPORT"));
  assert.match(b.log, /^tcpserver: ok \d+ 0:::1:\d+ :::1::\d+$/m);
});

test("on ::1: an IPv4 client is refused (no dual stack), as by Debian's", async () => {
  for (const server of [debian("tcpserver"), ours("tcpserver")]) {
    const s = await startServer(server, ["-RHl0", "::1", "0", PRINT_ENV], { env: SERVER_ENV });
    try {
      await assert.rejects(talk(s.port, "", "127.0.0.1"), /ECONNREFUSED/, server);
      assert.match(await talk(s.port, "", "::1"), /^PROTO=TCP6$/m, server);
    } finally {
      await s.stop();
    }
  }
});

for (const peerHost of ["::0", "0"]) {
  test(`dual stack: ours on :: and Debian's on ${peerHost}, an IPv6 and an IPv4 client`, async () => {
    const { ours: b } = await sideBySide(
      peerHost,
      "::",
      ["-RHl0"],
      [V6_CLIENT, V4_CLIENT, { host: "127.0.0.1", localAddress: "127.0.0.7" }],
    );
    const v6 = envOf(b.outputs[0] ?? "");
    assert.equal(v6.get("PROTO"), "TCP6");
    assert.equal(v6.get("TCPREMOTEIP"), "::1");
    const v4 = envOf(b.outputs[1] ?? "");
    assert.equal(v4.get("PROTO"), "TCP");
    assert.equal(v4.get("TCPREMOTEIP"), "127.0.0.1");
    assert.equal(v4.get("TCPLOCALIP"), "127.0.0.1");
    assert.equal(v4.get("TCP6REMOTEIP"), "::ffff:127.0.0.1");
    assert.equal(v4.get("TCP6LOCALIP"), "::ffff:127.0.0.1");
    assert.equal(envOf(b.outputs[2] ?? "").get("TCP6REMOTEIP"), "::ffff:127.0.0.7");
    // The pid line has the plain IPv4 address, the ok line the mapped one, as Debian's.
    assert.match(b.log, /^tcpserver: pid \d+ from 127\.0\.0\.1$/m);
    assert.match(b.log, /^tcpserver: ok \d+ 0:::ffff:127\.0\.0\.1:\d+ :::ffff:127\.0\.0\.1::\d+$/m);
  });
}

test("ours on ::0 is the same as ours on :: (and as Debian's on ::0)", async () => {
  await sideBySide("::0", "::0", ["-RHl0"], [V6_CLIENT, V4_CLIENT]);
});

/** Rules compiled by Debian's tcprules (IPv6 keys such as `::1` before `:allow`). */
async function ipv6Rules(lines: string[]): Promise<string> {
  const cdb = join(dir, `rules${Math.random().toString(36).slice(2)}.cdb`);
  const r = await run(debian("tcprules"), [cdb, `${cdb}.tmp`], { input: rulesText(lines) });
  assert.equal(r.code, 0, r.stderr);
  // Ours compiles the same text to the same bytes.
  const mine = `${cdb}.ours`;
  const o = await run(ours("tcprules"), [mine, `${mine}.tmp`], { input: rulesText(lines) });
  assert.equal(o.code, 0, o.stderr);
  assert.deepEqual(readFileSync(mine), readFileSync(cdb), "our tcprules, same cdb bytes");
  return cdb;
}

test("rules: `::1` for the IPv6 client, `127.0.0.1` for an IPv4 one on the same listener", async () => {
  const cdb = await ipv6Rules([
    '::1:allow,X="v6",GREETING="hello ::1"',
    '127.0.0.1:allow,X="v4"',
    "127.0.0.2:deny",
    ":deny",
  ]);
  const clients = [
    V6_CLIENT,
    V4_CLIENT,
    { host: "127.0.0.1", localAddress: "127.0.0.2" },
    { host: "127.0.0.1", localAddress: "127.0.0.3" },
  ];
  const { ours: b } = await sideBySide("::0", "::", ["-RHl0", "-x", cdb], clients);
  assert.equal(envOf(b.outputs[0] ?? "").get("X"), "v6");
  assert.equal(envOf(b.outputs[0] ?? "").get("GREETING"), "hello ::1");
  assert.equal(envOf(b.outputs[1] ?? "").get("X"), "v4");
  assert.equal(b.outputs[2], "");
  assert.equal(b.outputs[3], "");
  assert.match(b.log, /^tcpserver: deny \d+ 0:::ffff:127\.0\.0\.1:\d+ :::ffff:127\.0\.0\.2::\d+$/m);
});

test("rules: an IPv6 prefix key (`::`) and a deny for ::1, on ::1", async () => {
  const prefix = await ipv6Rules([':::allow,X="v6 prefix"', ":deny"]);
  const r1 = await sideBySide("::1", "::1", ["-RHl0", "-x", prefix], [V6_CLIENT]);
  assert.equal(envOf(r1.ours.outputs[0] ?? "").get("X"), "v6 prefix");
  const deny = await ipv6Rules(["::1:deny", ':allow,X="default"']);
  const r2 = await sideBySide("::1", "::1", ["-RHl0", "-x", deny], [V6_CLIENT]);
  assert.equal(r2.ours.outputs[0], "");
  assert.match(r2.ours.log, /^tcpserver: deny \d+ 0:::1:\d+ :::1::\d+$/m);
  assert.match(r2.ours.log, /^tcpserver: end \d+ status 25600$/m);
});

// Debian's -6 ("force IPv6 mode in UCSPI environment variables"): tcpserver -6 in a run script
// made ours stop at "illegal option -- 6".
test("-6: an IPv4 client is told as an IPv6 one (PROTO=TCP6, the mapped form), its rules and log lines too, as Debian's -6", async () => {
  const cdb = await ipv6Rules([
    '127.0.0.1:allow,X="v4"',
    '::ffff:127.0.0.:allow,X="mapped prefix"',
    ':allow,X="other"',
  ]);
  // Debian's `0` is its dual-stack wildcard, ours djb's IPv4 one: with -6 they tell the same.
  for (const [peerHost, ourHost, clients] of [
    ["0", "0", [V4_CLIENT]],
    ["::0", "::", [V4_CLIENT, V6_CLIENT]],
  ] as const) {
    const { ours: b } = await sideBySide(peerHost, ourHost, ["-6", "-RHl0", "-x", cdb], clients);
    const v4 = envOf(b.outputs[0] ?? "");
    assert.equal(v4.get("PROTO"), "TCP6");
    assert.equal(v4.get("TCPREMOTEIP"), "::ffff:127.0.0.1");
    assert.equal(v4.get("TCPLOCALIP"), "::ffff:127.0.0.1");
    assert.equal(v4.get("TCP6REMOTEIP"), "::ffff:127.0.0.1");
    assert.equal(v4.get("TCP6REMOTEPORT"), v4.get("TCPREMOTEPORT"));
    assert.equal(v4.get("X"), "mapped prefix");
    assert.match(b.log, /^tcpserver: pid \d+ from ::ffff:127\.0\.0\.1$/m);
    assert.match(b.log, /^tcpserver: ok \d+ 0:::ffff:127\.0\.0\.1:\d+ :::ffff:127\.0\.0\.1::\d+$/m);
    if (clients.length > 1) assert.equal(envOf(b.outputs[1] ?? "").get("TCPREMOTEIP"), "::1");
  }
});

test("-4: IPv4 sockets only, as Debian's -4: an IPv6 host has no address, `0` takes no IPv6 client", async () => {
  const r = await run(ours("tcpserver"), ["-4", "-RHl0", "::1", "0", PRINT_ENV]);
  assert.equal(r.code, 111);
  assert.equal(r.stderr, "tcpserver: fatal: no IP address for ::1\n");
  for (const server of [debian("tcpserver"), ours("tcpserver")]) {
    const s = await startServer(server, ["-4", "-RHl0", "0", "0", PRINT_ENV], { env: SERVER_ENV });
    try {
      await assert.rejects(talk(s.port, "", "::1"), /ECONNREFUSED/, server);
      const vars = envOf(await talk(s.port, "", "127.0.0.1"));
      assert.equal(vars.get("PROTO"), "TCP", server);
      assert.equal(vars.get("TCPREMOTEIP"), "127.0.0.1", server);
    } finally {
      await s.stop();
    }
  }
});
