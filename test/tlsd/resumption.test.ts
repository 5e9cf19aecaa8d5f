// Session resumption: tlsd in-process under our tcpserver gives every connection the same
// ticket key, so a client that kept its session resumes it on the next connection, with TLS
// 1.3 and 1.2 alike; the program learns it (--mod-ssl: SSL_SESSION_RESUMED).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";

const pki = makePki();
const dir = mkdtempSync(join(tmpdir(), "ucspi-resume-"));
after(() => {
  rmSync(pki.dir, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});
const server = pki.server("localhost", ["localhost"]);
const env = { PATH: `${BIN}:/usr/bin:/bin`, CERTFILE: server.cert, KEYFILE: server.key };
const program = ["/bin/sh", "-c", "env | grep ^SSL_SESSION_RESUMED="];

/** `tcpserver ... tlsd --mod-ssl`, its program printing SSL_SESSION_RESUMED. */
function serveTlsd(tcpserver: string) {
  return startServer(tcpserver, ["-RHl0", "127.0.0.1", "0", "tlsd", "--mod-ssl", ...program], {
    env,
  });
}

/** One openssl s_client session that saves its session to `file` and, with `resume`, starts
 * from the one saved there; what it printed. */
async function connect(
  port: number,
  file: string,
  version: string,
  resume: boolean,
  saveTo = file,
) {
  const r = await run("openssl", [
    "s_client",
    version,
    "-ign_eof",
    "-verify_return_error",
    "-CAfile",
    pki.ca.cert,
    "-servername",
    "localhost",
    "-connect",
    `127.0.0.1:${port}`,
    ...(resume ? ["-sess_in", file] : []),
    "-sess_out",
    saveTo,
  ]);
  return r.stdout;
}

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
