// Which connections tlsd looks at before the handshake (first-bytes.ts). The look costs an
// in-process handshake about 7% of tcpserver's CPU (its first bytes pass through JavaScript),
// so it is not paid by every connection: only by the first one a process serves (every one,
// for a tlsd that is a process of its own), and by those from an address whose handshake failed
// as not TLS a short while ago. A proxy sending PROXY headers to a tlsd without --proxy fails
// every time from the same address: from its second connection on, the log names the cause.

/** How long an address stays suspect after a handshake that was not TLS. */
const SUSPECT_MS = 10 * 60 * 1000;
/** The most addresses remembered (the oldest goes first): a scan of many addresses is bounded. */
const MAX_SUSPECTS = 1024;

export class Suspects {
  /** Address -> until when it is suspect (ms since the epoch), oldest entry first. */
  private readonly until = new Map<string, number>();
  private first = true;

  /** Whether the connection from `address` gets the look. */
  shouldLook(address: string | undefined, now: number): boolean {
    if (this.first) {
      this.first = false;
      return true;
    }
    if (address === undefined) return false;
    const until = this.until.get(address);
    if (until === undefined) return false;
    if (until > now) return true;
    this.until.delete(address);
    return false;
  }

  /** A handshake from `address` failed as not TLS (or its look found a PROXY header). */
  notTls(address: string | undefined, now: number): void {
    if (address === undefined) return;
    this.until.delete(address);
    this.until.set(address, now + SUSPECT_MS);
    if (this.until.size > MAX_SUSPECTS) {
      const oldest = this.until.keys().next();
      if (!oldest.done) this.until.delete(oldest.value);
    }
  }

  /** The look found a TLS record (or anything but a PROXY header) from `address`. */
  cleared(address: string | undefined): void {
    if (address !== undefined) this.until.delete(address);
  }
}
