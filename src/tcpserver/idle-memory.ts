// Memory back after a burst, once the server is idle. V8 runs no full garbage collection while
// nothing allocates, so the garbage of the last burst of in-process sessions stays in the old
// generation; and glibc keeps the C heap that OpenSSL's sessions freed. A server that has gone
// quiet collects once and trims (`malloc_trim`), so its idle footprint is its base again.
// A server that still holds connections (IMAP IDLE, XMPP, long TLS sessions) but has accepted
// none for as long does the same, when its heap has grown enough since it last did: the burst's
// garbage is the same garbage, and the held connections then cost only what they keep.
// "Grown" counts what V8 shows (used heap, and the committed heap that V8's own collections
// emptied but kept) and, for what it does not show, the connections served since the last
// release: a session on tlsd's native engine keeps its bytes in C and leaves little garbage,
// yet a burst of them leaves memory that only a release gives back (300 sessions: 4.6 MiB, half
// of it outside the V8 heap's figures, measured).
import { getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

import { native } from "../ucspi/native.ts";

/** How long the server must have had no connection before it releases. */
export const IDLE_RELEASE_MS = 5000;

/** A release while connections are held needs the V8 heap to have grown by this much since
 * the last one, and by half at least: a full collection marks every live object (about
 * 140 ms with 1,000 TLS connections held, measured), so its pause stays in proportion to the
 * garbage it frees, and a server whose live heap is large leaves the work to V8's own. */
export const HELD_RELEASE_GROWTH = 2 << 20;

/** What a connection served since the last release counts for, in bytes of growth: about half
 * of what a release gives back per native engine session after a burst (above). */
export const SERVED_GROWTH = 8 << 10;

export class IdleMemory {
  readonly #isIdle: () => boolean;
  readonly #release: () => void;
  readonly #afterMs: number;
  readonly #grown: (served: number) => boolean;
  #timer: NodeJS.Timeout | undefined;
  // Connections since the last release, when the server last went quiet and when the last
  // connection began: counters and time stamps, so that a connection does not set and clear a
  // timer (at c=1 the server goes quiet after every connection); one timer runs at a time and
  // looks again if it fired early.
  #served = 0;
  #quietSince = 0;
  #busySince = 0;

  constructor(
    isIdle: () => boolean,
    release: () => void = releaseMemory,
    afterMs = IDLE_RELEASE_MS,
    grown: (served: number) => boolean = heapGrown,
  ) {
    this.#isIdle = isIdle;
    this.#release = release;
    this.#afterMs = afterMs;
    this.#grown = grown;
  }

  /** A connection began. */
  busy(): void {
    this.#served++;
    this.#busySince = performance.now();
    if (!this.#timer) this.#wait(this.#afterMs);
  }

  /** No connection is open: release once it has stayed so, if any was served since the last. */
  quiet(): void {
    if (this.#served === 0) return;
    this.#quietSince = performance.now();
    if (!this.#timer) this.#wait(this.#afterMs);
  }

  #wait(ms: number): void {
    this.#timer = setTimeout(() => this.#check(), ms);
    this.#timer.unref();
  }

  #check(): void {
    this.#timer = undefined;
    if (this.#served === 0) return;
    const now = performance.now();
    const idle = this.#isIdle();
    // Idle: since the last connection ended; holding connections: since the last one began.
    const still = now - (idle ? Math.max(this.#quietSince, this.#busySince) : this.#busySince);
    if (still < this.#afterMs) return this.#wait(this.#afterMs - still);
    // Held connections and too little grown: nothing now; the next connection looks again.
    if (!idle && !this.#grown(this.#served)) return;
    this.#served = 0;
    this.#release();
  }
}

// The heap after the last release: what is live (used), and what V8 holds for it (committed).
let heapAfterRelease = heapNow();

function heapNow(): { used: number; committed: number } {
  const h = getHeapStatistics();
  return { used: h.used_heap_size, committed: h.total_heap_size };
}

function heapGrown(served: number): boolean {
  const now = heapNow();
  const used = now.used - heapAfterRelease.used;
  const committed = now.committed - heapAfterRelease.committed;
  const growth = Math.max(used, committed) + served * SERVED_GROWTH;
  return growth >= Math.max(HELD_RELEASE_GROWTH, heapAfterRelease.used / 2);
}

type Collect = (options: { type: "major"; execution: "sync"; flavor: "last-resort" }) => void;
let collect: Collect | undefined;

/** V8's most thorough collection, then the C heap's free pages back to the kernel. */
export function releaseMemory(): void {
  if (!collect) {
    // Node has no other way to ask V8 for a full collection.
    setFlagsFromString("--expose-gc");
    collect = runInNewContext("gc") as Collect;
  }
  // "last-resort" (what V8 does under memory pressure) also gives the old generation's emptied
  // pages back; a regular full collection frees the objects but keeps the pages committed.
  collect({ type: "major", execution: "sync", flavor: "last-resort" });
  native().trimMemory();
  heapAfterRelease = heapNow();
}
