// Session tickets: one key for every server context of this process, so that a client resumes
// whichever connection (and whichever of our certificates) issued its ticket, made at random
// in memory (never on disk) and replaced every hour; a ticket of the key before is still taken
// (OpenSSL still bounds a session's age by sessionTimeout). A resumed session gets a new
// ticket: Node's own key handling never renews one, so a client that uses each ticket once
// (RFC 8446 C.4; browsers do) made every other connection a full handshake.
import { randomBytes } from "node:crypto";
import type { SecureContext } from "node:tls";

const ROTATE_MS = 60 * 60 * 1000;
/** A session outlives no key: at most the rotation period. */
export const TICKET_LIFETIME_S = ROTATE_MS / 1000;

interface TicketKey {
  /** OpenSSL's layout: a 16-byte name the ticket carries, its HMAC secret and AES-128 key. */
  name: Buffer;
  hmac: Buffer;
  aes: Buffer;
  made: number;
}

let current: TicketKey | undefined;
let previous: TicketKey | undefined;

/** The key of the moment, replaced when it is older than the rotation period. */
function currentKey(now = Date.now()): TicketKey {
  if (!current || now - current.made >= ROTATE_MS) {
    previous = current;
    current = { name: randomBytes(16), hmac: randomBytes(16), aes: randomBytes(16), made: now };
  }
  return current;
}

/** Fresh IVs, taken 16 bytes at a time from a block filled at random 256 at a time: one call
 * into OpenSSL's generator per 256 tickets instead of one per ticket. */
let ivs = Buffer.alloc(0);
function freshIv(): Buffer {
  if (ivs.length === 0) ivs = randomBytes(16 * 256);
  const iv = ivs.subarray(0, 16);
  ivs = ivs.subarray(16);
  return iv;
}

/** OpenSSL's answers from a ticket key callback. */
const UNKNOWN_KEY = 0;
const USE = 1;
const USE_AND_RENEW = 2;

/** Node's ticket key callback: [answer, HMAC secret, AES key] to decrypt a ticket, and with
 * the key's name and a fresh IV to encrypt one. */
function onTicketKey(name: Buffer, _iv: Buffer, encrypt: boolean): unknown[] {
  const key = currentKey();
  if (encrypt) return [USE, key.hmac, key.aes, key.name, freshIv()];
  const known = [key, previous].find((k) => k?.name.equals(name));
  // Renewed: the client gets a new ticket under the current key.
  return known ? [USE_AND_RENEW, known.hmac, known.aes] : [UNKNOWN_KEY, key.hmac, key.aes];
}

interface NativeContext {
  enableTicketKeyCallback(): void;
  onticketkeycallback: typeof onTicketKey;
}

/** Makes `context` issue and take this process's tickets. Node 24's SecureContext has no
 * public way to renew a ticket; its callback hook is the one Node's own ticketKeys use. */
export function shareTickets(context: SecureContext): void {
  const native = (context as SecureContext & { context: NativeContext }).context;
  native.enableTicketKeyCallback();
  native.onticketkeycallback = onTicketKey;
}
