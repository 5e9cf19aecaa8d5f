// What every cli.ts shares: turn a thrown error into one stderr line and an exit code.
import { FatalError, UsageError } from "./errors.ts";

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
    if (usage) log(`${name}: usage: ${usage}\n`);
    return 100;
  }
  if (error instanceof FatalError) {
    log(`${name}: fatal: ${error.message}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  log(`${name}: fatal: internal error: ${message}\n`);
  return 111;
}
