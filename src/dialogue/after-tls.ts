// Inside TLS after a STARTTLS hand-over, the server behind is a fresh, plaintext one that was
// told nothing of TLS: one that has STARTTLS of its own (exim) would offer it again, which RFC
// 3207 (4.2) and RFC 2595 (3.1, 4) forbid and which invites a client to try it. tlsd passes the
// server's output through the protocol's filter, which takes the upgrade capability out of its
// capability lists and leaves every other byte as it is: mail text (IMAP literals, POP3
// message bodies, NNTP articles) is never read as a list.
import { withoutStartTls } from "./imap.ts";
import { LineBuffer } from "./lines.ts";
import { keyword, replyOf } from "./smtp.ts";

/** The server's output on its way to the client, and the client's commands on their way to
 * the server (seen, for protocols whose replies depend on the command). */
export interface CapabilityFilter {
  fromServer(chunk: Buffer): Buffer;
  fromClient(chunk: Buffer): void;
}

/** The most POP3 commands followed without their replies. */
const MAX_PENDING = 10_000;

/** The longest line a filter holds back; a longer one passes as it is. */
const MAX_LINE = 64 * 1024;

/** The filter for `protocol`, or none when its server has no upgrade capability to hide. */
export function capabilityFilter(protocol: string): CapabilityFilter | undefined {
  switch (protocol) {
    case "smtp":
    case "lmtp":
      return new SmtpFilter();
    case "imap":
      return new LiteralFilter(withoutStartTls);
    case "sieve":
      // The capabilities the fresh server sends again after STARTTLS, and CAPABILITY replies.
      return new LiteralFilter((line) => (/^"STARTTLS"\r?\n$/i.test(line) ? "" : line));
    case "pop3":
      return new Pop3Filter();
    case "nntp":
      return new NntpFilter();
    default:
      return undefined;
  }
}

const latin1 = (text: string) => Buffer.from(text, "latin1");

/** Server output as lines: each complete one goes to `line`, whose text is passed on; a line
 * longer than MAX_LINE passes as it is, in pieces (`long` hears each, with its end). */
class ServerLines {
  private readonly lines = new LineBuffer(MAX_LINE, false);
  /** Inside a line too long to hold: bytes pass until its LF. */
  private inLongLine = false;

  private readonly line: (text: string) => string;
  private readonly raw: (() => number) | undefined;
  private readonly long: ((piece: Buffer) => void) | undefined;

  /** `line`: a complete line, to the text to pass on; `raw`: how many bytes are to pass
   * without framing now (a literal); `long`: each piece passed without framing. */
  constructor(line: (text: string) => string, raw?: () => number, long?: (piece: Buffer) => void) {
    this.line = line;
    this.raw = raw;
    this.long = long;
  }

  /** The bytes held back (a line not complete yet), to pass on as they are. */
  drain(): Buffer {
    return this.lines.take();
  }

  feed(chunk: Buffer): Buffer {
    this.lines.push(chunk);
    const out: Buffer[] = [];
    for (;;) {
      const rawLeft = this.raw?.() ?? 0;
      if (rawLeft > 0) {
        const bytes = this.lines.takeUpTo(rawLeft);
        if (bytes.length === 0) break;
        out.push(bytes);
        this.long?.(bytes);
        continue;
      }
      if (this.inLongLine) {
        const rest = this.lines.take();
        const lf = rest.indexOf(10);
        const piece = lf < 0 ? rest : rest.subarray(0, lf + 1);
        out.push(piece);
        this.long?.(piece);
        if (lf < 0) break;
        this.inLongLine = false;
        this.lines.push(rest.subarray(lf + 1));
        continue;
      }
      const r = this.lines.next();
      if (r.kind === "more") break;
      if (r.kind === "bad") {
        this.inLongLine = true;
        continue;
      }
      out.push(latin1(this.line(r.line)));
    }
    return out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out);
  }
}

/** SMTP, LMTP: every reply is held until its last line, then passed on without its STARTTLS
 * line (only an EHLO/LHLO reply has keyword lines). */
class SmtpFilter implements CapabilityFilter {
  private reply: string[] = [];
  private held = 0;
  private readonly lines = new ServerLines((line) => this.line(line));

  fromServer(chunk: Buffer): Buffer {
    return this.lines.feed(chunk);
  }

  fromClient(): void {}

  private line(line: string): string {
    this.reply.push(line);
    this.held += line.length;
    if (/^[0-9]{3}-/.test(line) && this.held <= MAX_LINE) return "";
    const reply = this.reply;
    this.reply = [];
    this.held = 0;
    const kept = reply.filter((l, i) => i === 0 || keyword(l) !== "STARTTLS");
    return kept.length === reply.length ? reply.join("") : replyOf(line.slice(0, 3), kept);
  }
}

/** IMAP and ManageSieve: each line through `rewrite` (CAPABILITY lists lose STARTTLS); a
 * literal's bytes ({n} at a line's end) pass as they are. */
class LiteralFilter implements CapabilityFilter {
  private literal = 0;
  /** The end of the long line passing in pieces, to find a literal announced there. */
  private tail = "";
  private readonly lines: ServerLines;

  constructor(rewrite: (line: string) => string) {
    this.lines = new ServerLines(
      (line) => {
        this.announce(line);
        return rewrite(line);
      },
      () => this.literal,
      (piece) => {
        if (this.literal > 0) this.literal -= piece.length;
        else {
          this.tail = (this.tail + piece.toString("latin1")).slice(-32);
          if (this.tail.endsWith("\n")) {
            this.announce(this.tail);
            this.tail = "";
          }
        }
      },
    );
  }

  fromServer(chunk: Buffer): Buffer {
    return this.lines.feed(chunk);
  }

  fromClient(): void {}

  private announce(line: string): void {
    const m = /\{([0-9]+)\}\r?\n$/.exec(line);
    if (m) this.literal = Number(m[1]);
  }
}

/** What a status line of the server means for what follows (see CommandFollower). */
interface Status {
  /** A multi-line body follows: a capability list ("capa") or anything else. */
  body?: "capa" | "other";
  /** The command is not answered yet (a continuation): it stays first in line. */
  pending?: boolean;
  /** The client's next line is a SASL answer, not a command. */
  saslAnswer?: boolean;
  /** The client's next lines are data (an article) up to a "." line. */
  clientData?: boolean;
}

/** Protocols whose multi-line replies can only be told apart by the command they answer
 * (POP3, NNTP): the client's commands are followed in order, and lines of a capability body
 * that match `drop` are taken out; every other body (mail, articles, lists) passes as it is. */
abstract class CommandFollower implements CapabilityFilter {
  /** The commands sent and not answered yet, as `command` names them. */
  private readonly commands: string[] = [];
  private readonly clientLines = new LineBuffer(MAX_LINE, false);
  private saslAnswer = false;
  private clientData = false;
  private body: "none" | "capa" | "other" = "none";
  private readonly lines = new ServerLines((line) => this.line(line));
  /** Lost track (more commands pending than a client pipelines): bytes pass as they are. */
  private lost = false;

  /** The capability line to take out. */
  protected abstract readonly drop: RegExp;
  /** A command line's words: its name in the queue, and whether data follows it at once. */
  protected abstract command(words: string[]): { name: string; data?: boolean };
  /** A status line of the server, answering the command `name` ("" for none). */
  protected abstract status(line: string, name: string): Status;

  fromServer(chunk: Buffer): Buffer {
    if (!this.lost) return this.lines.feed(chunk);
    // What was held back of a line goes first, then everything as it comes.
    const held = this.lines.drain();
    return held.length > 0 ? Buffer.concat([held, chunk]) : chunk;
  }

  fromClient(chunk: Buffer): void {
    if (this.lost) return;
    if (this.commands.length > MAX_PENDING) {
      this.lost = true;
      return;
    }
    this.clientLines.push(chunk);
    for (;;) {
      const r = this.clientLines.next();
      if (r.kind === "more") return;
      if (r.kind === "bad") {
        this.clientLines.take();
        return;
      }
      if (this.clientData) {
        if (/^\.\r?\n$/.test(r.line)) this.clientData = false;
        continue;
      }
      if (this.saslAnswer) {
        this.saslAnswer = false;
        continue;
      }
      const { name, data } = this.command(r.line.trim().split(/\s+/));
      this.commands.push(name);
      if (data) this.clientData = true;
    }
  }

  private line(line: string): string {
    if (this.body !== "none") {
      if (/^\.\r?\n$/.test(line)) this.body = "none";
      else if (this.body === "capa" && this.drop.test(line)) return "";
      return line;
    }
    const name = this.commands.shift() ?? "";
    const status = this.status(line, name);
    if (status.pending) this.commands.unshift(name);
    if (status.saslAnswer) this.saslAnswer = true;
    if (status.clientData) this.clientData = true;
    if (status.body) this.body = status.body;
    return line;
  }
}

/** POP3: STLS leaves the CAPA list; RETR, TOP, LIST and UIDL bodies pass as they are. */
class Pop3Filter extends CommandFollower {
  protected readonly drop = /^STLS\s*$/i;

  protected command(words: string[]) {
    const verb = (words[0] ?? "").toUpperCase();
    const multiLine =
      verb === "CAPA" ||
      verb === "RETR" ||
      verb === "TOP" ||
      ((verb === "LIST" || verb === "UIDL" || verb === "AUTH") && words.length === 1);
    return { name: multiLine ? verb : "" };
  }

  protected status(line: string, name: string): Status {
    // A SASL challenge: the command goes on, and the client answers it next.
    if (line.startsWith("+ ")) return { pending: true, saslAnswer: true };
    if (!line.startsWith("+OK") || name === "") return {};
    return { body: name === "CAPA" ? "capa" : "other" };
  }
}

/** The NNTP codes whose reply has a body (RFC 3977, and RFC 2980's older extensions that
 * servers still answer: 202 LIST EXTENSIONS, 218 XINDEX, 282 XGTITLE, 288 XTHREAD); 211 has one
 * for LISTGROUP only. */
const NNTP_BODIES = new Set([
  ...["100", "101", "215", "220", "221", "222", "224", "225", "230", "231"],
  ...["202", "218", "282", "288"],
]);

/** NNTP: STARTTLS leaves the CAPABILITIES list; articles, lists and overviews pass as they
 * are, and so does an article the client sends (POST, IHAVE after 340/335; TAKETHIS). */
class NntpFilter extends CommandFollower {
  protected readonly drop = /^STARTTLS\s*$/i;

  protected command(words: string[]) {
    const verb = (words[0] ?? "").toUpperCase();
    return { name: verb, data: verb === "TAKETHIS" };
  }

  protected status(line: string, name: string): Status {
    const code = line.slice(0, 3);
    if (code === "383") return { pending: true, saslAnswer: true };
    if (code === "340" || code === "335") return { pending: true, clientData: true };
    if (code === "101" && name === "CAPABILITIES") return { body: "capa" };
    if (NNTP_BODIES.has(code) || (code === "211" && name === "LISTGROUP")) return { body: "other" };
    return {};
  }
}
