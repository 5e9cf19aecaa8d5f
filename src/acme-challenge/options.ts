// acme-challenge's argv → options.
import { optionNumber } from "../tls/options.ts";
import { UsageError } from "../ucspi/errors.ts";
import { getopt } from "../cli/getopt.ts";
import { secondsAsTimerMs } from "../ucspi/timers.ts";

export const USAGE = "acme-challenge [ -v verbosity ] [ -t timeout ] [ prog... ]";

export interface ChallengeOptions {
  verbosity: number;
  /** How long a client has to send its request line (ms). */
  timeoutMs: number;
  /** Every other request goes here; empty: they get 404. */
  program: string[];
}

export function parseChallengeArgs(args: readonly string[]): ChallengeOptions {
  const { options, rest } = getopt(args, { flags: "q", values: "vt" });
  const o: ChallengeOptions = { verbosity: 1, timeoutMs: 10_000, program: rest };
  for (const { name, value } of options) {
    if (name === "q") o.verbosity = 0;
    else if (name === "v") o.verbosity = optionNumber(value, name);
    else if (name === "t") {
      o.timeoutMs = secondsAsTimerMs(optionNumber(value, name));
      if (o.timeoutMs <= 0) throw new UsageError("-t: must be more than 0");
    }
  }
  return o;
}
