// A real OpenLDAP slapd (Debian's slapd) for a test: a slapd.conf of its own under tmp, the
// suffix dc=example,dc=org with a root DN that binds with "secret", on a free port of
// 127.0.0.1, in the foreground logging each connection and operation; with or without TLS;
// with `proxy`, also a listener that takes a PROXY header first (pldap://, slapd 2.5).
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Pair } from "./certs.ts";
import { freePort } from "./interop.ts";
import { run } from "./programs.ts";
import { scratchDir } from "./scratch.ts";

export const LDAP_ADMIN = "cn=admin,dc=example,dc=org";

export interface Slapd {
  port: number;
  /** The pldap:// listener's port (0 without `proxy`). */
  proxyPort: number;
  /** slapd's log so far (-d 256: connections and operations). */
  log(): string;
  stop(): Promise<void>;
}

/** tls: the server's certificate and key (StartTLS of slapd's own), else none. */
export async function startSlapd(options: { tls?: Pair; proxy?: boolean } = {}): Promise<Slapd> {
  const dir = scratchDir("ldap");
  mkdirSync(join(dir, "db"));
  const conf = join(dir, "slapd.conf");
  const tls = options.tls
    ? [`TLSCertificateFile ${options.tls.cert}`, `TLSCertificateKeyFile ${options.tls.key}`]
    : [];
  writeFileSync(
    conf,
    [
      "include /etc/ldap/schema/core.schema",
      "modulepath /usr/lib/ldap",
      "moduleload back_mdb",
      `pidfile ${join(dir, "slapd.pid")}`,
      ...tls,
      "database mdb",
      'suffix "dc=example,dc=org"',
      `rootdn "${LDAP_ADMIN}"`,
      "rootpw secret",
      `directory ${join(dir, "db")}`,
      "",
    ].join("\n"),
  );
  const port = await freePort();
  const proxyPort = options.proxy ? await freePort() : 0;
  const urls = [
    `ldap://127.0.0.1:${port}/`,
    ...(proxyPort ? [`pldap://127.0.0.1:${proxyPort}/`] : []),
  ];
  // -d 256: in the foreground, logging each connection and operation (stats).
  const slapd = spawn("slapd", ["-d", "256", "-f", conf, "-h", urls.join(" ")], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  slapd.stderr.on("data", (b: Buffer) => (log += b.toString()));
  const exited = new Promise((resolve) => slapd.once("exit", resolve));
  // slapd answers once an anonymous whoami goes straight through.
  for (let i = 0; ; i++) {
    const r = await run("ldapwhoami", ["-x", "-H", `ldap://127.0.0.1:${port}`]);
    if (r.code === 0) break;
    if (i > 100) throw new Error(`slapd did not start:\n${log}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    port,
    proxyPort,
    log: () => log,
    stop: async () => {
      slapd.kill("SIGTERM");
      await exited;
    },
  };
}
