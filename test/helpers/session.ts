// Runs one tcpserver (ours or djb's) through a fixed sequence of clients, one at a time, and
// gives back what each client read and the whole -v log: the unit the side-by-side tests compare.
import { startServer } from "./server.ts";
import type { RunningServer } from "./server.ts";
import { talk } from "./server.ts";
import { normalizeLog } from "./normalize.ts";

export interface Client {
  /** Source address of the connection (any 127.0.0.0/8 address, or ::1). */
  localAddress?: string;
  /** Address to connect to; default 127.0.0.1. */
  host?: string;
  /** Bytes to send before half-closing. */
  input?: string;
  /** Runs before this client connects (e.g. replaces the rules file). */
  before?: () => Promise<void> | void;
}

export interface Session {
  /** What each client read until EOF, in order. */
  outputs: string[];
  /** The server's stderr once every connection has ended. */
  log: string;
}

/** Waits until the log has `count` `end` lines and, after the last, the matching status line
 * (text lines, or the same events as --log json objects). */
export async function waitForEnds(s: RunningServer, count: number, json = false): Promise<void> {
  await s.waitForLog(json ? /"event":"end"/ : /^tcpserver: end /, count);
  await s.waitForLog(json ? /"event":"status","active":0,/ : /^tcpserver: status: 0\//, count + 1);
}

/**
 * Starts `server` with `-v` and `args` on `host` port 0 running `program`, connects each client
 * in turn (the next one only after the previous connection's `end` line), then stops it.
 */
export async function session(
  server: string,
  args: readonly string[],
  host: string,
  program: readonly string[],
  clients: readonly Client[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<Session> {
  const s = await startServer(server, ["-v", ...args, host, "0", ...program], options);
  try {
    const outputs: string[] = [];
    for (const [i, client] of clients.entries()) {
      await client.before?.();
      try {
        outputs.push(
          await talk(s.port, client.input ?? "", client.host ?? "127.0.0.1", {
            ...(client.localAddress ? { localAddress: client.localAddress } : {}),
          }),
        );
        await waitForEnds(s, i + 1, args.includes("json"));
      } catch (error) {
        const exited = s.child.exitCode ?? s.child.signalCode;
        throw new Error(
          `client ${i + 1} of ${server}: ${(error as Error).message}` +
            `${exited === null ? "" : ` (server exited: ${exited})`}\nserver log:\n${s.log()}`,
          { cause: error },
        );
      }
    }
    return { outputs, log: s.log() };
  } finally {
    await s.stop();
  }
}

/**
 * A -v log split so that two runs can be compared although djb's parent and child write
 * concurrently: the parent's `status:` lines in their order, and every other line (written by
 * the child, or the `end` lines after it) in their order; pids and ports normalised.
 */
export function logShape(log: string): { status: string[]; events: string[] } {
  const lines = normalizeLog(log)
    .split("\n")
    .filter((l) => l !== "");
  return {
    status: lines.filter((l) => l.startsWith("tcpserver: status: ")),
    events: lines.filter((l) => !l.startsWith("tcpserver: status: ")),
  };
}
