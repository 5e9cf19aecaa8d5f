// tlsd -n keeps the SNI rules of the immediate mode on both engines: -k 1 chooses
// CERTFILE:name, -k 2 refuses an unknown name or none (told as that), a name that is not a host
// name ends the handshake at any level, and SSL_TLS_SNI_SERVERNAME in the `Y` block is the
// client's name. The program is test/fixtures/starttls-app; the client is Node's TLS on a
// socket that said STARTTLS in cleartext first.
import assert from "node:assert/strict";
import { join } from "node:path";
import { connect as connectTcp } from "node:net";
import type { Socket } from "node:net";
import { connect } from "node:tls";
import { test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { BIN, ROOT, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";

const pki = makePki();
const localhost = pki.server("localhost", ["localhost"]);
const other = pki.server("other.example", ["other.example"]);
const PATH = `${BIN}:/usr/bin:/bin`;
const APP = join(ROOT, "test", "fixtures", "starttls-app");
const EVIL = "evil\x1b[31m.example\r\ntlsd: forged";

/** Reads from `socket` until `text` has come. */
function readUntil(socket: Socket, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = "";
    const onData = (chunk: Buffer) => {
      got += chunk.toString("latin1");
      if (!got.includes(text)) return;
      socket.off("data", onData);
      socket.pause();
      resolve();
    };
    socket.on("data", onData);
    socket.resume();
    socket.once("error", reject);
    socket.once("end", () => reject(new Error(`EOF before ${JSON.stringify(text)}: ${got}`)));
  });
}

/** STARTTLS in cleartext, then a handshake sending `servername` as it is (none: undefined);
 * the served certificate's CN and what the program answered to PING, or the error. */
async function starttls(port: number, servername: string | undefined): Promise<string> {
  const raw = connectTcp(port, "127.0.0.1");
  await readUntil(raw, "220 ready\r\n");
  raw.write("STARTTLS\r\n");
  await readUntil(raw, "220 go ahead\r\n");
  const tls = connect({
    socket: raw,
    host: "127.0.0.1",
    rejectUnauthorized: false,
    ...(servername === undefined ? {} : { servername }),
  });
  tls.setEncoding("latin1");
  let got = "";
  tls.on("data", (text: string) => (got += text));
  tls.on("error", (error) => (got += `error: ${error.message}`));
  tls.once("secureConnect", () => {
    const cn = tls.getPeerCertificate().subject?.CN;
    got += `cn=${String(cn)}\n`;
    tls.write("PING\r\nQUIT\r\n");
  });
  await new Promise((resolve) => tls.once("close", resolve));
  return got;
}

/** The SNI name the program was told, from its answer to PING. */
function toldName(answer: string): string | undefined {
  return /SSL_TLS_SNI_SERVERNAME=(\S*)/.exec(answer)?.[1];
}

/** The default pair (localhost) and one for other.example. */
const BOTH = {
  CERTFILE: localhost.cert,
  KEYFILE: localhost.key,
  "CERTFILE:other.example": other.cert,
  "KEYFILE:other.example": other.key,
};

/** Our tcpserver with tlsd -n on `engine` at -k `level`, the app answering with the block. */
function serve(engine: string, level: string, pairs: Record<string, string>) {
  const tlsd = ["tlsd", "--engine", engine, "-n", "-k", level, APP, "Y"];
  return startServer(ours("tcpserver"), ["-v", "-RHl0", "127.0.0.1", "0", ...tlsd], {
    env: { PATH, ...pairs },
  });
}

for (const engine of ["node", "native"]) {
  test(`--engine ${engine}: -n -k 1 chooses CERTFILE:name by the client's name and tells it`, async () => {
    const s = await serve(engine, "1", BOTH);
    try {
      const named = await starttls(s.port, "other.example");
      assert.match(named, /^cn=other\.example\n250 /);
      assert.equal(toldName(named), "other.example");
      const unknown = await starttls(s.port, "unknown.example");
      assert.match(unknown, /^cn=localhost\n250 /);
      assert.equal(toldName(unknown), "unknown.example");
      const none = await starttls(s.port, undefined);
      assert.match(none, /^cn=localhost\n250 /);
      assert.equal(toldName(none), undefined);
    } finally {
      await s.stop();
    }
  });

  test(`--engine ${engine}: -n -k 2 refuses an unknown name and none, each told as such`, async () => {
    const s = await serve(engine, "2", {
      "CERTFILE:localhost": localhost.cert,
      "KEYFILE:localhost": localhost.key,
    });
    try {
      const named = await starttls(s.port, "localhost");
      assert.match(named, /^cn=localhost\n250 /);
      assert.equal(toldName(named), "localhost");
      assert.doesNotMatch(await starttls(s.port, "unknown.example"), /cn=|250 /);
      assert.doesNotMatch(await starttls(s.port, undefined), /cn=|250 /);
      await s.waitForLog(/ end \d+ status 768$/, 2);
      assert.deepEqual(s.log().match(/^tlsd: .*$/gm), [
        "tlsd: warning: TLS handshake failed: no certificate for unknown.example",
        "tlsd: warning: TLS handshake failed: the client sent no server name (SNI), and there is no default certificate (CERTFILE)",
      ]);
    } finally {
      await s.stop();
    }
  });

  for (const level of ["0", "1"]) {
    test(`--engine ${engine}: -n -k ${level}: a server name with control characters ends the handshake, and no byte of it is logged`, async () => {
      const s = await serve(engine, level, BOTH);
      try {
        assert.doesNotMatch(await starttls(s.port, EVIL), /250 /);
        await s.waitForLog(/ end \d+ status 768$/);
        // As without -n: after the handshake (-k 0), or refused in it (-k 1).
        const lines = s.log().match(/^tlsd: .*$/gm) ?? [];
        assert.equal(lines.length, 1);
        assert.match(
          lines[0] ?? "",
          /^tlsd: warning: (TLS handshake failed: )?the client's server name \(SNI\) is not a host name$/,
        );
        assert.doesNotMatch(s.log(), /evil|forged|\x1b/);
      } finally {
        await s.stop();
      }
    });
  }
}
