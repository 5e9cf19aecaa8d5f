// A stop that one side gives and others hear: tcpserver's, at SIGTERM's bound or --drain's, for
// what a connection's chain spawned; a stage's, once it is done with the program it ran
// (starttls-wrapper lets its server go). AbortSignal would do, but its EventTarget costs every
// connection a map, a listener object and the checks of its options (7% of tcpserver's main
// thread for a plain connection, in `perf`); this costs an array, when anything listens.

/** Hears a stop. */
export interface StopSignal {
  /** The stop has come. */
  readonly stopped: boolean;
  /** Calls `fn` at the stop, not if it came before (ask `stopped` first, as of an AbortSignal's
   * `aborted`); returns how to take it back. */
  onStop(fn: () => void): () => void;
}

/** Gives a stop, once. */
export class Stopper implements StopSignal {
  stopped = false;
  private listeners: (() => void)[] | undefined;

  onStop(fn: () => void): () => void {
    if (this.stopped) return () => {};
    (this.listeners ??= []).push(fn);
    return () => {
      const at = this.listeners?.indexOf(fn) ?? -1;
      if (at >= 0) this.listeners?.splice(at, 1);
    };
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    const listeners = this.listeners;
    this.listeners = undefined;
    if (listeners) for (const fn of listeners) fn();
  }
}

/** A stop that comes when either does; no new one when there is only one. */
export function eitherStop(a?: StopSignal, b?: StopSignal): StopSignal | undefined {
  if (!a || !b) return a ?? b;
  const either = new Stopper();
  if (a.stopped || b.stopped) either.stop();
  else {
    const fromA = a.onStop(() => either.stop());
    const fromB = b.onStop(() => either.stop());
    // Once stopped, neither needs to hold on to it.
    either.onStop(() => {
      fromA();
      fromB();
    });
  }
  return either;
}
