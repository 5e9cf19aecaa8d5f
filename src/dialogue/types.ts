// What a protocol's grammar tells starttls-wrapper, one module per protocol (smtp.ts, imap.ts,
// pop3.ts): how to read the client's commands and the server's replies in the snooped
// plaintext phase, where STARTTLS is advertised, what answers the upgrade command and what the
// refusals are. The wrapper's core (src/starttls-wrapper/) knows no protocol.

/** opportunistic: plaintext goes on when the client declines TLS; require: nothing but the
 * protocol's short list of harmless commands before STARTTLS. */
export type Policy = "opportunistic" | "require";

/** How one reply of the server is read and passed on. */
export interface Expect {
  /** true when `line` (a complete line, with its line end) is the reply's last; `lines` are
   * the reply's earlier lines. */
  ends(line: string, lines: readonly string[]): boolean;
  /** The reply as the client gets it (default: as the server sent it). */
  rewrite?(lines: readonly string[]): string;
  /** After this reply the client is where the wrapper does not follow: stop snooping. */
  thenPump?(lines: readonly string[]): boolean;
  /** After this reply the connection ends: pass it on, then close (IMAP PREAUTH refused). */
  thenClose?(lines: readonly string[]): boolean;
}

/** What to do with one complete client line in the snooped phase. */
export type ClientVerdict =
  /** Send it to the server; its reply is read with `expect`. */
  | { kind: "forward"; expect: Expect }
  /** Answer it here, in reply order; the server never sees it. */
  | { kind: "answer"; reply: string; log?: string }
  /** The upgrade command, well formed: `goAhead` commits, `unavailable` when the TLS service
   * cannot be reached, `pipelined` refuses it when bytes follow it. */
  | { kind: "starttls"; goAhead: string; unavailable: string; pipelined: string }
  /** The client declined TLS: send this line and all that follows, and stop snooping. */
  | { kind: "pump" }
  /** Refuse and end the connection. */
  | { kind: "close"; reply: string; log: string };

export interface Dialogue {
  /** The protocol's name in the resume record ("smtp", "lmtp", "imap", "pop3"). */
  readonly protocol: string;
  readonly policy: Policy;
  /** The longest client command line before STARTTLS, line end included. */
  readonly maxLine: number;
  /** The server greets again after STARTTLS (ManageSieve's capabilities): the fresh server's
   * greeting behind TLS is kept, not swallowed. */
  readonly greetsAgainAfterTls?: boolean;
  /** Whether the server's own capability lists offered the upgrade: undefined until one was
   * seen (the protocols that do not tell it say undefined always). False lets tlsd pass what a
   * fresh server says after TLS as it is (the resume record's noUpgrade). */
  serverUpgrade?(): boolean | undefined;
  /** How the server's greeting is read (it may be rewritten: IMAP's capability code). */
  greeting(): Expect;
  /** A complete client line (latin1, with its CRLF). */
  command(line: string): ClientVerdict;
  /** The reply for a client line that breaks the framing (too long, bare LF, NUL). */
  malformed(why: string): string;
  /** What the client gets before the connection ends when time or size limits run out in
   * require mode. */
  closing(why: string): string;
}

/** A grammar for one connection, in a policy. */
export type DialogueFactory = (policy: Policy) => Dialogue;

/** A reply that is one line. */
export const ONE_LINE: Expect = { ends: () => true };
