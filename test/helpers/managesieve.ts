// A real ManageSieve server for a test: Dovecot's managesieve-login (Debian's
// dovecot-managesieved) under a dovecot master of its own, configured from files under `dir`,
// listening on a free port of 127.0.0.1, with the user test/secret (SASL PLAIN); with TLS of
// its own (STARTTLS) or without (ssl = no); or behind a proxy that sends PROXY v2 headers
// (`haproxy`: plaintext logins only on what dovecot takes for secured, as with TLS of its own).
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Pair } from "./certs.ts";
import { freePort } from "./interop.ts";
import { account, dovecotUsers, startDovecot } from "./mail-servers.ts";
import { untilAnswers } from "./server.ts";

/** A PROXY v2 header with the LOCAL command: the proxy's own connection (a health check). */
const PROXY_V2_LOCAL = "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";

export interface ManageSieve {
  port: number;
  log(): string;
  close(): Promise<void>;
}

export async function manageSieveServer(
  dir: string,
  options: { tls?: Pair; haproxy?: boolean } = {},
): Promise<ManageSieve> {
  const nobody = account("nobody");
  chmodSync(dir, 0o755);
  const base = join(dir, "managesieve");
  for (const sub of ["", "run", "state"]) mkdirSync(join(base, sub), { recursive: true });
  const mail = join(base, "mail");
  mkdirSync(mail);
  chownSync(mail, nobody.uid, nobody.gid);
  const passwd = join(base, "passwd");
  writeFileSync(passwd, `test:{PLAIN}secret:${nobody.uid}:${nobody.gid}::${mail}/test::\n`);
  const tls = ["ssl = no"];
  if (options.tls) {
    // dovecot reads them as root, at start.
    const cert = join(base, "cert.pem");
    const key = join(base, "key.pem");
    writeFileSync(cert, readFileSync(options.tls.cert));
    writeFileSync(key, readFileSync(options.tls.key), { mode: 0o600 });
    tls.splice(0, 1, "ssl = yes", `ssl_cert = <${cert}`, `ssl_key = <${key}`);
  }
  const port = await freePort();
  const config = join(base, "dovecot.conf");
  writeFileSync(
    config,
    [
      `base_dir = ${join(base, "run")}`,
      `state_dir = ${join(base, "state")}`,
      "log_path = /dev/stderr",
      ...tls,
      "protocols = sieve",
      "auth_mechanisms = plain",
      // Without TLS of its own, PLAIN must be allowed on what dovecot sees as plaintext: the
      // wrapper's TLS is in front of it.
      `disable_plaintext_auth = ${options.tls || options.haproxy ? "yes" : "no"}`,
      ...(options.haproxy ? ["haproxy_trusted_networks = 127.0.0.0/8"] : []),
      ...dovecotUsers(mail, passwd),
      "service managesieve-login {",
      "  inet_listener sieve {",
      "    address = 127.0.0.1",
      `    port = ${port}`,
      ...(options.haproxy ? ["    haproxy = yes"] : []),
      "  }",
      "}",
      "plugin {",
      `  sieve = file:${mail}/%n/sieve;active=${mail}/%n/active.sieve`,
      "}",
      "",
    ].join("\n"),
  );
  const { master, log, exited } = startDovecot(config);
  // Ready once it greets: its capability list, ending in OK.
  await untilAnswers(
    port,
    /\r\nOK[^\n]*\n/,
    options.haproxy ? PROXY_V2_LOCAL : undefined,
    () => `dovecot did not start:\n${log()}`,
    () => master.exitCode !== null,
  );
  return {
    port,
    log,
    close: async () => {
      if (master.exitCode === null && master.signalCode === null) master.kill("SIGTERM");
      await exited;
    },
  };
}
