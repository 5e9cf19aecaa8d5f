// A command line inside another's, between `{` and `}` as separate words (execline's blocks,
// which a shell passes through unquoted): tls-sniff's routes, tls-everywhere's --port chains.
import { UsageError } from "../ucspi/errors.ts";

/** The words of the `{ ... }` block that starts at args[start], nested blocks kept whole, and
 * the index of its closing `}`. */
export function block(args: readonly string[], start: number, option: string): [string[], number] {
  if (args[start] !== "{") throw new UsageError(`${option}: expected '{ prog... }'`);
  let depth = 0;
  for (let i = start; i < args.length; i++) {
    if (args[i] === "{") depth++;
    else if (args[i] === "}" && --depth === 0) {
      const words = args.slice(start + 1, i);
      if (words.length === 0) throw new UsageError(`${option}: empty { }`);
      return [words, i];
    }
  }
  throw new UsageError(`${option}: '{' without its '}'`);
}
