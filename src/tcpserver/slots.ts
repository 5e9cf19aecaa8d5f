// tcpserver's connection slots: -c connections at most (djb: accepting stops when they are all
// taken, and waiting clients stay in the kernel's backlog) and -C per client address (more
// are accepted and closed at once).
import type { Acceptor } from "../ucspi/native.ts";

export class Slots {
  /** Connections being served. */
  active = 0;
  private readonly perIp = new Map<string, number>();
  private paused = false;
  private closing = false;
  /** How long every slot was taken, in ms (--metrics): the pauses that ended, and when the
   * current one began. */
  private fullMs = 0;
  private fullSince: number | undefined;

  private readonly acceptor: Acceptor;
  readonly limit: number;
  private readonly perIpLimit: number | undefined;

  constructor(acceptor: Acceptor, limit: number, perIpLimit: number | undefined) {
    this.acceptor = acceptor;
    this.limit = limit;
    this.perIpLimit = perIpLimit;
  }

  /** Takes a slot for a connection from `ip`; the count it already has when -C refuses it. */
  take(ip: string): { taken: true } | { taken: false; count: number; limit: number } {
    if (this.perIpLimit !== undefined) {
      const count = this.perIp.get(ip) ?? 0;
      if (count >= this.perIpLimit) return { taken: false, count, limit: this.perIpLimit };
      this.perIp.set(ip, count + 1);
    }
    this.active++;
    this.update();
    return { taken: true };
  }

  give(ip: string): void {
    this.active--;
    if (this.perIpLimit !== undefined) {
      const left = (this.perIp.get(ip) ?? 1) - 1;
      if (left > 0) this.perIp.set(ip, left);
      else this.perIp.delete(ip);
    }
    this.update();
  }

  /** accept() failed (out of fds): a pause, then accepting again if there is room. */
  backOff(ms: number): void {
    this.acceptor.pause();
    setTimeout(() => {
      if (!this.closing && this.active < this.limit) this.acceptor.resume();
    }, ms).unref();
  }

  /** No more accepting, for good. */
  close(): void {
    this.closing = true;
    this.acceptor.close();
  }

  /** Accepting stops while every slot is taken, and starts again when one is free. */
  update(): void {
    const full = this.active >= this.limit;
    if (full && !this.paused) {
      this.acceptor.pause();
      this.fullSince = performance.now();
    }
    if (!full && this.paused) {
      if (!this.closing) this.acceptor.resume();
      this.fullMs += performance.now() - (this.fullSince ?? performance.now());
      this.fullSince = undefined;
    }
    this.paused = full;
  }

  /** Seconds so far during which every slot was taken. */
  fullSeconds(): number {
    const now = this.fullSince === undefined ? 0 : performance.now() - this.fullSince;
    return (this.fullMs + now) / 1000;
  }
}
