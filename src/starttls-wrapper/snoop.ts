// The snooped plaintext phase of starttls-wrapper, for any protocol: client lines are read one
// by one and judged by the protocol's grammar (forwarded, answered here, refused, the upgrade
// command, or the end of snooping); server replies are read against what was asked and may be
// rewritten (STARTTLS advertised). Replies reach the client strictly in command order, whether
// the server or the wrapper answers; the upgrade is committed only at its turn, when every
// earlier reply is out and no byte follows it. I/O is the caller's (SnoopIo).
import { LineBuffer } from "../dialogue/lines.ts";
import type { ClientVerdict, Dialogue, Expect } from "../dialogue/types.ts";

export interface SnoopIo {
  toClient(bytes: Buffer): void;
  toServer(bytes: Buffer): void;
  /** The client's bytes go to the server as they come from now on, after `first`. */
  pumpClient(first: Buffer): void;
  /** The server's bytes go to the client as they come from now on, after `first`. */
  pumpServer(first: Buffer): void;
  /** Hold / go on parsing the client's bytes (while an upgrade is pending). */
  pauseClient(): void;
  resumeClient(): void;
  /** The upgrade, at its turn: resolves true once the client is handed over (the go-ahead
   * written, the server let go), false when it is not made now (the TLS service is down, or
   * the pre-TLS limit ran out meanwhile: the snooper tells the client);
   * rejects when the session is to end (the client left, or sent bytes before the go-ahead:
   * the `pipelined` refusal). */
  upgrade(verdict: StarttlsVerdict): Promise<boolean>;
  /** End the connection once what was written is out. */
  close(): void;
  /** One line about an event worth logging (a refusal is an attack signal). */
  warn(what: string): void;
  /** A command or the connection refused because TLS is required first (-r): counted. */
  refused?(): void;
}

export type StarttlsVerdict = Extract<ClientVerdict, { kind: "starttls" }>;

type Slot =
  | { kind: "server"; expect: Expect; lines: string[]; size: number; done: boolean }
  | { kind: "pump"; lines: string[] }
  | { kind: "local"; text: string }
  | { kind: "starttls"; verdict: StarttlsVerdict }
  | { kind: "close"; text: string };

/** The most bytes one reply of the server may take before TLS. */
const MAX_REPLY = 64 * 1024;
const MAX_SERVER_LINE = 16 * 1024;

export type Phase = "snoop" | "upgrading" | "pump" | "tls" | "closed";

export interface SnoopLimits {
  maxRecord: number;
  maxCommands: number;
}

const bytes = (text: string) => Buffer.from(text, "latin1");

export class Snooper {
  phase: Phase = "snoop";
  private readonly dialogue: Dialogue;
  private readonly io: SnoopIo;
  private readonly limits: SnoopLimits;
  private readonly fromClient: LineBuffer;
  private readonly fromServer = new LineBuffer(MAX_SERVER_LINE, false);
  private readonly queue: Slot[] = [];
  /** Client lines are not parsed while an upgrade or an end is pending. */
  private held = false;
  private recorded = 0;
  /** A refused command has been logged (one line a session). */
  private refusalLogged = false;
  private commands = 0;

  constructor(dialogue: Dialogue, io: SnoopIo, limits: SnoopLimits) {
    this.dialogue = dialogue;
    this.io = io;
    this.limits = limits;
    this.fromClient = new LineBuffer(dialogue.maxLine, true);
    this.queue.push({
      kind: "server",
      expect: dialogue.greeting(),
      lines: [],
      size: 0,
      done: false,
    });
  }

  /** Bytes from the client, in the snooped phase. */
  client(chunk: Buffer): void {
    // While an upgrade is pending the client is paused: nothing comes, and nothing that did
    // could be a command.
    if (this.phase !== "snoop") return;
    // A refusal and the end are pending (-r), behind replies still to come: nothing more from
    // this client is read as a command, and none of it is kept (it would grow without bound
    // while a slow server, or one that delays its greeting, has not answered yet).
    if (this.closing) return;
    this.fromClient.push(chunk);
    this.recorded += chunk.length;
    this.parseClient();
    this.flush();
  }

  /** Bytes from the server, in the snooped phase. */
  server(chunk: Buffer): void {
    if (this.phase !== "snoop") {
      // Output of a server being let go never reaches the client (no response injection).
      return;
    }
    this.fromServer.push(chunk);
    for (;;) {
      const r = this.fromServer.next();
      if (r.kind === "more") break;
      if (r.kind === "bad")
        return this.pastBounds(`server reply line over ${MAX_SERVER_LINE} bytes`);
      this.serverLine(r.line);
      if (this.phase !== "snoop") return;
    }
    this.flush();
  }

  /** A limit (time, size) ran out before STARTTLS: plaintext from now on, or the end. A
   * STARTTLS that has not had its go-ahead yet is not upgraded: it waits for its turn behind
   * earlier replies, or for the TLS service's connection, which then is not used (the upgrade
   * resolves false, and this is done then). */
  limit(why: string): void {
    if (this.phase === "upgrading") this.expired = why;
    if (this.phase !== "snoop") return;
    this.held = true;
    if (this.dialogue.policy === "require") {
      this.io.warn(why);
      this.io.refused?.();
      // Now, not after the replies still due: a server that does not answer (or greet) must
      // not hold the session past the limit.
      this.closeAtPending(this.dialogue.closing(why));
    } else {
      // Its answer, in its turn, is "not now" (as when the TLS service is down), and the
      // session goes on in plaintext.
      const at = this.queue.findIndex((s) => s.kind === "starttls");
      const slot = this.queue[at];
      if (slot?.kind === "starttls")
        this.queue[at] = { kind: "local", text: slot.verdict.unavailable };
      this.queue.push({ kind: "pump", lines: [] });
      this.io.pumpClient(this.fromClient.take());
    }
    this.flush();
  }

  /** The limit that ran out while an upgrade was connecting to the TLS service. */
  private expired: string | undefined;

  /** The upgrade is not committed and will not be: as the limit says. */
  get timedOut(): boolean {
    return this.expired !== undefined;
  }

  /** A server reply past the bounds, which the wrapper cannot read through. Opportunistic,
   * with nothing after it (the client waits for this reply only): it goes on as the server
   * sent it, and all after it unread, as after a limit. Otherwise (-r, or more due after it)
   * the replies before it go out, then the protocol's closing words and the end. */
  private pastBounds(why: string): void {
    const at = this.queue.findIndex((s) => (s.kind === "server" && !s.done) || s.kind === "pump");
    const slot = this.queue[at];
    this.io.warn(why);
    this.held = true;
    if (
      this.dialogue.policy === "opportunistic" &&
      slot?.kind === "server" &&
      at === this.queue.length - 1
    ) {
      this.queue[at] = { kind: "pump", lines: slot.lines };
      this.io.pumpClient(this.fromClient.take());
    } else {
      this.closeAtPending(this.dialogue.closing(why));
    }
    this.flush();
  }

  /** The replies complete so far go out, then `text` and the end: what is still due (a reply
   * not complete, and all after it) is dropped. */
  private closeAtPending(text: string): void {
    const at = this.queue.findIndex((s) => (s.kind === "server" && !s.done) || s.kind === "pump");
    this.queue.splice(at < 0 ? this.queue.length : at, Infinity, { kind: "close", text });
  }

  /** What the server sent of a reply that will not be complete (it ended): for the client. */
  serverEnded(): Buffer {
    const partial = this.queue
      .flatMap((s) => (s.kind === "server" || s.kind === "pump" ? s.lines : []))
      .join("");
    this.queue.length = 0;
    return Buffer.concat([bytes(partial), this.fromServer.take()]);
  }

  private parseClient(): void {
    while (!this.held && this.phase === "snoop") {
      const r = this.fromClient.next();
      if (r.kind === "more") return;
      if (r.kind === "bad") {
        if (this.dialogue.policy === "opportunistic") {
          // The server may well take what we cannot frame (qmail-smtpd answers a bare-LF
          // EHLO): the line and all after it go to it untouched, and no STARTTLS can follow.
          this.held = true;
          this.queue.push({ kind: "pump", lines: [] });
          this.io.pumpClient(this.fromClient.take());
          return;
        }
        this.io.warn(r.why);
        this.io.refused?.();
        this.hold({ kind: "close", text: this.dialogue.malformed(r.why) });
        return;
      }
      if (++this.commands > this.limits.maxCommands) {
        this.limit(`more than ${this.limits.maxCommands} commands before STARTTLS`);
        return;
      }
      if (this.recorded > this.limits.maxRecord) {
        this.limit(`more than ${this.limits.maxRecord} bytes before STARTTLS`);
        return;
      }
      const verdict = this.dialogue.command(r.line);
      switch (verdict.kind) {
        case "forward":
          this.io.toServer(bytes(r.line));
          this.queue.push({
            kind: "server",
            expect: verdict.expect,
            lines: [],
            size: 0,
            done: false,
          });
          break;
        case "answer":
          // One line a session for the commands refused under -r (a client that tries AUTH
          // in plaintext is a signal; a hundred lines of it would be noise).
          if (verdict.log && !this.refusalLogged) {
            this.refusalLogged = true;
            this.io.warn(verdict.log);
          }
          // Under -r every answer of ours refuses something (a malformed STARTTLS among them).
          if (this.dialogue.policy === "require") this.io.refused?.();
          this.queue.push({ kind: "local", text: verdict.reply });
          break;
        case "starttls":
          this.io.pauseClient();
          this.hold({ kind: "starttls", verdict });
          return;
        case "close":
          this.io.warn(verdict.log);
          if (this.dialogue.policy === "require") this.io.refused?.();
          this.hold({ kind: "close", text: verdict.reply });
          return;
        case "pump":
          this.held = true;
          this.queue.push({ kind: "pump", lines: [] });
          this.io.pumpClient(Buffer.concat([bytes(r.line), this.fromClient.take()]));
          return;
      }
    }
  }

  private hold(slot: Slot): void {
    this.held = true;
    this.queue.push(slot);
  }

  /** A close is queued: the session ends when its turn comes. */
  private get closing(): boolean {
    return this.queue.some((s) => s.kind === "close");
  }

  private serverLine(line: string): void {
    const slot = this.queue.find(
      (s): s is Extract<Slot, { kind: "server" | "pump" }> =>
        (s.kind === "server" && !s.done) || s.kind === "pump",
    );
    if (!slot) {
      // Nothing asked: a server speaking on its own (421 before closing, an IMAP alert).
      if (this.queue.length === 0) this.io.toClient(bytes(line));
      // Behind an answer of ours it would come out of order: it waits for its turn there.
      else this.queue.push({ kind: "local", text: line });
      return;
    }
    if (slot.kind === "pump") {
      slot.lines.push(line);
      return;
    }
    slot.size += line.length;
    if (slot.size > MAX_REPLY) {
      slot.lines.push(line);
      return this.pastBounds(`server reply over ${MAX_REPLY} bytes`);
    }
    slot.done = slot.expect.ends(line, slot.lines);
    slot.lines.push(line);
  }

  /** Sends what is due, in order, and takes the next step when its turn comes. */
  private flush(): void {
    while (this.phase === "snoop") {
      const head = this.queue[0];
      if (!head) return;
      switch (head.kind) {
        case "local":
          this.io.toClient(bytes(head.text));
          this.queue.shift();
          break;
        case "server": {
          if (!head.done) return;
          this.queue.shift();
          const text = head.expect.rewrite ? head.expect.rewrite(head.lines) : head.lines.join("");
          this.io.toClient(bytes(text));
          if (head.expect.thenClose?.(head.lines)) return this.end();
          if (head.expect.thenPump?.(head.lines)) {
            this.held = true;
            this.io.pumpClient(this.fromClient.take());
            this.queue.unshift({ kind: "pump", lines: [] });
          }
          break;
        }
        case "pump":
          this.phase = "pump";
          this.queue.length = 0;
          this.io.pumpServer(Buffer.concat([bytes(head.lines.join("")), this.fromServer.take()]));
          return;
        case "close":
          this.io.toClient(bytes(head.text));
          return this.end();
        case "starttls":
          return this.upgrade(head.verdict);
      }
    }
  }

  private upgrade(verdict: StarttlsVerdict): void {
    if (this.fromClient.pending > 0) {
      // Bytes behind the upgrade command (CVE-2011-0411): refused, never read as commands.
      this.io.warn("command pipelined after STARTTLS");
      this.io.toClient(bytes(verdict.pipelined));
      return this.end();
    }
    this.phase = "upgrading";
    this.io.upgrade(verdict).then(
      (handed) => {
        if (this.phase !== "upgrading") return;
        if (handed) {
          this.phase = "tls";
          this.queue.length = 0;
          return;
        }
        this.phase = "snoop";
        this.queue.shift();
        // "Not now" (the TLS service is down, or the limit ran out meanwhile), in its turn;
        // when the limit ran out under -r, its closing words instead, and the end.
        if (this.expired === undefined || this.dialogue.policy === "opportunistic")
          this.queue.unshift({ kind: "local", text: verdict.unavailable });
        // The client's held bytes go to the server with the rest, in plaintext (-o).
        if (this.expired !== undefined) return this.limit(this.expired);
        this.held = false;
        this.io.resumeClient();
        this.parseClient();
        this.flush();
      },
      () => this.end(),
    );
  }

  private end(): void {
    this.phase = "closed";
    this.queue.length = 0;
    this.io.close();
  }
}
