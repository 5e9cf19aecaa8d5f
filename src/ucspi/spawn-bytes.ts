// A child started as the chains start their programs (posix_spawn in the native addon), for
// one that Node's spawn would otherwise start (tls-everywhere's chains, tlsd's ACME_ASK):
// Node passes a spawn's words and environment as UTF-8 only, so a byte that is not UTF-8
// (CERTFILE=$'c\xff.pem') reached the child as U+FFFD. Here the words go as os-string.ts keeps
// them and the environment as byte strings (env.ts): the child gets the very bytes.
import { openSync, closeSync } from "node:fs";
import { Socket } from "node:net";
import { constants } from "node:os";
import { envList } from "./env.ts";
import type { Env } from "./env.ts";
import { native } from "./native.ts";

export interface ChildEnd {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** It could not be run (posix_spawn's error). */
  error?: Error;
}

export interface BytesChild {
  /** undefined when it could not be run. */
  readonly pid: number | undefined;
  /** Its fd 1, unless discarded or it could not be run (fd 0 is /dev/null, fd 2 ours). */
  readonly stdout: Socket | undefined;
  readonly ended: Promise<ChildEnd>;
  /** Signals it until its end is known (never a process that took its pid since). */
  kill(signal: NodeJS.Signals): void;
}

export interface SpawnOptions {
  /** Its argv[0]; `file` by default. */
  argv0?: string;
  /** Its fd 1 goes to /dev/null. */
  discardStdout?: boolean;
}

/** Starts `file` (a path, not searched for) with `args` and `env`; a failure to run it is its
 * end. */
export function spawnWithBytes(
  file: string,
  args: readonly string[],
  env: Readonly<Env>,
  options: SpawnOptions = {},
): BytesChild {
  const devNull = openSync("/dev/null", "r+");
  let ours: number | undefined;
  let theirs = devNull;
  let done = false;
  let settle: (end: ChildEnd) => void = () => {};
  const ended = new Promise<ChildEnd>((resolve) => (settle = resolve));
  let pid: number | undefined;
  try {
    if (!options.discardStdout) [ours, theirs] = native().socketPair();
    pid = native().spawn(
      file,
      [options.argv0 ?? file, ...args],
      envList(env),
      [devNull, 0, theirs, 1],
      3,
      (wstatus) => {
        done = true;
        settle(endOf(wstatus));
      },
    );
  } catch (error) {
    // No child writes to its end: ours is closed by the time its end is known, no stream of it.
    if (ours !== undefined) native().close(ours);
    ours = undefined;
    done = true;
    settle({ code: null, signal: null, error: error as Error });
  } finally {
    closeSync(devNull);
    if (theirs !== devNull) native().close(theirs);
  }
  const spawned = pid;
  return {
    pid: spawned,
    stdout:
      ours === undefined ? undefined : new Socket({ fd: ours, readable: true, writable: false }),
    ended,
    kill(signal) {
      if (!done && spawned !== undefined) native().kill(spawned, constants.signals[signal]);
    },
  };
}

/** A wait status as Node's exit event gives it. */
function endOf(wstatus: number): ChildEnd {
  const signo = wstatus & 0x7f;
  if (signo === 0) return { code: (wstatus >> 8) & 0xff, signal: null };
  const name = Object.entries(constants.signals).find(([, n]) => n === signo)?.[0];
  return { code: null, signal: (name ?? null) as NodeJS.Signals | null };
}
