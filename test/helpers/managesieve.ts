// A real ManageSieve server for a test: Dovecot's managesieve-login (Debian's
// dovecot-managesieved) under a dovecot master of its own, configured from files under `dir`,
// listening on a free port of 127.0.0.1, with the user test/secret (SASL PLAIN); with TLS of
// its own (STARTTLS) or without (ssl = no).
import { spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import type { Pair } from "./certs.ts";
import { freePort } from "./interop.ts";
import { account } from "./mail-servers.ts";

export interface ManageSieve {
  port: number;
  log(): string;
  close(): Promise<void>;
}

/** Whether the server greets on `port` (its capability list, ending in OK). */
function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    let got = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.on("error", () => done(false));
    socket.on("data", (b: Buffer) => {
      got += b.toString("latin1");
      if (/\r\nOK[^\n]*\n/.test(got)) done(true);
    });
  });
}

export async function manageSieveServer(
  dir: string,
  options: { tls?: Pair } = {},
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
      `disable_plaintext_auth = ${options.tls ? "yes" : "no"}`,
      `mail_location = maildir:${mail}/%n`,
      "passdb {",
      "  driver = passwd-file",
      `  args = scheme=PLAIN ${passwd}`,
      "}",
      "userdb {",
      "  driver = passwd-file",
      `  args = ${passwd}`,
      "}",
      "service managesieve-login {",
      "  inet_listener sieve {",
      "    address = 127.0.0.1",
      `    port = ${port}`,
      "  }",
      "}",
      "plugin {",
      `  sieve = file:${mail}/%n/sieve;active=${mail}/%n/active.sieve`,
      "}",
      "",
    ].join("\n"),
  );
  const master = spawn("/usr/sbin/dovecot", ["-F", "-c", config], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  master.stderr.setEncoding("latin1");
  master.stderr.on("data", (s: string) => (log += s));
  const exited = new Promise<void>((resolve) => master.once("exit", () => resolve()));
  for (let i = 0; !(await greets(port)); i++) {
    if (i > 100 || master.exitCode !== null) throw new Error(`dovecot did not start:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    port,
    log: () => log,
    close: async () => {
      if (master.exitCode === null && master.signalCode === null) master.kill("SIGTERM");
      await exited;
    },
  };
}
