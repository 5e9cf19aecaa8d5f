// The one fact about timers that several stages need.

/** setTimeout's longest wait (2^31 - 1 ms, about 24.8 days): what "no limit" becomes where a
 * timer must still be set, and the most any limit can be (a longer one fires at once). */
export const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** An option's limit in seconds as a timer's milliseconds: past LONGEST_TIMER_MS Node would
 * fire the timer at once, with a warning of its own on stderr; a wait that long is no limit. */
export function secondsAsTimerMs(seconds: number): number {
  return Math.min(seconds * 1000, LONGEST_TIMER_MS);
}
