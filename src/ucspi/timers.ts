// The one fact about timers that several stages need.

/** setTimeout's longest wait (2^31 - 1 ms, about 24.8 days): what "no limit" becomes where a
 * timer must still be set, and the most any limit can be (a longer one fires at once). */
export const LONGEST_TIMER_MS = 2 ** 31 - 1;
