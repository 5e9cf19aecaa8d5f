// Our tcpclient beside djb's: same environment, messages and exit codes; and each one talking
// to the other's tcpserver.
import assert from "node:assert/strict";
import { connect } from "node:net";
import type { Socket } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { spawn, spawnSync } from "node:child_process";
import { freePort } from "../helpers/interop.ts";
import { ROOT, debianIpv6, djb, ours, run } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import { hidePortVars } from "../helpers/normalize.ts";

const PRINT_ENV = join(ROOT, "test/fixtures/print-env");
const CLIENT_ENV = { PATH: "/usr/bin:/bin", TCPREMOTEINFO: "bogus", X: "inherited" };

async function withServer<T>(
  server: string,
  program: string[],
  body: (port: number) => Promise<T>,
) {
  const s = await startServer(server, ["-RHl0", "127.0.0.1", "0", ...program]);
  try {
    return await body(s.port);
  } finally {
    await s.stop();
  }
}

for (const server of [djb("tcpserver"), ours("tcpserver")]) {
  const peer = server.startsWith("/usr") ? "djb's" : "our";
  for (const client of [djb("tcpclient"), ours("tcpclient")]) {
    const who = client.startsWith("/usr") ? "djb's" : "our";
    test(`${who} tcpclient talks to ${peer} tcpserver both ways`, async () => {
      await withServer(
        server,
        ["/bin/sh", "-c", "read x; echo got $x; read y; echo and $y"],
        async (port) => {
          const r = await run(
            client,
            [
              "-RH",
              "127.0.0.1",
              String(port),
              "/bin/sh",
              "-c",
              "echo hello >&7; echo more >&7; cat <&6",
            ],
            { env: CLIENT_ENV },
          );
          assert.equal(r.stderr, "");
          assert.equal(r.stdout, "got hello\nand more\n");
          assert.equal(r.code, 0);
        },
      );
    });
  }
}

for (const args of [
  ["-RH", "-l0"],
  ["-R", "-H", "-l", "here"],
  // Not ASCII: TCPLOCALHOST gets the argument's bytes (UTF-8 here), as djb's.
  ["-R", "-H", "-l", "hôte-é"],
]) {
  test(`the program's environment matches djb's with ${args.join(" ")}`, async () => {
    await withServer(djb("tcpserver"), ["/bin/echo", "hi"], async (port) => {
      const argv = [...args, "127.0.0.1", String(port), PRINT_ENV, "x"];
      const a = await run(djb("tcpclient"), argv, { env: CLIENT_ENV });
      const b = await run(ours("tcpclient"), argv, { env: CLIENT_ENV });
      assert.equal(b.code, 0);
      assert.equal(hidePortVars(b.stdout), hidePortVars(a.stdout));
      assert.match(b.stdout, /^TCPREMOTEINFO unset$/m);
    });
  });
}

test("the program gets the socket on fds 6 and 7, and fds 0-2 as tcpclient had them", async () => {
  await withServer(djb("tcpserver"), ["/bin/echo", "hi"], async (port) => {
    const script =
      "for n in 0 1 2 3 4 5 6 7 8 9; do [ -e /proc/$$/fd/$n ] && echo $n; done; readlink /proc/$$/fd/6 /proc/$$/fd/7";
    const a = await run(djb("tcpclient"), [
      "-RH",
      "127.0.0.1",
      String(port),
      "/bin/sh",
      "-c",
      script,
    ]);
    const b = await run(ours("tcpclient"), [
      "-RH",
      "127.0.0.1",
      String(port),
      "/bin/sh",
      "-c",
      script,
    ]);
    const fds = (out: string) =>
      out
        .split("\n")
        .filter((l) => /^\d$/.test(l))
        .join(",");
    assert.equal(fds(b.stdout), fds(a.stdout));
    assert.equal(fds(b.stdout), "0,1,2,6,7");
    const links = b.stdout.split("\n").filter((l) => l.startsWith("socket:"));
    assert.equal(links.length, 2);
    assert.equal(links[0], links[1]);
  });
});

test("exit status: the program's code, and death by the program's signal", async () => {
  await withServer(djb("tcpserver"), ["/bin/echo", "hi"], async (port) => {
    for (const [script, code, signal] of [
      ["exit 3", 3, null],
      ["kill -TERM $$", null, "SIGTERM"],
    ] as const) {
      const a = await run(djb("tcpclient"), [
        "-RH",
        "127.0.0.1",
        String(port),
        "/bin/sh",
        "-c",
        script,
      ]);
      const b = await run(ours("tcpclient"), [
        "-RH",
        "127.0.0.1",
        String(port),
        "/bin/sh",
        "-c",
        script,
      ]);
      assert.equal(b.code, code);
      assert.equal(b.signal, signal);
      assert.deepEqual([b.code, b.signal], [a.code, a.signal]);
    }
  });
});

test("messages and exit codes match djb's: refused, no address, cannot run, usage, -v", async () => {
  await withServer(djb("tcpserver"), ["/bin/echo", "hi"], async (port) => {
    const cases: string[][] = [
      ["-RH", "127.0.0.1", "1", "true"],
      ["-q", "-RH", "127.0.0.1", "1", "true"],
      ["-RH", "no-such-host.invalid", "1", "true"],
      ["-RH", "127.0.0.1", String(port), "/no/such/program"],
      ["-RH", "127.0.0.1", "nosuchservice", "true"],
      ["-Z", "127.0.0.1", "1", "true"],
      ["-RH", "127.0.0.1"],
      // No program, and a port name that is unknown: djb says so (111) before the usage.
      ["-RH", "127.0.0.1", "nosuchservice"],
      ["-RH", "127.0.0.1", "smtp"],
      ["-v", "-RH", "127.0.0.1", String(port), "true"],
      // -i / -p that cannot be bound: djb's "fatal: unable to bind socket", at once.
      ["-RH", "-i", "192.0.2.1", "127.0.0.1", String(port), "true"],
      ["-RH", "-p", String(port), "127.0.0.1", String(port), "true"],
      // -i that is no IP address: djb's usage line, exit 100 (ours tried to connect).
      ["-RH", "-i", "abc", "127.0.0.1", String(port), "true"],
      ["-RH", "-i", "127.1", "127.0.0.1", String(port), "true"],
      // -p is read as digits, as djb's scan_ulong reads it: abc is 0, any port (ours looked it
      // up as a service name and failed).
      ["-RH", "-p", "abc", "127.0.0.1", String(port), "true"],
      ["-RH", "-p", "0", "127.0.0.1", String(port), "true"],
    ];
    for (const argv of cases) {
      const a = await run(djb("tcpclient"), argv);
      const b = await run(ours("tcpclient"), argv);
      // The usage line is Debian's ucspi-tcp-ipv6 one (its -4, -6 and -I are ours too).
      const peer = a.stderr.includes("usage:") ? await run(debianIpv6("tcpclient"), argv) : a;
      assert.equal(b.stderr, peer.stderr, `stderr for ${argv.join(" ")}`);
      assert.equal(b.code, peer.code, `exit code for ${argv.join(" ")}`);
    }
  });
});

/** A listener that answers no SYN: djb's tcpserver -c 1 -b 0 busy with one client, its accept
 * queue full with another. */
async function unanswered(body: (port: number) => Promise<void>) {
  const s = await startServer(djb("tcpserver"), [
    "-v",
    "-RHl0",
    "-c1",
    "-b0",
    "127.0.0.1",
    "0",
    "cat",
  ]);
  const held: Socket[] = [];
  const hold = () =>
    new Promise<void>((resolve) => {
      held.push(connect(s.port, "127.0.0.1", resolve).on("error", () => {}));
    });
  try {
    await hold();
    await s.waitForLog(/^tcpserver: ok /m);
    await hold();
    await body(s.port);
  } finally {
    for (const socket of held) socket.destroy();
    await s.stop();
  }
}

test("an address that times out in the first pass is said once, after the second, as djb's; -T 0 is one look, not no limit", async () => {
  await unanswered(async (port) => {
    const timedOut = `tcpclient: unable to connect to 127.0.0.1 port ${port}: timed out\n`;
    for (const timeouts of ["1+1", "1", "0"]) {
      const argv = ["-RH", "-T", timeouts, "127.0.0.1", String(port), "true"];
      const a = await run(djb("tcpclient"), argv);
      const b = await run(ours("tcpclient"), argv);
      assert.equal(a.stderr, timedOut, `djb's stderr for -T ${timeouts}`);
      assert.equal(b.stderr, a.stderr, `stderr for -T ${timeouts}`);
      assert.equal(b.code, 111);
    }
  });
});

// Node's own answer to SIGUSR1 is to open its inspector on 127.0.0.1:9229; djb's tcpclient
// dies of it until it runs the program.
for (const client of [djb("tcpclient"), ours("tcpclient")]) {
  const who = client.startsWith("/usr") ? "djb's" : "our";
  test(`SIGUSR1 while connecting: ${who} tcpclient dies of it, and no inspector opens`, async () => {
    await unanswered(async (port) => {
      const child = spawn(client, ["-RH", "-T", "30", "127.0.0.1", String(port), "true"], {
        stdio: ["ignore", "ignore", "pipe"],
      });
      let stderr = "";
      child.stderr.on("data", (b: Buffer) => (stderr += b.toString("latin1")));
      const exited = new Promise((resolve) =>
        child.once("exit", (code, signal) => resolve({ code, signal })),
      );
      try {
        // Its SYN is out: it is connecting, past its start.
        await waitFor(
          () =>
            spawnSync("ss", ["-Htn", "state", "syn-sent", "dport", `= :${port}`])
              .stdout.toString()
              .trim() || undefined,
          15_000,
          () => "tcpclient never connected",
        );
        child.kill("SIGUSR1");
        const inspector = waitFor(
          () => (/Debugger listening/.test(stderr) ? "inspector opened" : undefined),
          15_000,
          () => "",
        ).catch(() => "no inspector");
        assert.deepEqual(await Promise.race([exited, inspector]), {
          code: null,
          signal: "SIGUSR1",
        });
      } finally {
        child.kill("SIGKILL");
      }
    });
  });
}

test("-p: digits modulo 65536 (70000 is 4464), no service names (smtp is any port), as djb's", async () => {
  await withServer(djb("tcpserver"), ["/bin/echo", "hi"], async (port) => {
    const local = await freePort();
    const argv = (p: string) => [
      "-RH",
      "-p",
      p,
      "127.0.0.1",
      String(port),
      "sh",
      "-c",
      'echo "$TCPLOCALPORT"',
    ];
    const b = await run(ours("tcpclient"), argv(String(local + 65536)));
    assert.equal(b.stdout, `${local}\n`, b.stderr);
    const smtp = await run(ours("tcpclient"), argv("smtp"));
    assert.equal(smtp.code, 0, smtp.stderr);
    assert.notEqual(smtp.stdout, "25\n");
  });
});

test("IPv6: our tcpclient reaches our tcpserver on ::1 with PROTO=TCP6", async () => {
  const s = await startServer(ours("tcpserver"), ["-RHl0", "::1", "0", PRINT_ENV]);
  try {
    const r = await run(ours("tcpclient"), [
      "-RH",
      "-l0",
      "::1",
      String(s.port),
      "/bin/sh",
      "-c",
      `cat <&6; ${PRINT_ENV}`,
    ]);
    assert.equal(r.code, 0);
    // The server's program (first) and the client's program (second) both see TCP6.
    const protos = r.stdout.split("\n").filter((l) => l.startsWith("PROTO="));
    assert.deepEqual(protos, ["PROTO=TCP6", "PROTO=TCP6"]);
    assert.match(r.stdout, /^TCP6REMOTEIP=::1$/m);
    assert.match(r.stdout, /^TCPREMOTEIP=::1$/m);
  } finally {
    await s.stop();
  }
});

/** Runs `client` to a server whose program waits, until `ready` is on the client's stdout or
 * stderr; then sends `signal` to the client and gives back how it ended and what it wrote. */
async function signalled(
  client: string,
  program: string[],
  signal: NodeJS.Signals,
  ready: RegExp,
  serverProgram = ["/bin/sleep", "20"],
) {
  const s = await startServer(djb("tcpserver"), ["-RHl0", "127.0.0.1", "0", ...serverProgram]);
  try {
    const child = spawn(client, ["-RH", "127.0.0.1", String(s.port), ...program], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const collect = (b: Buffer) => (out += b.toString("latin1"));
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once("exit", (code, sig) => resolve({ code, signal: sig })),
    );
    await waitFor(() => (ready.test(out) || s.log().match(ready) ? true : undefined));
    child.kill(signal);
    return { ...(await exited), out };
  } finally {
    await s.stop();
  }
}

// djb's tcpclient is its program once connected: a signal sent to it reaches the program.
// Ours died of SIGINT and SIGQUIT and left its program running, orphaned, on the connection.
for (const signal of ["SIGINT", "SIGQUIT", "SIGTERM"] as const) {
  test(`${signal} to tcpclient reaches its program, as djb's`, async () => {
    const program = [
      "/bin/sh",
      "-c",
      `trap 'echo got ${signal}; exit 7' ${signal.slice(3)}; echo ready; sleep 20 & wait`,
    ];
    const a = await signalled(djb("tcpclient"), program, signal, /^ready$/m);
    const b = await signalled(ours("tcpclient"), program, signal, /^ready$/m);
    assert.deepEqual(a, { code: 7, signal: null, out: `ready\ngot ${signal}\n` });
    assert.deepEqual(b, a);
  });
}

// With an in-process program (tlsc) there is no process to pass a signal to: ours swallowed
// SIGTERM and SIGHUP and went on until the server closed. Now they end it, as they end djb's
// tcpclient running s6-tlsc.
for (const signal of ["SIGTERM", "SIGHUP", "SIGINT"] as const) {
  test(`${signal} to tcpclient running tlsc in-process ends it`, async () => {
    // The server reads the ClientHello's first bytes and says so: tlsc is running by then.
    const serverProgram = ["/bin/sh", "-c", "head -c 5 >/dev/null; echo hello-read >&2; sleep 20"];
    const r = await signalled(
      ours("tcpclient"),
      [ours("tlsc"), "/bin/true"],
      signal,
      /hello-read/,
      serverProgram,
    );
    assert.equal(r.signal, signal, r.out);
  });
}

// Debian's ucspi-tcp-ipv6 letters, in scripts written for it: ours took -6 for "IPv6 addresses
// only" (and refused an IPv4 host), and -I was an illegal option.
test("-6 tells the connection in IPv6 form, and -I is taken, as Debian's ucspi-tcp-ipv6 tcpclient", async () => {
  await withServer(djb("tcpserver"), ["/bin/echo", "hi"], async (port) => {
    for (const args of [["-6"], ["-6", "-I", "lo"], ["-I", "lo"]]) {
      const argv = [...args, "-RH", "-l0", "127.0.0.1", String(port), PRINT_ENV, "x"];
      const a = await run(debianIpv6("tcpclient"), argv, { env: CLIENT_ENV });
      const b = await run(ours("tcpclient"), argv, { env: CLIENT_ENV });
      assert.equal(b.code, 0, b.stderr);
      assert.equal(hidePortVars(b.stdout), hidePortVars(a.stdout), args.join(" "));
      const proto = args.includes("-6") ? "TCP6" : "TCP";
      assert.match(b.stdout, new RegExp(`^PROTO=${proto}$`, "m"));
      if (proto === "TCP6") assert.match(b.stdout, /^TCPREMOTEIP=::ffff:127\.0\.0\.1$/m);
    }
  });
  const r = await run(ours("tcpclient"), ["-4", "-RH", "::1", "1", "true"]);
  assert.equal(r.code, 111);
  assert.equal(r.stderr, "tcpclient: fatal: no IP address for ::1\n");
});

test("-T 0 to a server that accepts: connected by the one look, as djb's (a loopback connection is made within connect)", async () => {
  const s = await startServer(djb("tcpserver"), ["-RHl0", "127.0.0.1", "0", "echo", "hi"]);
  try {
    for (const client of [djb("tcpclient"), ours("tcpclient")]) {
      const r = await run(client, [
        "-RH",
        "-T",
        "0",
        "127.0.0.1",
        String(s.port),
        "sh",
        "-c",
        "cat <&6",
      ]);
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, "hi\n", ""], client);
    }
  } finally {
    await s.stop();
  }
});
