// Checks an installed copy of the programs (npm install -g, the Debian package) as a user would
// run them: from another directory, with the system's PATH (its Node is not ours).
import { spawnSync } from "node:child_process";
import type { TestPki } from "./certs.ts";
import { startServer } from "./server.ts";
import { tlsExchange } from "./tls-client.ts";

/** The system's PATH without our node_modules/.bin (which puts Node 24 first for the tests). */
export const SYSTEM_PATH = (process.env["PATH"] ?? "/usr/bin:/bin")
  .split(":")
  .filter((dir) => !dir.includes("node_modules"))
  .join(":");

/** Runs `tcpserver` (from `server`, a path) with `tlsd` and a shell program found by `path`,
 * and talks TLS to it, verifying the certificate: gives back what the client read. */
export async function tlsThrough(
  server: string,
  path: string,
  pki: TestPki,
  cwd: string,
): Promise<string> {
  const pair = pki.server("installed", ["localhost"]);
  const running = await startServer(
    server,
    ["-RHl0", "127.0.0.1", "0", "tlsd", "sh", "-c", 'echo "tls $SSL_PROTOCOL"; exec cat'],
    { env: { PATH: path, CERTFILE: pair.cert, KEYFILE: pair.key }, cwd },
  );
  try {
    return await tlsExchange(running.port, pki.ca.cert, {
      send: "ping\n",
      enough: (got) => got.includes("ping\n"),
    });
  } finally {
    await running.stop();
  }
}

/** Runs a program to completion (bounded), for its status and output. */
export function runInstalled(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(file, args, { env, cwd, encoding: "utf8", timeout: 120_000 });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Where `man -w` finds the page of `name` when `bin` is first on PATH (man-db derives its
 * search path from PATH: bin's ../share/man), with no MANPATH set. */
export function manPageWith(bin: string, name: string, cwd: string) {
  return runInstalled(
    "man",
    ["-w", name],
    { ...process.env, PATH: `${bin}:${SYSTEM_PATH}`, MANPATH: "" },
    cwd,
  );
}
