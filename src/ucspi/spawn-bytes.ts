// A long-running child started as the chains start their programs (posix_spawn in the native
// addon), for a program that would otherwise use Node's spawn: Node passes a spawn's words and
// environment as UTF-8 only, so a byte that is not UTF-8 (CERTFILE=$'c\xff.pem') reached the
// child as U+FFFD. Here the words go as os-string.ts keeps them and the environment as byte
// strings (env.ts): the child gets the very bytes.
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
  /** Its fd 1 (fd 0 is /dev/null, fd 2 ours). */
  readonly stdout: Socket;
  readonly ended: Promise<ChildEnd>;
  /** Signals it until its end is known (never a process that took its pid since). */
  kill(signal: NodeJS.Signals): void;
}

/** Starts `file` with `args` (argv[0] is `file`) and `env`; a failure to run it is its end. */
export function spawnWithBytes(
  file: string,
  args: readonly string[],
  env: Readonly<Env>,
): BytesChild {
  const [ours, theirs] = native().socketPair();
  const stdin = openSync("/dev/null", "r");
  let done = false;
  let settle: (end: ChildEnd) => void = () => {};
  const ended = new Promise<ChildEnd>((resolve) => (settle = resolve));
  let pid: number | undefined;
  try {
    pid = native().spawn(
      file,
      [file, ...args],
      envList(env),
      [stdin, 0, theirs, 1],
      3,
      (wstatus) => {
        done = true;
        settle(endOf(wstatus));
      },
    );
  } catch (error) {
    done = true;
    settle({ code: null, signal: null, error: error as Error });
  } finally {
    closeSync(stdin);
    native().close(theirs);
  }
  const spawned = pid;
  return {
    pid: spawned,
    stdout: new Socket({ fd: ours, readable: true, writable: false }),
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
