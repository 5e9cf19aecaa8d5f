// What every cli.ts shares: turn a thrown error into one stderr line and an exit code, and end
// the process the way the program it ran ended.
import { readFileSync } from "node:fs";
import { constants } from "node:os";
import { FatalError, UsageError, causeText } from "../ucspi/errors.ts";
import { ProgramNotFound } from "../ucspi/path-search.ts";
import { STOP_HOOKS_MS, stopAll } from "../ucspi/stop.ts";
import { native } from "../ucspi/native.ts";
import { osFromBytes, shownOs } from "../ucspi/os-string.ts";
import { writeAll } from "./stdio.ts";

const osConstants = constants;

// SIGUSR1 kills every program, as it kills djb's. Node's own answer to it would be to open its
// inspector on 127.0.0.1:9229, where any local user could then run code as the program (root,
// for a tcpserver on a low port): the launcher turns that off (--disable-sigusr1), which leaves
// the signal blocked. Let it through here, before anything else: one sent while Node started
// kills us now.
native().unblockSigusr1();

/** Where the fds the launcher found closed are listed (launcher.c), for every cli.ts. */
export { fdsNotOpen } from "./stdio.ts";

/** This program's arguments (process.argv from index 2) with their bytes: Node's own when each
 * decoded as UTF-8, else each word read again from /proc/self/cmdline, which ends with them. */
export function programArgs(): string[] {
  const args = process.argv.slice(2);
  if (!args.some((word) => word.includes("\ufffd"))) return args;
  let words: string[];
  try {
    words = readFileSync("/proc/self/cmdline").toString("latin1").split("\0").slice(0, -1);
  } catch {
    return args;
  }
  const raw = words.slice(words.length - args.length).map(osFromBytes);
  // The same words, but for the bytes Node could not decode: else not ours to take.
  const same =
    raw.length === args.length && raw.every((word, i) => !word.isWellFormed() || word === args[i]);
  return same ? raw : args;
}

/** Writes `prog: fatal: message` (or the usage line) and returns the exit code. */
export function reportError(
  program: string,
  error: unknown,
  log: (line: string) => void,
  usage?: string,
): number {
  const name = program.slice(program.lastIndexOf("/") + 1);
  if (error instanceof UsageError) {
    if (error.message) log(`${name}: ${error.message}\n`);
    const line = usage ?? error.usage;
    if (line) log(`${name}: usage: ${line}\n`);
    return 100;
  }
  if (error instanceof FatalError) {
    log(`${name}: fatal: ${error.message}\n`);
    return error.exitCode;
  }
  if (error instanceof ProgramNotFound) {
    log(`${name}: fatal: ${error.message}: ${causeText(error)}\n`);
    return 111;
  }
  const message = error instanceof Error ? error.message : String(error);
  log(`${name}: fatal: internal error: ${message}\n`);
  return 111;
}

/** A throw that nothing catches (a bug, from an event handler, which in our tcpserver ends
 * every connection it serves): one line in our words and exit 111 (or the FatalError's code),
 * for the supervisor to restart us, instead of Node's stack dump. */
export function endOnUncaught(program: string): void {
  process.on("uncaughtException", (error) => {
    process.exit(reportError(program, error, writeStderr));
  });
}

/** SIGTERM to a program of its own (a stage under a foreign tcpserver, tls-keygen renew): what
 * src/ucspi/stop.ts holds is taken down first, for a bounded time, and then the process ends
 * by the signal, as it would have without this handler. */
export function stopOnTerm(): void {
  process.once("SIGTERM", () => {
    void stopAll(STOP_HOOKS_MS).then(() => process.kill(process.pid, "SIGTERM"));
  });
}

/**
 * Ends this process as the chain's last program ended: with its exit code, or killed by the
 * same signal (as if it had been exec'd). Returns the exit code to set if the signal is one
 * that does not kill (SIGPIPE is ignored by Node): 128 + the signal, as shells report it.
 */
export function passOnStatus(status: number): number {
  const signal = status & 0x7f;
  if (signal === 0) return (status >> 8) & 0xff;
  process.removeAllListeners(signalName(signal));
  process.kill(process.pid, signal);
  return 128 + signal;
}

function signalName(signal: number): NodeJS.Signals {
  const found = Object.entries(osConstants.signals).find(([, n]) => n === signal);
  return (found?.[0] ?? "SIGTERM") as NodeJS.Signals;
}

/** One line to fd 2, written whole at once (waiting while a log reader that falls behind has
 * its pipe full); a closed stderr loses the line, nothing more. A byte of a name that is not
 * UTF-8 is shown `\xff`. */
export function writeStderr(line: string | Buffer): void {
  try {
    writeAll(2, typeof line === "string" ? Buffer.from(shownOs(line)) : line);
  } catch {
    // stderr gone: nothing better to do with the line.
  }
}
