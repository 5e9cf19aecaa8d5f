// openssl s_server as a TLS peer for the clients' tests, for one connection.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { freePort } from "./interop.ts";
import { waitFor } from "./server.ts";

/** openssl s_server with -rev (it answers each line reversed), for one connection, on a free
 * port of 127.0.0.1; `extra`: more of its options (-status_file FILE, say). */
export async function sServer(
  cert: string,
  key: string,
  extra: readonly string[] = [],
): Promise<{ port: number; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(
    "openssl",
    [
      ...["s_server", "-accept", `127.0.0.1:${port}`, "-cert", cert, "-key", key],
      ...["-rev", "-naccept", "1", ...extra],
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  child.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  await waitFor(
    () => (/ACCEPT/.test(out) ? true : undefined),
    10_000,
    () => `s_server: ${out}`,
  );
  return { port, child };
}
