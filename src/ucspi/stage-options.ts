// A stage's options, parsed once per argv array. Under tcpserver every connection runs the same
// arrays (tcpserver's program, the routes of a tls-sniff parsed once), so parsing them again for
// each connection only made garbage: a tenth of what a plaintext connection through tls-sniff
// and tcpforward allocated.
import { parseOrUsage } from "./errors.ts";

type Parse<T> = (args: string[]) => T;

const byParser = new WeakMap<Parse<object>, WeakMap<readonly string[], object>>();

/** parse(argv without its name), or the options parsed for this very array before. A refused
 * argv is not kept: it throws (a UsageError with the stage's usage line) every time. The options
 * are shared by the connections, so they are frozen. */
export function stageOptions<T extends object>(
  argv: readonly string[],
  usage: string,
  parse: Parse<T>,
): Readonly<T> {
  let known = byParser.get(parse);
  if (!known) {
    known = new WeakMap();
    byParser.set(parse, known);
  }
  const cached = known.get(argv);
  if (cached) return cached as T;
  const options = Object.freeze(parseOrUsage(usage, () => parse(argv.slice(1))));
  known.set(argv, options);
  return options;
}
