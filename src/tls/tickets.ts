// Session tickets: one key for every server context of this process, so that a client resumes
// whichever connection (and whichever of our certificates) issued its ticket, made at random
// in memory (never on disk) and replaced every hour; a ticket of the key before is still taken
// (OpenSSL still bounds a session's age by sessionTimeout). Or, with TICKETFILE, the keys of a
// file that several processes or hosts share. A resumed session gets a new ticket: Node's own
// key handling never renews one, so a client that uses each ticket once (RFC 8446 C.4;
// browsers do) made every other connection a full handshake.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { osPath } from "../ucspi/os-string.ts";
import type { SecureContext } from "node:tls";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { native } from "../ucspi/native.ts";
import type { TlsTicketKeys } from "../ucspi/native.ts";
import { stampOf } from "./file-stamp.ts";

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

/** The key that encrypts new tickets, and every key a ticket may have been made under. */
export interface TicketKeys {
  encrypt: TicketKey;
  known: readonly TicketKey[];
}

/** Where a context's keys come from: this process's own (the default), or a TicketFile. */
export interface TicketSource {
  keys(): TicketKeys;
}

/** This process's keys as a TicketKeys, made again only when the key changes: the callback
 * runs at every handshake. */
let processKeysNow: TicketKeys | undefined;
export const processKeys: TicketSource = {
  keys() {
    const key = currentKey();
    if (processKeysNow?.encrypt !== key)
      processKeysNow = { encrypt: key, known: previous ? [key, previous] : [key] };
    return processKeysNow;
  },
};

/** Node's ticket key callback: [answer, HMAC secret, AES key] to decrypt a ticket, and with
 * the key's name and a fresh IV to encrypt one. */
function ticketKeyCallback(source: TicketSource) {
  return (name: Buffer, _iv: Buffer, encrypt: boolean): unknown[] => {
    const { encrypt: key, known } = source.keys();
    if (encrypt) return [USE, key.hmac, key.aes, key.name, freshIv()];
    const found = known.find((k) => k.name.equals(name));
    // Renewed: the client gets a new ticket under the key that encrypts now.
    return found ? [USE_AND_RENEW, found.hmac, found.aes] : [UNKNOWN_KEY, key.hmac, key.aes];
  };
}

interface NativeContext {
  enableTicketKeyCallback(): void;
  onticketkeycallback: ReturnType<typeof ticketKeyCallback>;
}

/** Makes `context` issue and take the tickets of `source` (by default this process's own
 * keys). Node 24's SecureContext has no public way to renew a ticket; its callback hook is
 * the one Node's own ticketKeys use. */
export function shareTickets(context: SecureContext, source: TicketSource = processKeys): void {
  const native = (context as SecureContext & { context: NativeContext }).context;
  native.enableTicketKeyCallback();
  native.onticketkeycallback = ticketKeyCallback(source);
}

/** The native TLS engine's key set for `source`'s keys (one per source, shared by the
 * contexts of its store), given them again whenever they have changed (the hourly key, a
 * TICKETFILE read again): called as each connection begins. The same keys in the same layout
 * as node:tls's contexts take, so that either path resumes the other's tickets. */
export function engineTicketKeys(source: TicketSource): TlsTicketKeys {
  const keys = source.keys();
  const held = engineKeySets.get(source);
  if (held?.keys === keys) return held.set;
  const bytes = Buffer.concat(keys.known.flatMap((k) => [k.name, k.hmac, k.aes]));
  const encrypt = keys.known.indexOf(keys.encrypt);
  if (held) native().tlsSetTicketKeys(held.set, bytes, encrypt);
  const set = held?.set ?? native().tlsTicketKeys(bytes, encrypt);
  engineKeySets.set(source, { set, keys });
  return set;
}

const engineKeySets = new WeakMap<TicketSource, { set: TlsTicketKeys; keys: TicketKeys }>();

/** The most a ticket key file may hold: far more than any rotation needs. */
const MAX_FILE = 64 * 1024;

/**
 * TICKETFILE's keys: one per line, 48 random bytes in base64 (`openssl rand -base64 48`: a
 * name, an HMAC secret and an AES-128 key, 16 bytes each); blank lines and `#` comments are
 * passed over. The line before the last encrypts (the only one, alone) and every line
 * decrypts: haproxy's rule, under which a new key is added at the end on every host before
 * any host encrypts with it. Returns why not, in words that never quote the file.
 */
export function parseTicketKeys(text: string): TicketKeys | string {
  const keys: TicketKey[] = [];
  const lines = text.split("\n");
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const bytes = /^[A-Za-z0-9+/]+={0,2}$/.test(line) ? Buffer.from(line, "base64") : undefined;
    if (bytes?.length !== 48) return `line ${i + 1} is not 48 bytes in base64`;
    const key = {
      name: bytes.subarray(0, 16),
      hmac: bytes.subarray(16, 32),
      aes: bytes.subarray(32, 48),
      made: 0,
    };
    if (keys.some((k) => k.name.equals(key.name)))
      return `line ${i + 1} has the name (first 16 bytes) of a key before it`;
    keys.push(key);
  }
  const encrypt = keys.at(-2) ?? keys[0];
  if (!encrypt) return "no key in it";
  return { encrypt, known: keys };
}

/** A ticket key file's bytes → its keys, or why not: tlsd's reading of TICKETFILE, and the
 * one tls-keygen ticket rotates from, so that it refuses what tlsd would refuse. */
export function ticketKeysOf(bytes: Buffer): TicketKeys | string {
  if (bytes.length > MAX_FILE) return `over ${MAX_FILE} bytes`;
  return parseTicketKeys(bytes.toString("latin1"));
}

/** TICKETFILE: ticket keys shared by every process that reads the same file (a tlsd per
 * connection under djb's tcpserver, tcpserver --workers, several hosts), read again when it
 * changes (its CertStore looks, with its own files) and on reload(). */
export class TicketFile implements TicketSource {
  readonly path: string;
  private current: TicketKeys;
  private stamp: string;

  /** Reads the file; a FatalError (exit 111) when it cannot serve. */
  constructor(path: string) {
    this.path = path;
    this.stamp = stampOf([path]);
    this.current = this.read();
  }

  keys(): TicketKeys {
    return this.current;
  }

  /** Reads the file again if it changed on disk (the keys read before stay when it cannot
   * serve). */
  refresh(): void {
    if (stampOf([this.path]) !== this.stamp) this.reload();
  }

  /** Reads the file now; why it could not (the keys read before still serve). */
  reload(): string | undefined {
    this.stamp = stampOf([this.path]);
    try {
      this.current = this.read();
      return undefined;
    } catch (error) {
      return causeText(error);
    }
  }

  private read(): TicketKeys {
    const fail = (why: string) =>
      new FatalError(`unable to use ticket keys ${this.path}: ${why}`, 111);
    let bytes: Buffer;
    try {
      bytes = readFileSync(osPath(this.path));
    } catch (error) {
      throw fail(causeText(error));
    }
    const keys = ticketKeysOf(bytes);
    if (typeof keys === "string") throw fail(keys);
    return keys;
  }
}
