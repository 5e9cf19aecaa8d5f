// tlsd in-process under tcpserver -x: a rule that sets CERTFILE and KEYFILE (or a
// CERTFILE:name pair) for some clients gives those clients that certificate, connection after
// connection, while the others keep the one of tcpserver's environment. tlsd finds each
// connection's certificate store by the values of the variables its configuration is made of,
// so this also shows that a value a rule changes is one of them.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { connect as netConnect } from "node:net";
import { connect } from "node:tls";
import { join } from "node:path";
import { makePki } from "../helpers/certs.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const usual = pki.server("usual", ["usual.test"]);
const other = pki.server("other", ["other.test"]);
const named = pki.server("named", ["named.test"]);
const dir = scratchDir("rules-certificates");
const servers: RunningServer[] = [];
after(() => Promise.all(servers.map((s) => s.stop())));

/** The CN of the certificate served to a client from `from`, asking for `servername`. */
function servedName(port: number, from: string, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    // The certificate is what the test looks at, not whether it verifies.
    const tcp = netConnect({ host: "127.0.0.1", port, localAddress: from });
    const socket = connect({ socket: tcp, servername, rejectUnauthorized: false });
    socket.setTimeout(10_000, () => socket.destroy(new Error(`no handshake from ${from}`)));
    socket.on("error", reject);
    socket.once("secureConnect", () => {
      resolve(String(socket.getPeerCertificate().subject?.CN));
      socket.destroy();
    });
  });
}

async function serve(rules: string, tlsdArgs: readonly string[]): Promise<number> {
  const cdb = join(dir, `rules-${servers.length}.cdb`);
  const made = await run(ours("tcprules"), [cdb, `${cdb}.tmp`], { input: rules });
  assert.equal(made.code, 0, made.stderr);
  const server = await startServer(
    ours("tcpserver"),
    ["-x", cdb, "-RHl0", "127.0.0.1", "0", "tlsd", ...tlsdArgs, "true"],
    { env: { PATH: PATH_WITH_BIN, CERTFILE: usual.cert, KEYFILE: usual.key } },
  );
  servers.push(server);
  return server.port;
}

test("a rule's CERTFILE and KEYFILE serve its clients, the environment's the others, in turn", async () => {
  const port = await serve(
    `127.0.0.2:allow,CERTFILE="${other.cert}",KEYFILE="${other.key}"\n:allow\n`,
    [],
  );
  const seen: string[] = [];
  for (const from of ["127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2", "127.0.0.2"])
    seen.push(await servedName(port, from, "usual.test"));
  assert.deepEqual(seen, ["usual.test", "other.test", "usual.test", "other.test", "other.test"]);
});

test("a rule's CERTFILE:name pair serves that name to its clients only (tlsd -k 1)", async () => {
  const port = await serve(
    `127.0.0.3:allow,CERTFILE:named.test="${named.cert}",KEYFILE:named.test="${named.key}"\n:allow\n`,
    ["-k", "1"],
  );
  const seen: string[] = [];
  for (const from of ["127.0.0.3", "127.0.0.1", "127.0.0.3"])
    seen.push(await servedName(port, from, "named.test"));
  assert.deepEqual(seen, ["named.test", "usual.test", "named.test"]);
});
