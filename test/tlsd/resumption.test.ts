// Session resumption: tlsd in-process under our tcpserver gives every connection the same
// ticket key, so a client that kept its session resumes it on the next connection, with TLS
// 1.3 and 1.2 alike; the program learns it (--mod-ssl: SSL_SESSION_RESUMED).
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { sClientSession } from "../helpers/tls-client.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const dir = scratchDir("resume");
const server = pki.server("localhost", ["localhost"]);
const env = { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: server.cert, KEYFILE: server.key };
const program = ["/bin/sh", "-c", "env | grep ^SSL_SESSION_RESUMED="];

/** `tcpserver ... tlsd --mod-ssl`, its program printing SSL_SESSION_RESUMED. */
function serveTlsd(tcpserver: string, more: Record<string, string> = {}, flags: string[] = []) {
  return startServer(
    tcpserver,
    [...flags, "-RHl0", "127.0.0.1", "0", "tlsd", "--mod-ssl", ...program],
    { env: { ...env, ...more } },
  );
}

/** One openssl s_client session (see sClientSession), verifying against the test CA. */
const connect = (port: number, file: string, version: string, resume: boolean, saveTo = file) =>
  sClientSession(port, pki.ca.cert, file, version, resume, saveTo);

for (const version of ["-tls1_3", "-tls1_2"]) {
  test(`our tcpserver + tlsd: a client resumes its session on the next connection (${version})`, async () => {
    const s = await serveTlsd(ours("tcpserver"));
    try {
      const file = join(dir, `session${version}`);
      const first = await connect(s.port, file, version, false);
      assert.match(first, /^New, TLSv1\.[23]/m);
      assert.match(first, /^SSL_SESSION_RESUMED=Initial$/m);
      for (let i = 0; i < 2; i++) {
        const again = await connect(s.port, file, version, true);
        assert.match(again, /^Reused, TLSv1\.[23]/m);
        assert.match(again, /^SSL_SESSION_RESUMED=Resumed$/m);
      }
    } finally {
      await s.stop();
    }
  });
}

// Where the client's name picks the certificate, and where there is no default pair (-k 2,
// CERTDIR alone), sessions resume on both engines. OpenSSL takes the ticket keys and the
// session id context from the context a handshake begins on, not the one the name picks:
// node:tls began on a context of Node's own where there was no default pair, whose tickets
// no other connection could read.
const live = join(dir, "live");
mkdirSync(join(live, "localhost"), { recursive: true });
copyFileSync(server.cert, join(live, "localhost", "fullchain.pem"));
copyFileSync(server.key, join(live, "localhost", "privkey.pem"));
const named = { "CERTFILE:localhost": server.cert, "KEYFILE:localhost": server.key };
const LEVELS: Record<string, { flags: string[]; env: Record<string, string | undefined> }> = {
  "-k 0": { flags: ["-k", "0"], env: {} },
  "-k 1, a named pair": { flags: ["-k", "1"], env: named },
  "-k 2, named pairs only": {
    flags: ["-k", "2"],
    env: { ...named, CERTFILE: undefined, KEYFILE: undefined },
  },
  "CERTDIR alone": { flags: [], env: { CERTDIR: live, CERTFILE: undefined, KEYFILE: undefined } },
};
const told = ["/bin/sh", "-c", "env | grep -E '^SSL_(SESSION_RESUMED|TLS_SNI_SERVERNAME)='"];

for (const engine of ["node", "native"]) {
  for (const [level, { flags, env: more }] of Object.entries(LEVELS)) {
    for (const version of ["-tls1_2", "-tls1_3"]) {
      test(`--engine ${engine}, ${level}: a client resumes its session (${version}), and its program is told the name`, async () => {
        const serverEnv = Object.fromEntries(
          Object.entries({ ...env, ...more }).filter(([, v]) => v !== undefined),
        );
        const s = await startServer(
          ours("tcpserver"),
          ["-RHl0", "127.0.0.1", "0", "tlsd", "--mod-ssl", "--engine", engine, ...flags, ...told],
          { env: serverEnv },
        );
        try {
          const file = join(dir, `session-${engine}-${level.replace(/\W/g, "")}${version}`);
          const first = await connect(s.port, file, version, false);
          assert.match(first, /^New, TLSv1\.[23]/m);
          assert.match(first, /^SSL_SESSION_RESUMED=Initial$/m);
          const again = await connect(s.port, file, version, true);
          assert.match(again, /^Reused, TLSv1\.[23]/m);
          assert.match(again, /^SSL_SESSION_RESUMED=Resumed$/m);
          assert.match(again, /^SSL_TLS_SNI_SERVERNAME=localhost$/m);
        } finally {
          await s.stop();
        }
      });
    }
  }
}

// A TLS 1.3 client that uses each ticket once (RFC 8446 C.4; browsers do) resumes with the
// ticket its last connection got: a resumed session must bring a new one. Node's own ticket
// handling never renews, and openssl saved no session from a resumed connection without one.
test("our tcpserver + tlsd: each resumed TLS 1.3 session gets a new ticket, so a chain of resumptions never falls back", async () => {
  const s = await serveTlsd(ours("tcpserver"));
  try {
    const file = (i: number) => join(dir, `chain${i}`);
    assert.match(await connect(s.port, file(0), "-tls1_3", false), /^New, TLSv1\.3/m);
    for (let i = 1; i <= 3; i++) {
      const again = await connect(s.port, file(i - 1), "-tls1_3", true, file(i));
      assert.match(again, /^Reused, TLSv1\.3/m, `resumption ${i}`);
      assert.match(again, /^SSL_SESSION_RESUMED=Resumed$/m);
    }
  } finally {
    await s.stop();
  }
});

test("tlsd as a process of its own per connection cannot resume (its key dies with it)", async () => {
  const s = await serveTlsd(djb("tcpserver"));
  try {
    const file = join(dir, "session-djb");
    await connect(s.port, file, "-tls1_3", false);
    const again = await connect(s.port, file, "-tls1_3", true);
    assert.match(again, /^New, TLSv1\.3/m);
    assert.match(again, /^SSL_SESSION_RESUMED=Initial$/m);
  } finally {
    await s.stop();
  }
});

/** A TICKETFILE of these keys (48 random bytes each, in base64, a line each). */
function ticketFile(name: string, keys: readonly Buffer[]): string {
  const file = join(dir, name);
  writeFileSync(file, `# ticket keys\n${keys.map((k) => k.toString("base64")).join("\n")}\n`, {
    mode: 0o600,
  });
  return file;
}

const newKey = () => randomBytes(48);

// TICKETFILE: the keys of a file, shared by every process that reads it, where each process
// had its own (a tlsd per connection could never resume; --workers resumed only on the
// worker that made the ticket).
for (const version of ["-tls1_3", "-tls1_2"]) {
  test(`TICKETFILE: a tlsd per connection under djb's tcpserver resumes (${version}), and the program never sees the file's name`, async () => {
    const keys = ticketFile(`keys${version}`, [newKey(), newKey()]);
    const s = await startServer(
      djb("tcpserver"),
      [
        "-RHl0",
        "127.0.0.1",
        "0",
        "tlsd",
        "--mod-ssl",
        "/bin/sh",
        "-c",
        "env | grep -E '^(SSL_SESSION_RESUMED|TICKETFILE)='",
      ],
      { env: { ...env, TICKETFILE: keys } },
    );
    try {
      const file = join(dir, `session-file${version}`);
      const first = await connect(s.port, file, version, false);
      assert.match(first, /^SSL_SESSION_RESUMED=Initial$/m);
      for (let i = 0; i < 2; i++) {
        const again = await connect(s.port, file, version, true);
        assert.match(again, /^Reused, TLSv1\.[23]/m);
        assert.match(again, /^SSL_SESSION_RESUMED=Resumed$/m);
        assert.doesNotMatch(again, /^TICKETFILE=/m);
      }
    } finally {
      await s.stop();
    }
  });
}

test("TICKETFILE with --workers 2: every connection resumes, whichever worker it reaches", async () => {
  const keys = ticketFile("keys-workers", [newKey()]);
  const s = await serveTlsd(ours("tcpserver"), { TICKETFILE: keys }, ["--workers", "2"]);
  try {
    const file = join(dir, "session-workers");
    await connect(s.port, file, "-tls1_3", false);
    for (let i = 0; i < 6; i++)
      assert.match(await connect(s.port, file, "-tls1_3", true), /^SSL_SESSION_RESUMED=Resumed$/m);
  } finally {
    await s.stop();
  }
});

test("TICKETFILE rotation: the line before the last encrypts, every line decrypts; SIGHUP reads it again", async () => {
  const [a, b, c, d] = [newKey(), newKey(), newKey(), newKey()];
  const keys = ticketFile("keys-rotation", [a, b]);
  const s = await serveTlsd(ours("tcpserver"), { TICKETFILE: keys }, ["-v"]);
  const reload = async (count: number) => {
    s.child.kill("SIGHUP");
    await s.waitForLog(/^tcpserver: reload$/, count);
  };
  try {
    const underA = join(dir, "session-a");
    await connect(s.port, underA, "-tls1_3", false);
    const kept = join(dir, "session-a-kept");
    copyFileSync(underA, kept);
    // b is added at the end and a is still known: the session resumes, its new ticket under b.
    ticketFile("keys-rotation", [a, b, c]);
    await reload(1);
    const underB = join(dir, "session-b");
    assert.match(await connect(s.port, kept, "-tls1_3", true, underB), /^Reused/m);
    // a is gone: its tickets are not taken; b's still are.
    ticketFile("keys-rotation", [b, c, d]);
    await reload(2);
    assert.match(await connect(s.port, kept, "-tls1_3", true, join(dir, "x")), /^New/m);
    assert.match(await connect(s.port, underB, "-tls1_3", true, join(dir, "y")), /^Reused/m);
    // A file that cannot serve any more: the keys read before still do, and the log says why.
    writeFileSync(keys, "not base64 at all\n");
    await reload(3);
    await s.waitForLog(
      /^tlsd: warning: unable to use ticket keys .*: line 1 is not 48 bytes in base64; /,
    );
    assert.match(await connect(s.port, underB, "-tls1_3", true, join(dir, "z")), /^Reused/m);
    assert.doesNotMatch(s.log(), /not base64 at all/);
  } finally {
    await s.stop();
  }
});

test("TICKETFILE that others can read: a warning at start, as for a key; served all the same", async () => {
  const keys = join(dir, "keys-open");
  writeFileSync(keys, `${newKey().toString("base64")}\n`, { mode: 0o644 });
  const s = await serveTlsd(ours("tcpserver"), { TICKETFILE: keys });
  try {
    await s.waitForLog(
      new RegExp(
        `^tlsd: warning: ticket keys ${keys} can be read by anyone \\(mode 644\\): chmod 600$`,
      ),
    );
    const file = join(dir, "session-open");
    await connect(s.port, file, "-tls1_3", false);
    assert.match(await connect(s.port, file, "-tls1_3", true), /^Reused/m);
  } finally {
    await s.stop();
  }
});

for (const [what, content, cause] of [
  ["missing", undefined, "file does not exist"],
  [
    "a key of 47 bytes",
    `${randomBytes(47).toString("base64")}\n`,
    "line 1 is not 48 bytes in base64",
  ],
  ["no key", "# none yet\n\n", "no key in it"],
  [
    "two keys of one name",
    (() => {
      const k = newKey();
      return `${k.toString("base64")}\n${Buffer.concat([k.subarray(0, 16), randomBytes(32)]).toString("base64")}\n`;
    })(),
    "line 2 has the name (first 16 bytes) of a key before it",
  ],
] as const) {
  test(`TICKETFILE ${what}: one line at tcpserver's start, exit 111, no client served`, async () => {
    const file = join(dir, `bad-${what.replace(/\W/g, "-")}`);
    if (content !== undefined) writeFileSync(file, content);
    const r = await run(ours("tcpserver"), ["-RHl0", "127.0.0.1", "0", "tlsd", "cat"], {
      env: { ...env, TICKETFILE: file },
      timeoutMs: 20_000,
    });
    assert.equal(r.code, 111);
    assert.equal(r.stderr, `tlsd: fatal: unable to use ticket keys ${file}: ${cause}\n`);
  });
}
