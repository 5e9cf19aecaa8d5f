// Bounded line framing for the snooped phase. Client lines must end in CRLF and hold no other
// CR, LF or NUL: the wrapper and the server behind it can then never split the stream
// differently (reference/starttls-protocols.md §1.4). Server lines end at LF.

export type LineResult =
  { kind: "line"; line: string } | { kind: "more" } | { kind: "bad"; why: string };

export class LineBuffer {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly max: number;
  private readonly strict: boolean;

  /** `max`: the longest line, its line end included; `strict`: the client's rules. */
  constructor(max: number, strict: boolean) {
    this.max = max;
    this.strict = strict;
  }

  /** Where pushed bytes are written: `buffer` is always its tail up to `used`, so a chunk is
   * copied in once, into room doubled when it runs out. Joining the whole buffer to every
   * chunk cost its length at each one: a peer sending one byte at a time, quadratic work. */
  private store: Buffer = Buffer.alloc(0);
  private used = 0;

  push(chunk: Buffer): void {
    if (this.buffer.length === 0) {
      this.buffer = this.store = chunk;
      this.used = chunk.length;
      return;
    }
    if (this.store.length - this.used < chunk.length) {
      // A new store, never the old one moved: views handed out of it (takeUpTo) stay as they were.
      const store = Buffer.allocUnsafe(Math.max(4096, 2 * (this.buffer.length + chunk.length)));
      this.buffer.copy(store);
      this.store = store;
      this.used = this.buffer.length;
    }
    chunk.copy(this.store, this.used);
    this.used += chunk.length;
    this.buffer = this.store.subarray(this.used - this.buffer.length - chunk.length, this.used);
  }

  /** The next complete line (latin1, with its line end), or why there is none. */
  next(): LineResult {
    const lf = this.buffer.indexOf(10);
    const end = lf < 0 ? this.buffer.length : lf + 1;
    if (this.strict) {
      // A CR is allowed right before the LF, or as the last byte so far (its LF may follow).
      const crOk = lf < 0 ? this.buffer.length - 1 : lf - 1;
      const bad = this.buffer
        .subarray(0, end)
        .findIndex((b, i) => b === 0 || (b === 13 && i !== crOk));
      if (bad >= 0)
        return {
          kind: "bad",
          why: this.buffer[bad] === 0 ? "NUL in a command line" : "bare CR in a command line",
        };
    }
    if (lf < 0) {
      return this.buffer.length >= this.max
        ? { kind: "bad", why: "line too long" }
        : { kind: "more" };
    }
    if (lf + 1 > this.max) return { kind: "bad", why: "line too long" };
    if (this.strict && (lf === 0 || this.buffer[lf - 1] !== 13))
      return { kind: "bad", why: "bare LF in a command line" };
    const line = this.buffer.toString("latin1", 0, lf + 1);
    this.buffer = this.buffer.subarray(lf + 1);
    return { kind: "line", line };
  }

  /** Up to `n` bytes as they are (an IMAP literal), without line framing. */
  takeUpTo(n: number): Buffer {
    const bytes = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(bytes.length);
    return bytes;
  }

  /** The bytes not taken yet, left where they are. */
  peek(): Buffer {
    return this.buffer;
  }

  /** The bytes after the last line taken, which are the caller's from now on. */
  take(): Buffer {
    const rest = this.buffer;
    this.buffer = Buffer.alloc(0);
    return rest;
  }

  get pending(): number {
    return this.buffer.length;
  }
}
