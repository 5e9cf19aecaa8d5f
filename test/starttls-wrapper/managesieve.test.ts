// starttls-wrapper -p sieve in front of a real ManageSieve server without TLS (Dovecot's
// managesieve, ssl = no, reached by tcpforward), with real clients: sieve-connect uploads and
// lists a script, openssl s_client -starttls sieve logs in over verified TLS; and the attack
// classes of starttls-attacks.md that apply: a command pipelined after STARTTLS (A10), and
// STARTTLS at the wrong time (after a plaintext login, the wrapper no longer answers it).
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { manageSieveServer } from "../helpers/managesieve.ts";
import type { ManageSieve } from "../helpers/managesieve.ts";
import { run } from "../helpers/programs.ts";
import { startWrapperPair } from "../helpers/wrapper-pair.ts";
import type { WrapperPair } from "../helpers/wrapper-pair.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const leaf = pki.server("localhost", ["localhost", "127.0.0.1"]);
const dir = scratchDir("sieve");
const PLAIN = Buffer.from("\0test\0secret").toString("base64");
let dovecot: ManageSieve;
let wrappers: WrapperPair | undefined;

before(async () => {
  dovecot = await manageSieveServer(dir);
  wrappers = await startWrapperPair("sieve", dovecot.port, leaf);
});

after(async () => {
  await wrappers?.stop();
  await dovecot.close();
});

const port = (policy: "opportunistic" | "required") => {
  if (!wrappers) throw new Error("no wrappers");
  return wrappers[policy].port;
};

/** sieve-connect with the password on fd 3 and the test CA; its actions as given. */
function sieveConnect(wrapperPort: number, actions: string[]) {
  return run(
    "sh",
    [
      "-c",
      'echo secret | sieve-connect "$@" 3<&0 </dev/null',
      "sieve-connect",
      ...["--server", "localhost", "--port", String(wrapperPort), "--user", "test"],
      ...["--passwordfd", "3", "--tlscafile", pki.ca.cert, "--authmech", "PLAIN", ...actions],
    ],
    { timeoutMs: 30_000 },
  );
}

test("sieve-connect (-r wrapper): STARTTLS, the certificate verified, a script uploaded to Dovecot and listed over TLS", async () => {
  const script = join(dir, "keep.sieve");
  writeFileSync(script, 'require "fileinto";\nkeep;\n');
  const up = await sieveConnect(port("required"), [
    ...["--upload", "--localsieve", script, "--remotesieve", "keep"],
  ]);
  assert.equal(up.code, 0, up.stdout + up.stderr + dovecot.log());
  const list = await sieveConnect(port("required"), ["--list"]);
  assert.equal(list.code, 0, list.stdout + list.stderr);
  assert.match(list.stdout, /^"keep"$/m);
});

test("openssl s_client -starttls sieve: verified TLS 1.3, then AUTHENTICATE and LISTSCRIPTS answered by Dovecot", async () => {
  const r = await run(
    "openssl",
    [
      ...["s_client", "-starttls", "sieve", "-connect", `127.0.0.1:${port("required")}`],
      ...["-CAfile", pki.ca.cert, "-verify_return_error", "-verify_hostname", "localhost"],
      "-ign_eof",
    ],
    { input: `AUTHENTICATE "PLAIN" "${PLAIN}"\r\nLISTSCRIPTS\r\nLOGOUT\r\n`, timeoutMs: 20_000 },
  );
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Verify return code: 0 \(ok\)/);
  assert.match(r.stdout, /Protocol *: TLSv1\.3/);
  // Dovecot's capabilities again over TLS, then its answers to the login and the listing.
  assert.match(r.stdout, /^"IMPLEMENTATION" "Dovecot/m);
  assert.match(r.stdout, /^OK "Logged in\."\r?$/m);
  assert.match(r.stdout, /^OK "Listscripts completed\."\r?$/m);
});

/** A python3 client: reads the greeting (up to its OK line), writes `first` in one write, and
 * prints all it reads until the end of the connection. */
const RAW_CLIENT = `
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
f = s.makefile("rb")
while not f.readline().startswith(b"OK"):
    pass
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin1"))
s.shutdown(socket.SHUT_WR) if len(sys.argv) > 3 else None
sys.stdout.write(f.read().decode("latin1"))
`;

test("A10: STARTTLS and NOOP in one write: refused with BYE and closed, no go-ahead, no answer to NOOP", async () => {
  for (const policy of ["opportunistic", "required"] as const) {
    const r = await run("python3", [
      "-c",
      RAW_CLIENT,
      String(port(policy)),
      "STARTTLS\\r\\nNOOP\\r\\n",
    ]);
    assert.equal(r.stdout, 'BYE "Command pipelined after STARTTLS."\r\n', policy + r.stderr);
  }
});

// The client does not half-close: with its end passed on while STARTTLS waits for the login's
// reply (client-gone.test.ts), Dovecot drops a login still in progress on that end, unanswered,
// and whether its reply beat the end was a race. LOGOUT ends the session from Dovecot's side.
test("STARTTLS at the wrong time: after a plaintext login (opportunistic) it is Dovecot's, not ours: no go-ahead", async () => {
  const r = await run("python3", [
    "-c",
    RAW_CLIENT,
    String(port("opportunistic")),
    `AUTHENTICATE "PLAIN" "${PLAIN}"\\r\\nSTARTTLS\\r\\nLOGOUT\\r\\n`,
  ]);
  const lines = r.stdout.split("\r\n");
  assert.equal(lines[0], 'OK "Logged in."', r.stdout + r.stderr);
  // Dovecot's own refusal (it has no TLS), never the wrapper's go-ahead.
  assert.doesNotMatch(r.stdout, /Begin TLS negotiation/);
  assert.match(lines[1] ?? "", /^NO /);
  assert.match(lines[2] ?? "", /^OK "Logout completed\."/);
});
