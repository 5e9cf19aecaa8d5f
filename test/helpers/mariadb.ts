// A real MariaDB server (Debian's mariadb-server) for a test: its own data directory under tmp,
// on a free port of 127.0.0.1 (and a socket for the admin), with the users app/pw
// (mysql_native_password) and ed/pw2 (ed25519); with or without TLS of its own; `args` are
// more server options (--proxy-protocol-networks=..., say).
import { execFileSync, spawn } from "node:child_process";
import { join } from "node:path";
import type { Pair } from "./certs.ts";
import { freePort } from "./interop.ts";
import { waitFor } from "./server.ts";
import { scratchDir } from "./scratch.ts";

export interface MariaDb {
  port: number;
  /** Runs SQL as root over the socket; gives back its output (tab-separated, with headers). */
  admin(sql: string): string;
  stop(): Promise<void>;
}

export async function startMariaDb(
  options: { tls?: Pair; args?: string[] } = {},
): Promise<MariaDb> {
  const dir = scratchDir("mariadb");
  const data = join(dir, "data");
  const socket = join(dir, "sock");
  execFileSync(
    "mariadb-install-db",
    [
      "--no-defaults",
      `--datadir=${data}`,
      "--user=root",
      "--auth-root-authentication-method=normal",
    ],
    { stdio: "ignore" },
  );
  const port = await freePort();
  const tls = options.tls ? [`--ssl-cert=${options.tls.cert}`, `--ssl-key=${options.tls.key}`] : [];
  const server = spawn(
    "mariadbd",
    [
      ...["--no-defaults", `--datadir=${data}`, `--port=${port}`, "--bind-address=127.0.0.1"],
      ...[`--socket=${socket}`, "--user=root", `--log-error=${join(dir, "error.log")}`, ...tls],
      ...(options.args ?? []),
    ],
    { stdio: "ignore" },
  );
  const exited = new Promise((resolve) => server.once("exit", resolve));
  const admin = (sql: string) =>
    execFileSync("mariadb", ["--no-defaults", "-S", socket, "-uroot", "-e", sql], {
      stdio: "pipe",
    }).toString();
  await waitFor(
    () => {
      try {
        admin("select 1");
        return true;
      } catch {
        return undefined;
      }
    },
    30_000,
    () => "mariadbd did not start",
  );
  admin(
    [
      "DELETE FROM mysql.global_priv WHERE User=''", // the anonymous users would match first
      "FLUSH PRIVILEGES",
      "CREATE USER 'app'@'%' IDENTIFIED BY 'pw'",
      "GRANT ALL ON *.* TO 'app'@'%'",
      "INSTALL SONAME 'auth_ed25519'",
      "CREATE USER 'ed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('pw2')",
    ].join(";"),
  );
  return {
    port,
    admin,
    stop: async () => {
      server.kill("SIGTERM");
      await exited;
    },
  };
}
