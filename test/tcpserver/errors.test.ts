// Bad input: the same one line and exit code as djb's tcpserver, no hang.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { freePort } from "../helpers/interop.ts";
import { debianIpv6, djb, ours, run } from "../helpers/programs.ts";
import { startServer, talk } from "../helpers/server.ts";
import { normalizeLog } from "../helpers/normalize.ts";

async function both(args: string[]) {
  const a = await run(djb("tcpserver"), args);
  const b = await run(ours("tcpserver"), args);
  return { a, b };
}

const USAGE_CASES: [string, string[]][] = [
  ["an unknown option", ["-Z", "0", "0", "true"]],
  ["an option without its value", ["-c"]],
  ["no arguments", []],
  ["no program", ["0", "0"]],
  ["no program, a known port name", ["-x", "rules.cdb", "0", "smtp"]],
];

// djb's order: an unknown port name is fatal before a missing program is a usage error.
test("no program and an unknown port name: djb's fatal line, exit 111", async () => {
  const { a, b } = await both(["-x", "rules.cdb", "0", "nosuchservice"]);
  assert.equal(b.code, 111);
  assert.equal(b.stderr, "tcpserver: fatal: unable to figure out port number for nosuchservice\n");
  assert.equal(b.stderr, a.stderr);
});

// The usage line is Debian's ucspi-tcp-ipv6 one (its -4, -6 and -I are ours too).
for (const [what, args] of USAGE_CASES) {
  test(`usage error: ${what}`, async () => {
    const a = await run(debianIpv6("tcpserver"), args);
    const b = await run(ours("tcpserver"), args);
    assert.equal(b.code, 100);
    assert.equal(b.stderr, a.stderr);
    assert.equal(b.stdout, "");
  });
}

// djb's tcpserver takes -c abc (and -c 0) for a limit of 0 and then never accepts, silently;
// ours said nothing either, and exited 0. And a --workers process with no connection of its
// own still listened: the kernel handed it clients that it never accepted.
const LIMIT_CASES: [string, string[], string][] = [
  ["-c abc", ["-c", "abc"], "tcpserver: -c needs a positive number, not 'abc'"],
  ["-c 0", ["-c", "0"], "tcpserver: -c needs a positive number, not '0'"],
  [
    "--workers over -c",
    ["-c", "1", "--workers", "2"],
    "tcpserver: --workers 2 needs -c 2 or more, not -c 1",
  ],
];

for (const [what, options, line] of LIMIT_CASES) {
  test(`no connection could ever be accepted (${what}): one line, usage, exit 100`, async () => {
    const b = await run(ours("tcpserver"), [...options, "127.0.0.1", "0", "true"]);
    assert.equal(b.code, 100);
    assert.equal(b.stderr.split("\n")[0], line);
    assert.match(b.stderr.split("\n")[1] ?? "", /^tcpserver: usage: tcpserver /);
  });
}

// An id past what a uid_t holds: ours died with Node's own words ("The value of "id" is out of
// range..."); djb's truncates it to 32 bits and runs as whoever that is.
for (const [what, options, env, line] of [
  [
    "-u 99999999999",
    ["-u", "99999999999"],
    {},
    "-u needs an id from 0 to 4294967294, not '99999999999'",
  ],
  [
    "-g 4294967295",
    ["-g", "4294967295"],
    {},
    "-g needs an id from 0 to 4294967294, not '4294967295'",
  ],
  [
    "-U with UID=99999999999",
    ["-U"],
    { UID: "99999999999" },
    "UID (for -U) needs an id from 0 to 4294967294, not '99999999999'",
  ],
] as const) {
  test(`a user or group id out of range (${what}): one line in our words, usage, exit 100`, async () => {
    const b = await run(ours("tcpserver"), [...options, "127.0.0.1", "0", "true"], {
      env: { ...process.env, ...env },
    });
    assert.equal(b.code, 100);
    assert.equal(b.stderr.split("\n")[0], `tcpserver: ${line}`);
    assert.match(b.stderr.split("\n")[1] ?? "", /^tcpserver: usage: tcpserver /);
  });
}

test("-c 40x is 40, as djb's scan reads it", async () => {
  const s = await startServer(ours("tcpserver"), [
    "-c",
    "40x",
    "-RHl0",
    "127.0.0.1",
    "0",
    "/bin/echo",
    "hi",
  ]);
  try {
    assert.equal(await talk(s.port), "hi\n");
  } finally {
    await s.stop();
  }
});

test("an unknown port name: fatal line, exit 111", async () => {
  const { a, b } = await both(["-RH", "127.0.0.1", "nosuchservice", "true"]);
  assert.equal(b.code, 111);
  assert.equal(b.stderr, "tcpserver: fatal: unable to figure out port number for nosuchservice\n");
  assert.equal(b.stderr, a.stderr);
});

test("a port in use: fatal line, exit 111", async () => {
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(0, "127.0.0.1", r));
  const port = String((holder.address() as AddressInfo).port);
  try {
    const { a, b } = await both(["-RH", "127.0.0.1", port, "true"]);
    assert.equal(b.code, 111);
    assert.equal(b.stderr, "tcpserver: fatal: unable to bind: address already used\n");
    assert.equal(b.stderr, a.stderr);
  } finally {
    holder.close();
  }
});

test("a host name with no address: fatal line, exit 111", async () => {
  const b = await run(ours("tcpserver"), ["-RH", "no-such-host.invalid", "0", "true"]);
  assert.equal(b.code, 111);
  assert.equal(b.stderr, "tcpserver: fatal: no IP address for no-such-host.invalid\n");
});

test("a host in inet_aton's hex form is no IP address, as for djb's", async () => {
  const { a, b } = await both(["-RH", "0x7f.1", "0", "true"]);
  assert.equal(b.code, 111);
  assert.equal(b.stderr, "tcpserver: fatal: no IP address for 0x7f.1\n");
  assert.equal(b.stderr, a.stderr);
});

test("a program that cannot be run: warning, connection dropped, status 28416", async () => {
  const logs: string[] = [];
  for (const server of [djb("tcpserver"), ours("tcpserver")]) {
    const s = await startServer(server, ["-v", "-RHl0", "127.0.0.1", "0", "/no/such/program"]);
    try {
      assert.equal(await talk(s.port), "");
      await s.waitForLog(/ end /);
      // The status line after the end comes in its own write: wait for it too.
      await s.waitForLog(/^tcpserver: status: 0\//, 2);
      logs.push(normalizeLog(s.log()));
    } finally {
      await s.stop();
    }
  }
  assert.match(
    logs[1] ?? "",
    /^tcpserver: warning: dropping connection, unable to run \/no\/such\/program: file does not exist$/m,
  );
  assert.match(logs[1] ?? "", /^tcpserver: end PID status 28416$/m);
  assert.equal(logs[1], logs[0]);
});

// -1 where the port cannot be written: djb's goes on serving; ours ended with "internal error:
// EPIPE" (or ENOSPC) and exit 111.
for (const where of ["/dev/full", "a pipe whose reader is gone"]) {
  for (const server of [djb("tcpserver"), ours("tcpserver")]) {
    const who = server.startsWith("/usr") ? "djb's" : "ours";
    test(`-1 with stdout ${where}: ${who} serves all the same`, async () => {
      const port = await freePort();
      const full = where === "/dev/full" ? openSync("/dev/full", "w") : undefined;
      const child = spawn(
        server,
        ["-1", "-v", "-RHl0", "127.0.0.1", String(port), "/bin/echo", "hi"],
        { stdio: ["ignore", full ?? "pipe", "pipe"] },
      );
      if (full !== undefined) closeSync(full);
      child.stdout?.destroy();
      let stderr = "";
      const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
      const started = new Promise<void>((resolve) => {
        child.stderr?.on("data", (b: Buffer) => {
          stderr += b.toString("latin1");
          if (stderr.includes("status: 0/40\n")) resolve();
        });
      });
      try {
        const first = await Promise.race([started.then(() => "started"), exited]);
        assert.equal(first, "started", stderr);
        assert.equal(await talk(port), "hi\n");
        assert.doesNotMatch(stderr, /fatal/);
      } finally {
        child.kill("SIGTERM");
      }
      assert.equal(await exited, 0);
    });
  }
}
