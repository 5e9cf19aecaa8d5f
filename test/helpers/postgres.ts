// A real PostgreSQL 15 server (Debian's postgresql) for a test: its own data directory under
// tmp, on a free port of 127.0.0.1 and a UNIX socket in that directory, trust authentication, with or without TLS of its own.
import { execFileSync, spawn } from "node:child_process";
import { chownSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Pair } from "./certs.ts";
import { freePort } from "./interop.ts";
import { waitFor } from "./server.ts";
import { scratchDir } from "./scratch.ts";

export const PG_BIN = "/usr/lib/postgresql/15/bin";

export interface Postgres {
  port: number;
  /** Its UNIX socket (it listens on both). */
  socket: string;
  /** The server's log so far (stderr, with log_connections on). */
  log(): string;
  stop(): Promise<void>;
}

/** ssl: the server's certificate and key (ssl=on), else ssl=off. */
export async function startPostgres(options: { ssl?: Pair } = {}): Promise<Postgres> {
  const dir = scratchDir("pg");
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }));
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }));
  chownSync(dir, uid, gid);
  const data = join(dir, "data");
  execFileSync(
    "runuser",
    ["-u", "postgres", "--", `${PG_BIN}/initdb`, "-D", data, "-A", "trust", "-U", "postgres"],
    { stdio: "ignore" },
  );
  const tls = ["-c", "ssl=off"];
  if (options.ssl) {
    // PostgreSQL reads its key as its own user and refuses one that others can read.
    const cert = join(dir, "server.crt");
    const key = join(dir, "server.key");
    writeFileSync(cert, readFileSync(options.ssl.cert), { mode: 0o644 });
    writeFileSync(key, readFileSync(options.ssl.key), { mode: 0o600 });
    chownSync(key, uid, gid);
    tls.splice(0, 2, "-c", "ssl=on", "-c", `ssl_cert_file=${cert}`, "-c", `ssl_key_file=${key}`);
  }
  const port = await freePort();
  const server = spawn(
    "runuser",
    [
      ...["-u", "postgres", "--", `${PG_BIN}/postgres`, "-D", data, "-p", String(port)],
      ...["-k", dir, "-c", "listen_addresses=127.0.0.1", ...tls, "-c", "log_connections=on"],
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  server.stderr.on("data", (b: Buffer) => (log += b.toString()));
  const exited = new Promise((resolve) => server.once("exit", resolve));
  await waitFor(
    () => {
      try {
        execFileSync("pg_isready", ["-q", "-h", "127.0.0.1", "-p", String(port)]);
        return true;
      } catch {
        return undefined;
      }
    },
    30_000,
    () => `postgres did not start:\n${log}`,
  );
  return {
    port,
    socket: join(dir, `.s.PGSQL.${port}`),
    log: () => log,
    stop: async () => {
      server.kill("SIGTERM");
      await exited;
    },
  };
}
