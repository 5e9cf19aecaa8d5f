// Session tickets: one key for every server context of this process, so that a client resumes
// whichever connection (and whichever of our certificates) issued its ticket, made at random
// in memory (never on disk) and replaced every hour. Node's contexts hold one key, so a new
// key ends the old tickets: those clients make one full handshake again.
import { randomBytes } from "node:crypto";
import type { SecureContext } from "node:tls";

const ROTATE_MS = 60 * 60 * 1000;
/** A ticket outlives no key: at most the rotation period. */
export const TICKET_LIFETIME_S = ROTATE_MS / 1000;

interface TicketKey {
  /** 48 bytes: key name, HMAC secret, AES key (OpenSSL's layout). */
  bytes: Buffer;
  made: number;
  generation: number;
}

let current: TicketKey | undefined;

/** The key of the moment, replaced when it is older than the rotation period. */
export function ticketKey(now = Date.now()): TicketKey {
  if (!current || now - current.made >= ROTATE_MS) {
    current = { bytes: randomBytes(48), made: now, generation: (current?.generation ?? 0) + 1 };
  }
  return current;
}

/** Puts the current key in `context` unless it has it already; returns its generation. */
export function refreshTicketKey(context: SecureContext, has: number | undefined): number {
  const key = ticketKey();
  if (has !== key.generation) {
    (
      context as SecureContext & { context: { setTicketKeys(keys: Buffer): void } }
    ).context.setTicketKeys(key.bytes);
  }
  return key.generation;
}
