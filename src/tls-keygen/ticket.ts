// tls-keygen ticket: makes tlsd's TICKETFILE (two fresh keys: the first encrypts, the second is
// already known everywhere) or rotates it (a fresh key at the end, the newest `keep` kept). An
// existing file is read as tlsd reads it, so a file tlsd would refuse is refused and left as it
// is. Written atomically with mode 0600: a new inode, which a running tlsd sees within a second.
import { randomBytes } from "node:crypto";
import { writeFileAtomic } from "../files/atomic-write.ts";
import { ticketKeysOf } from "../tls/tickets.ts";
import { FatalError } from "../ucspi/errors.ts";
import { checkKept, checkOutput, exists, readInput } from "./files.ts";
import type { TicketOptions } from "./options.ts";

/** Makes or rotates the file; returns the exit code. */
export function rotateTickets(options: TicketOptions, log: (line: string) => void): number {
  const { file, keep } = options;
  checkOutput(file, true);
  const old = exists(file) ? keysIn(file) : undefined;
  const keys = old ? [...old, freshKey()].slice(-keep) : [freshKey(), freshKey()];
  // A new file is linked into place, so one that appears meanwhile is not replaced.
  writeFileAtomic(file, keys.map((key) => `${key}\n`).join(""), {
    mode: 0o600,
    overwrite: old !== undefined,
  });
  if (options.verbose) log(`tls-keygen: info: wrote ${keys.length} ticket keys to ${file}\n`);
  return 0;
}

/** 48 random bytes in base64: a key's name, HMAC secret and AES key, as tlsd reads them. */
function freshKey(): string {
  return randomBytes(48).toString("base64");
}

/** The keys of an existing file, one base64 line each (its comments and blank lines are not
 * kept); why not in tlsd's words, which name a line by its number and never quote it. */
function keysIn(file: string): string[] {
  checkKept(file, "remove it, and a new file is made");
  const keys = ticketKeysOf(readInput(file, "ticket keys"));
  if (typeof keys === "string") {
    throw new FatalError(`unable to use ticket keys ${file}: ${keys} (left as it is)`, 100);
  }
  return keys.known.map((k) => Buffer.concat([k.name, k.hmac, k.aes]).toString("base64"));
}
