// A duplex stream in front of another one: what the inner stream reads comes out of the front,
// what is written to the front goes to the inner stream. Hooks change the bytes written, how
// the writing side ends and when the reading side ends; everything else passes straight on,
// with backpressure both ways. tlsd uses it to swallow a greeting after a resumed STARTTLS and
// for the close_notify policies of tlsd and tlsc.
import { Duplex } from "node:stream";
import type { Writable } from "node:stream";

export interface FrontHooks {
  /** Bytes written to the front, on their way in: what to pass on (maybe nothing), or an Error
   * that fails the stream. */
  write?: (chunk: Buffer) => Buffer | Error;
  /** Bytes read from the inner stream, on their way out (seen, not changed). */
  read?: (chunk: Buffer) => void;
  /** The front's writer ended: end the inner stream (default: inner.end()), then `done`. */
  final?: (inner: Duplex, done: (error?: Error | null) => void) => void;
  /** The inner stream ended: call `end` when the front's reader should see the end too
   * (default: at once). */
  ended?: (end: () => void) => void;
}

export class FrontStream extends Duplex {
  private readonly inner: Duplex;
  private readonly hooks: FrontHooks;
  /** See detach. */
  private detached = false;

  constructor(inner: Duplex, hooks: FrontHooks = {}) {
    super({ allowHalfOpen: true });
    this.inner = inner;
    this.hooks = hooks;
    inner.on("data", (chunk: Buffer) => {
      hooks.read?.(chunk);
      if (!this.push(chunk)) inner.pause();
    });
    inner.once("end", () => {
      const end = () => this.push(null);
      if (hooks.ended) hooks.ended(end);
      else end();
    });
    inner.on("error", (error: Error) => {
      if (!this.detached) this.destroy(error);
    });
    inner.once("close", () => {
      if (!this.detached && !this.destroyed && !this.readableEnded) this.destroy();
    });
    inner.pause();
  }

  /** The stream a write to the front goes straight on to, inside that write call: the inner
   * one, while the front changes nothing written to it and holds nothing back. */
  straightTo(): Writable | undefined {
    if (this.detached || this.hooks.write || this.writableLength > 0 || this.writableCorked > 0)
      return undefined;
    return this.inner;
  }

  /** Cuts the front loose from the inner stream, which is left to end on its own: what is
   * written to the front from now on is dropped, the front's end is done at once, and the inner
   * stream's errors and close no longer reach it (its writer goes on, unaware). */
  detach(): void {
    this.detached = true;
  }

  override _read(): void {
    this.inner.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (e?: Error | null) => void) {
    if (this.detached) return done();
    const out = this.hooks.write ? this.hooks.write(chunk) : chunk;
    if (out instanceof Error) return done(out);
    if (out.length === 0) return done();
    this.inner.write(out, done);
  }

  override _final(done: (error?: Error | null) => void): void {
    if (this.detached) done();
    else if (this.hooks.final) this.hooks.final(this.inner, done);
    else this.inner.end(done);
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    if (!this.detached && !this.inner.destroyed) this.inner.destroy(error ?? undefined);
    done(error);
  }
}
