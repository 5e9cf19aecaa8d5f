// starttls-wrapper -p mysql in front of a real MariaDB server that has no TLS, reached by
// tcpforward: the mariadb client with --ssl-verify-server-cert gets TLS from the wrapper (its
// status shows the cipher) while the server's own session has none (Ssl_cipher empty); the
// mysql_native_password and ed25519 logins work through the moved sequence numbers; a
// login without TLS goes through untouched, or gets MySQL's "insecure transport" error with -r.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { startMariaDb } from "../helpers/mariadb.ts";
import type { MariaDb } from "../helpers/mariadb.ts";
import { run } from "../helpers/programs.ts";
import type { RunningServer } from "../helpers/server.ts";
import { opensslStartTls, startWrapperPair } from "../helpers/wrapper-pair.ts";
import type { WrapperPair } from "../helpers/wrapper-pair.ts";

const pki = makePki();
const leaf = pki.server("localhost", ["localhost", "127.0.0.1"]);
let db: MariaDb;
let dbPort = 0;
let wrappers: WrapperPair | undefined;
let opportunistic: RunningServer;
let required: RunningServer;

before(async () => {
  db = await startMariaDb();
  dbPort = db.port;
  wrappers = await startWrapperPair("mysql", dbPort, leaf);
  opportunistic = wrappers.opportunistic;
  required = wrappers.required;
});

after(async () => {
  await wrappers?.stop();
  await db.stop();
  rmSync(pki.dir, { recursive: true, force: true });
});

function client(port: number, user: string, password: string, tls: boolean, sql: string) {
  return run("mariadb", [
    "--no-defaults",
    "--protocol=tcp",
    "-h",
    "localhost",
    "-P",
    String(port),
    "-u",
    user,
    `-p${password}`,
    ...(tls ? ["--ssl", `--ssl-ca=${pki.ca.cert}`, "--ssl-verify-server-cert"] : ["--skip-ssl"]),
    "-e",
    sql,
  ]);
}

test("TLS from the wrapper, the certificate verified; the server's own session has none; large results flow", async () => {
  const r = await client(
    opportunistic.port,
    "app",
    "pw",
    true,
    "status; show session status like 'Ssl_cipher'; select length(repeat('x', 3000000)) as n",
  );
  assert.equal(r.code, 0, r.stderr + opportunistic.log());
  assert.match(r.stdout, /SSL:\s+Cipher in use is TLS_AES/);
  assert.match(r.stdout, /^Ssl_cipher\t$/m);
  assert.match(r.stdout, /^3000000$/m);
  await opportunistic.waitForLog(/^starttls-wrapper: info: 127\.0\.0\.1: SSLRequest: TLS$/);
  const big = await client(opportunistic.port, "app", "pw", true, "select repeat('y', 3000000)");
  assert.equal(big.code, 0, big.stderr);
  assert.ok(big.stdout.includes("y".repeat(3_000_000)));
});

test("ed25519 through TLS; a wrong password is the server's own refusal", async () => {
  const ok = await client(opportunistic.port, "ed", "pw2", true, "select current_user()");
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^ed@%$/m);
  const wrong = await client(opportunistic.port, "app", "nope", true, "select 1");
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /ERROR 1045 \(28000\): Access denied for user 'app'/);
});

test("a login without TLS: untouched when opportunistic; MySQL's insecure-transport error with -r", async () => {
  const plain = await client(opportunistic.port, "app", "pw", false, "select 'plain'");
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /^plain$/m);
  const refused = await client(required.port, "app", "pw", false, "select 1");
  assert.notEqual(refused.code, 0);
  assert.match(
    refused.stderr,
    /ERROR 3159 \(HY000\): Connections using insecure transport are prohibited/,
  );
  await required.waitForLog(
    /^starttls-wrapper: warning: 127\.0\.0\.1: a login without TLS: refused \(-r\)$/,
  );
  const tls = await client(required.port, "app", "pw", true, "select 'tls'");
  assert.match(tls.stdout, /^tls$/m, tls.stderr);
});

test("openssl s_client -starttls mysql: the upgrade, the certificate verified, TLS 1.3", async () => {
  const r = await opensslStartTls(opportunistic.port, "mysql", pki.ca.cert, "localhost");
  assert.equal(r.code, 0, r.stderr + opportunistic.log());
  assert.match(r.stderr, /^Protocol version: TLSv1\.3$/m);
  assert.match(r.stderr, /^Verification: OK$/m);
});
