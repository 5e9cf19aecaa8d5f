// --metrics: how a connection's program ended, as a label: its exit code ("0" to "255"), or
// the name of the signal that killed it ("SIGKILL"). At most 256 codes and Linux's 64 signals.
import { constants } from "node:os";

let names: Map<number, string> | undefined;

/** `wstatus` is a raw wait status, as tcpserver's `end` lines give it. */
export function statusLabel(wstatus: number): string {
  const signal = wstatus & 0x7f;
  if (signal === 0) return String((wstatus >> 8) & 0xff);
  if (!names) {
    names = new Map();
    // The first name of each number: SIGABRT, not its alias SIGIOT.
    for (const [name, number] of Object.entries(constants.signals))
      if (!names.has(number)) names.set(number, name);
  }
  return names.get(signal) ?? `SIG${signal}`;
}
