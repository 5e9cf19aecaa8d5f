// getopt in djb's manner: clustered letters (-HRl0), a value glued or in the next word,
// `--` ends options, and parsing stops at the first word that is not an option, so the rest
// of argv belongs to the next program untouched. Long names (--name, --name=value) too.
import { UsageError } from "../ucspi/errors.ts";

export interface OptionSpec {
  /** Letters that take no value, e.g. "1UXpPhHrRoOdDqQv". */
  flags: string;
  /** Letters that take a value, e.g. "cxBgubltC". */
  values: string;
  /** Long names: `name` (a flag) or `name=` (takes a value). */
  long?: readonly string[];
}

/** One option as given, in order: later ones override earlier ones, as with getopt loops. */
export interface Option {
  name: string;
  value: string;
}

export interface ParsedArgs {
  options: Option[];
  rest: string[];
}

export function getopt(args: readonly string[], spec: OptionSpec): ParsedArgs {
  const options: Option[] = [];
  let i = 0;
  for (; i < args.length; i++) {
    const word = args[i] ?? "";
    if (word === "--") {
      i++;
      break;
    }
    if (word.startsWith("--")) {
      i = parseLong(args, i, spec, options);
      continue;
    }
    if (word.length < 2 || word[0] !== "-") break;
    for (let j = 1; j < word.length; j++) {
      const letter = word[j] ?? "";
      if (spec.flags.includes(letter)) {
        options.push({ name: letter, value: "" });
      } else if (spec.values.includes(letter)) {
        let value = word.slice(j + 1);
        if (value === "") {
          i++;
          if (i >= args.length) throw new UsageError(`option requires an argument -- ${letter}`);
          value = args[i] ?? "";
        }
        options.push({ name: letter, value });
        break;
      } else {
        throw new UsageError(`illegal option -- ${letter}`);
      }
    }
  }
  return { options, rest: args.slice(i) };
}

function parseLong(args: readonly string[], i: number, spec: OptionSpec, out: Option[]): number {
  const word = (args[i] ?? "").slice(2);
  const eq = word.indexOf("=");
  const name = eq < 0 ? word : word.slice(0, eq);
  const long = spec.long ?? [];
  if (long.includes(`${name}=`)) {
    if (eq >= 0) {
      out.push({ name, value: word.slice(eq + 1) });
      return i;
    }
    if (i + 1 >= args.length) throw new UsageError(`option requires an argument -- ${name}`);
    out.push({ name, value: args[i + 1] ?? "" });
    return i + 1;
  }
  if (long.includes(name) && eq < 0) {
    out.push({ name, value: "" });
    return i;
  }
  throw new UsageError(`illegal option -- ${name}`);
}

/** A non-negative decimal, as djb's scan_ulong reads it: leading digits only, else 0. */
export function scanUnsigned(text: string): number {
  const m = /^[0-9]+/.exec(text);
  return m ? Number(m[0]) : 0;
}
