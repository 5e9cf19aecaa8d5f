// Which names tlsd may order a certificate for, and how often: jfe learned its names from
// clients, so anyone could make it order (and burn the account's rate limits) for names they
// point at the server. Here a name must be on the list, and orders are rationed.

/** A name on the list: exactly, or one label below a `*.parent` entry. */
export function nameAllowed(patterns: readonly string[], name: string): boolean {
  const dot = name.indexOf(".");
  const parent = dot > 0 ? name.slice(dot + 1) : undefined;
  return patterns.some((p) => p === name || (parent !== undefined && p === `*.${parent}`));
}

/** At most `limit` events in any window of `windowMs`. */
export class RateLimit {
  private readonly times: number[] = [];
  private readonly limit: number;
  private readonly windowMs: number;
  private readonly now: () => number;

  constructor(limit: number, windowMs = 3_600_000, now: () => number = Date.now) {
    this.limit = limit;
    this.windowMs = windowMs;
    this.now = now;
  }

  /** Counts one event if the window has room for it: true; false (and nothing counted) if not. */
  take(): boolean {
    const now = this.now();
    while (this.times.length > 0 && (this.times[0] ?? 0) <= now - this.windowMs) this.times.shift();
    if (this.times.length >= this.limit) return false;
    this.times.push(now);
    return true;
  }
}
