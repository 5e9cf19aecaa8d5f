// The plaintext side of a client's STARTTLS dialogue: bounded reads of the server's lines and
// bytes, our writes, and the check that nothing follows the server's go-ahead (a man in the
// middle's injected bytes would otherwise be taken as the first TLS records, or worse, as the
// server's first words over TLS: reference/starttls-attacks.md, response injection).
import type { Duplex } from "node:stream";
import { LineBuffer } from "../dialogue/lines.ts";
import { TagScanner } from "../dialogue/tags.ts";

/** The longest server line we take before TLS (the longest EHLO or CAPABILITY line seen in
 * practice is a few hundred bytes). */
export const MAX_LINE = 8192;

/** Why the upgrade did not happen: `not-offered` may fall back to plaintext when allowed, the
 * others never. */
export type UpgradeFailure = "not-offered" | "refused" | "protocol";

export class UpgradeError extends Error {
  readonly kind: UpgradeFailure;
  constructor(kind: UpgradeFailure, message: string) {
    super(message);
    this.kind = kind;
  }
}

/** A server's words in a log line: printable ASCII in double quotes, no line end, at most
 * 120 characters inside; "(empty)" for none. The quotes show where the words end, so words
 * that end in a space or a colon never look like a line cut short. */
export function quoted(text: string): string {
  const clean = text.replace(/\r?\n$/, "").replace(/[^\x20-\x7e]/g, "?");
  if (clean === "") return "(empty)";
  return `"${clean.length > 120 ? `${clean.slice(0, 117)}...` : clean}"`;
}

export class ServerReader {
  private readonly stream: Duplex;
  private readonly buffer = new LineBuffer(MAX_LINE, false);
  private wake: (() => void) | undefined;
  private ended = false;
  private failure: Error | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.buffer.push(chunk);
    this.stream.pause();
    this.wake?.();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.wake?.();
  };
  private readonly onError = (error: Error) => {
    this.failure = error;
    this.wake?.();
  };

  /** What the program reads first, over TLS or in plaintext (see keep). */
  kept: Buffer = Buffer.alloc(0);
  /** What goes between the TLS session and the program, when the protocol needs a change of
   * the bytes after TLS (MySQL's sequence numbers); see afterTls. */
  wrap: ((stream: Duplex) => Duplex) | undefined;

  constructor(stream: Duplex) {
    this.stream = stream;
    stream.on("data", this.onData);
    stream.on("end", this.onEnd);
    stream.on("error", this.onError);
    stream.pause();
  }

  /** The server's greeting, as the program would have read it: given to the program first. */
  keep(text: string): void {
    this.kept = Buffer.from(text, "latin1");
  }

  /** Over TLS, the program's stream goes through `wrap` (only when TLS is done). */
  afterTls(wrap: (stream: Duplex) => Duplex): void {
    this.wrap = wrap;
  }

  send(data: string | Buffer): void {
    this.stream.write(typeof data === "string" ? Buffer.from(data, "latin1") : data);
  }

  /** The server's next line (latin1, with its line end). */
  async line(): Promise<string> {
    for (;;) {
      const next = this.buffer.next();
      if (next.kind === "line") return next.line;
      if (next.kind === "bad") throw new UpgradeError("protocol", `server sent a ${next.why}`);
      await this.more();
    }
  }

  /** Lines up to and including the one that `ends`. */
  async reply(ends: (line: string) => boolean): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const line = await this.line();
      lines.push(line);
      if (ends(line)) return lines;
      if (lines.length > 1000) throw new UpgradeError("protocol", "server reply too long");
    }
  }

  /** Exactly `n` bytes. */
  async bytes(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n) {
      const part = this.buffer.takeUpTo(n - got);
      if (part.length > 0) {
        parts.push(part);
        got += part.length;
        continue;
      }
      await this.more();
    }
    return Buffer.concat(parts);
  }

  /** Text up to and including the first tag that `ends` (see TagScanner), read as latin1, at
   * most `max` bytes. Each byte is looked at once: the whole text was matched again at every
   * chunk, so a server sending one byte at a time held the CPU until the handshake limit. Only
   * the first `max` are: a tag that ended past them was taken when it came in the chunk that
   * crossed the bound, and was "too long" when that chunk ended before it, so the verdict
   * depended on how the bytes were cut. */
  async untilTag(ends: (tag: string) => boolean, max: number): Promise<string> {
    const tags = new TagScanner();
    for (;;) {
      const bytes = this.buffer.peek().subarray(0, max);
      for (let found = tags.next(bytes); found; found = tags.next(bytes))
        if (ends(found.tag)) return this.buffer.takeUpTo(found.end).toString("latin1");
      if (bytes.length >= max) throw new UpgradeError("protocol", "server reply too long");
      await this.more();
    }
  }

  /** The dialogue is over: the stream is the TLS layer's from now on. Bytes the server sent
   * after its go-ahead are refused, never passed on. */
  finish(): void {
    this.detach();
    if (this.buffer.pending > 0)
      throw new UpgradeError(
        "protocol",
        `server sent ${this.buffer.pending} bytes after its STARTTLS answer, before TLS`,
      );
  }

  /** Plaintext from now on (--plaintext-fallback): what the server sent and we did not read
   * yet goes to the program first. */
  release(): Buffer {
    this.detach();
    return this.buffer.take();
  }

  private detach(): void {
    this.stream.off("data", this.onData);
    this.stream.off("end", this.onEnd);
    this.stream.off("error", this.onError);
    this.stream.pause();
  }

  private more(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended)
      return Promise.reject(new UpgradeError("protocol", "server closed the connection"));
    return new Promise((resolve) => {
      this.wake = () => {
        this.wake = undefined;
        resolve();
      };
      this.stream.resume();
    });
  }
}
