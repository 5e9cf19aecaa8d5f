// Our tcpserver beside djb's: the same child environment, fds and -v log lines for the same
// inputs (pids and ports aside).
import assert from "node:assert/strict";
import { test } from "node:test";
import { connect } from "node:net";
import { join } from "node:path";
import { ROOT, djb, ours } from "../helpers/programs.ts";
import { startServer, talk } from "../helpers/server.ts";
import { hidePortVars, normalizeLog } from "../helpers/normalize.ts";

const PRINT_ENV = join(ROOT, "test/fixtures/print-env");
const PRINT_FDS = join(ROOT, "test/fixtures/print-fds");

// Inherited values that tcpserver must override or unset, and one it must pass through.
const SERVER_ENV = {
  PATH: "/usr/bin:/bin",
  TCPREMOTEHOST: "bogus",
  TCPREMOTEINFO: "bogus",
  TCPLOCALHOST: "bogus",
  X: "inherited",
};

async function childOutput(server: string, args: string[], program: string[], input = "") {
  const s = await startServer(server, [...args, "127.0.0.1", "0", ...program], { env: SERVER_ENV });
  try {
    const out = await talk(s.port, input);
    // The end line, and the count of children after it (its second 0/N) in a write of its own.
    if (args.some((a) => /^-\w*v/.test(a))) {
      await s.waitForLog(/ end /);
      await s.waitForLog(/^tcpserver: status: 0\//, 2);
    }
    return { out, log: s.log(), port: s.port };
  } finally {
    await s.stop();
  }
}

for (const args of [
  ["-R", "-H", "-l0"],
  ["-RHl", "localname"],
  ["-v", "-R", "-H", "-l", "a b%c"],
]) {
  test(`child environment matches djb's with ${args.join(" ")}`, async () => {
    const a = await childOutput(djb("tcpserver"), args, [PRINT_ENV, "one", "two"]);
    const b = await childOutput(ours("tcpserver"), args, [PRINT_ENV, "one", "two"]);
    assert.equal(hidePortVars(b.out), hidePortVars(a.out));
    assert.match(b.out, /^TCPREMOTEHOST unset$/m);
    assert.match(b.out, /^X=inherited$/m);
  });
}

test("-v log lines match djb's byte for byte, field sanitising included", async () => {
  const args = ["-v", "-R", "-H", "-l", `a b%c${"x".repeat(120)}`];
  const a = await childOutput(djb("tcpserver"), args, [PRINT_ENV]);
  const b = await childOutput(ours("tcpserver"), args, [PRINT_ENV]);
  assert.equal(normalizeLog(b.log), normalizeLog(a.log));
  assert.match(b.log, /^tcpserver: ok \d+ a\?b\?cx+\.\.\.:127\.0\.0\.1:\d+ :127\.0\.0\.1::\d+$/m);
});

test("the child gets the socket as fds 0 and 1, our stderr as 2, and nothing else", async () => {
  const shape = (out: string) => {
    const fds = new Map(
      out
        .trim()
        .split("\n")
        .map((l) => l.split(" ") as [string, string]),
    );
    return {
      fds: [...fds.keys()].join(","),
      zeroIsOne: fds.get("0") === fds.get("1"),
      zeroIsSocket: /^socket:/.test(fds.get("0") ?? ""),
      twoIsOther: fds.get("2") !== fds.get("0"),
    };
  };
  const a = await childOutput(djb("tcpserver"), ["-RHl0"], [PRINT_FDS]);
  const b = await childOutput(ours("tcpserver"), ["-RHl0"], [PRINT_FDS]);
  const expected = { fds: "0,1,2", zeroIsOne: true, zeroIsSocket: true, twoIsOther: true };
  assert.deepEqual(shape(a.out), expected);
  assert.deepEqual(shape(b.out), expected);
});

test("-B writes the banner before anything else, as given", async () => {
  const a = await childOutput(djb("tcpserver"), ["-RHl0", "-B", "XYZ"], ["/bin/echo", "hi"]);
  const b = await childOutput(ours("tcpserver"), ["-RHl0", "-B", "XYZ"], ["/bin/echo", "hi"]);
  assert.equal(b.out, "XYZhi\n");
  assert.equal(b.out, a.out);
});

test("-B and -l that are not ASCII: their bytes as given (UTF-8 here), as djb's", async () => {
  const args = ["-v", "-RH", "-l", "hôte-é", "-B", "bannière ü\n"];
  const a = await childOutput(djb("tcpserver"), args, [PRINT_ENV]);
  const b = await childOutput(ours("tcpserver"), args, [PRINT_ENV]);
  // talk() gives a character per byte: the UTF-8 bytes of the arguments, not one byte per
  // character.
  const utf8 = (text: string) => Buffer.from(text, "utf8").toString("latin1");
  assert.ok(b.out.startsWith(utf8("bannière ü\n")));
  assert.match(b.out, new RegExp(`^TCPLOCALHOST=${utf8("hôte-é")}$`, "m"));
  assert.equal(hidePortVars(b.out), hidePortVars(a.out));
  // The log line sanitises each byte: two '?' for each two-byte character.
  assert.match(b.log, /^tcpserver: ok \d+ h\?\?te-\?\?:127\.0\.0\.1:/m);
  assert.equal(normalizeLog(b.log), normalizeLog(a.log));
});

test("the end line carries the raw wait status: exit codes and signals", async () => {
  for (const [script, status] of [
    ["exit 3", "768"],
    ["kill -9 $$", "9"],
    ["exit 0", "0"],
  ] as const) {
    const a = await childOutput(djb("tcpserver"), ["-v", "-RHl0"], ["/bin/sh", "-c", script]);
    const b = await childOutput(ours("tcpserver"), ["-v", "-RHl0"], ["/bin/sh", "-c", script]);
    assert.match(b.log, new RegExp(`^tcpserver: end \\d+ status ${status}$`, "m"));
    assert.equal(normalizeLog(b.log), normalizeLog(a.log));
  }
});

test("the child starts with no signal ignored or blocked, as djb's", async () => {
  // Ours spawns from ucspi-spawner, which itself ignores SIGINT, SIGTERM, SIGHUP...: none of
  // that may reach the program.
  // exec: grep reads its own status, which is the program's (the shell's would show the mask
  // it sets around each fork).
  const script = "exec grep -E '^Sig(Ign|Blk):' /proc/self/status";
  const a = await childOutput(djb("tcpserver"), ["-RHl0"], ["/bin/sh", "-c", script]);
  const b = await childOutput(ours("tcpserver"), ["-RHl0"], ["/bin/sh", "-c", script]);
  assert.match(a.out, /^SigBlk:\s+0+\nSigIgn:\s+0+\n$/);
  assert.equal(b.out, a.out);
  // Spawned by one of our stages as a process of its own (Node's posix_spawn, no helper): a
  // client that says nothing is tls-sniff's plaintext after -t.
  const sniff = await startServer(
    djb("tcpserver"),
    [
      "-RHl0",
      "127.0.0.1",
      "0",
      ours("tls-sniff"),
      "-t",
      "50",
      "--plain",
      "{",
      "/bin/sh",
      "-c",
      script,
      "}",
      "true",
    ],
    { env: SERVER_ENV },
  );
  let c: { out: string };
  try {
    c = { out: await silentClient(sniff.port) };
  } finally {
    await sniff.stop();
  }
  assert.equal(c.out, a.out);
});

test("SIGPIPE is at its default in the child, as djb sets it", async () => {
  // The child writes to a client that has gone; with SIGPIPE ignored it would exit 141 or 1.
  const script = "sleep 0.3; while :; do echo x || exit 7; done";
  for (const server of [djb("tcpserver"), ours("tcpserver")]) {
    const s = await startServer(server, ["-v", "-RHl0", "127.0.0.1", "0", "/bin/sh", "-c", script]);
    try {
      await new Promise<void>((resolve) => {
        const socket = connect({ port: s.port, host: "127.0.0.1" }, () => {
          socket.destroy();
          resolve();
        });
      });
      const ends = await s.waitForLog(/ end /);
      assert.match(ends[0] ?? "", /status 13$/);
    } finally {
      await s.stop();
    }
  }
});

/** Connects, sends nothing (and does not close), and reads until the server closes. */
function silentClient(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    const socket = connect({ port, host: "127.0.0.1" });
    socket.on("data", (b: Buffer) => (out += b.toString("latin1")));
    socket.on("end", () => {
      socket.destroy();
      resolve(out);
    });
    socket.on("error", reject);
  });
}
