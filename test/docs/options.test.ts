// Each program's options table (docs/NAME.md, from which `man NAME` is made) against the
// program itself, for every program package.json installs: each option the page lists, short
// and long form, is accepted by the real program, with a value where the page gives it one; and
// the page lists every option the program's parser defines (read from its source: getopt's
// letters and long names, a hand-written parser's `case "-x":` labels, `{ prog... }` blocks),
// and the options of the usage line it prints. A run script written from the page then works,
// and a new option cannot go undocumented. --help, which every program answers (README.md), is
// in no table.
//
// The runs stop once the options are read: each program is given its options and then a
// command line that it refuses for a known reason found after them (no program to run, say),
// so nothing listens, connects or writes. Short forms go in one run and long forms in another
// (a few options exclude each other across the two): two processes a program, tls-keygen six
// (its options depend on the command).
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { optionTables } from "../helpers/doc-tables.ts";
import { ROOT, ours, run } from "../helpers/programs.ts";

const PROGRAMS = Object.keys(
  (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: Record<string, string> })
    .bin,
);

/** One option as a page writes it: `-c limit`, `--keep`, `--plain { prog... }`. */
interface Documented {
  name: string;
  /** It takes a value (a word after it). */
  value: boolean;
  /** It takes a `{ prog... }` block. */
  block: boolean;
}

/** The options a cell names, each in its own code span; other spans (`host port`, `prog...`)
 * are operands. */
function optionsIn(cell: string): Documented[] {
  const found: Documented[] = [];
  for (const span of cell.matchAll(/`([^`]+)`/g)) {
    const [name = "", ...words] = (span[1] ?? "").trim().split(/\s+/);
    if (!/^--?[A-Za-z0-9]/.test(name)) continue;
    const brace = words.indexOf("{");
    found.push({
      name,
      value: (brace < 0 ? words : words.slice(0, brace)).length > 0,
      block: brace >= 0,
    });
  }
  return found;
}

/** The options of the tables in the Options section of docs/NAME.md: those whose header starts
 * `| option |`; a `long` column, where there is one, names the long form of the option beside
 * it (`-Z` / `-z` with `--keep` / `--no-keep`), which takes a value when its short form does. */
function documented(name: string): Documented[] {
  const page = readFileSync(join(ROOT, "docs", `${name}.md`), "utf8");
  const section = /^## Options\n([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(page)?.[1];
  assert.ok(section !== undefined, `docs/${name}.md has an Options section`);
  const found: Documented[] = [];
  for (const { header, rows } of optionTables(section)) {
    const longColumn = header.indexOf("long");
    for (const row of rows) {
      const short = optionsIn(row[0] ?? "");
      const long = longColumn < 0 ? [] : optionsIn(row[longColumn] ?? "");
      if (short.length > 0 && long.length > 0) {
        assert.equal(long.length, short.length, `docs/${name}.md: each long name beside its own option in\n${row.join(" | ")}`);
        long.forEach((form, k) => {
          form.value ||= short[k]?.value ?? false;
          form.block ||= short[k]?.block ?? false;
        });
      }
      found.push(...short, ...long);
    }
  }
  const names = found.map((o) => o.name);
  assert.deepEqual(
    names.filter((n, k) => names.indexOf(n) !== k),
    [],
    `docs/${name}.md lists each option once`,
  );
  return found;
}

/** What the parser says of an option: whether it takes a value, a block (undefined: the
 * source does not say in a form read here). */
interface Defined {
  value?: boolean;
  block?: boolean;
}

/** The words of an array literal (`[ "a", "b=", ...OTHER ]`), or of the const array `expr`
 * names, in `file` or in the file it is imported from. */
function listWords(file: string, expr: string): string[] {
  const text = readFileSync(file, "utf8");
  const literal = /^\[([\s\S]*)\]$/.exec(expr.trim())?.[1];
  if (literal === undefined) {
    const own = new RegExp(`const ${expr.trim()}(?::[^=]+)? = (\\[[\\s\\S]*?\\]);`).exec(text);
    if (own?.[1] !== undefined) return listWords(file, own[1]);
    const from = new RegExp(`import \\{[^}]*\\b${expr.trim()}\\b[^}]*\\} from "([^"]+)"`).exec(
      text,
    )?.[1];
    assert.ok(from !== undefined, `${expr} is neither defined in ${file} nor imported`);
    return listWords(resolve(dirname(file), from), expr);
  }
  return [...literal.matchAll(/"([^"]*)"|\.\.\.([A-Za-z_]\w*)/g)].flatMap((m) =>
    m[1] !== undefined ? [m[1]] : listWords(file, m[2] ?? ""),
  );
}

/** The options the program's parser (src/NAME/options.ts, else its cli.ts) defines. */
function defined(name: string): Map<string, Defined> {
  const options = join(ROOT, "src", name, "options.ts");
  const file = existsSync(options) ? options : join(ROOT, "src", name, "cli.ts");
  const text = readFileSync(file, "utf8");
  const found = new Map<string, Defined>();
  const add = (option: string, what: Defined) =>
    found.set(option, { ...found.get(option), ...what });
  // getopt's spec: letters without a value, letters with one, long names (`name=`: a value).
  const spec =
    /getopt\([^{]*\{\s*flags:\s*"([^"]*)",\s*values:\s*"([^"]*)"(?:,\s*long:\s*([^}]*?))?,?\s*\}/g;
  for (const [, flags = "", values = "", long] of text.matchAll(spec)) {
    for (const letter of flags) add(`-${letter}`, { value: false });
    for (const letter of values) add(`-${letter}`, { value: true });
    for (const word of long === undefined ? [] : listWords(file, long))
      add(`--${word.replace(/=$/, "")}`, { value: word.endsWith("=") });
  }
  // A hand-written parser's labels (tls-sniff): a value when its case reads one, arg(...).
  for (const [, labels = "", body = ""] of text.matchAll(
    /((?:case "-[^"]*":\s*)+)([\s\S]*?)(?=case "|default:)/g,
  ))
    for (const [, option = ""] of labels.matchAll(/case "(-[^"]*)":/g))
      add(option, { value: /\barg\(/.test(body), block: /\bblock\(/.test(body) });
  // `{ prog... }` blocks taken out before getopt reads the rest (tcpforward's --if-plain).
  for (const [, option = ""] of text.matchAll(/\bblock\(\s*\w+,[^,]+,\s*[`"](--?[\w-]+)/g))
    add(option, { block: true });
  return found;
}

/** The options a usage line names: `-c limit`, `--alpn list`, and each letter of `-461UX`. */
function usageOptions(usage: string): string[] {
  return [...usage.matchAll(/(?<=^|[\s[|])(--?[A-Za-z0-9][\w-]*)/g)].flatMap(([, word = ""]) =>
    word.startsWith("--") ? [word] : [...word.slice(1)].map((letter) => `-${letter}`),
  );
}

/** How a program is made to stop once its options are read. */
interface Probe {
  /** Words before the options (tls-keygen's command, which decides the options it takes). */
  head?: (option: string) => string[];
  /** Words after them, refused for a known reason once every option is read. */
  tail: string[];
  /** That refusal on stderr (then the usage line), exit 100. */
  refusal: RegExp;
  /** A valid value for an option that takes one; "1" for the rest. */
  values?: Record<string, string>;
}

/** No program to run: the usage line alone, no message before it. */
const NO_PROGRAM = /^$/;

const PROBES: Record<string, Probe | undefined> = {
  tcpserver: {
    tail: [],
    refusal: NO_PROGRAM,
    values: {
      "-x": "rules.cdb",
      "-B": "hello",
      "-l": "0",
      "-I": "lo",
      "--proxy-from": "127.0.0.0/8",
      "--log": "json",
      "--metrics": "127.0.0.1:9100",
    },
  },
  tcpclient: {
    tail: [],
    refusal: NO_PROGRAM,
    values: { "-i": "127.0.0.1", "-T": "2+58", "-l": "0", "-I": "lo" },
  },
  tlsd: { tail: [], refusal: NO_PROGRAM, values: { "--alpn": "h2", "--engine": "node" } },
  tlsc: {
    // --cert-status is refused beside --no-verify-cert, which the page lists before it: a run
    // of its own.
    head: (option) => (option === "--cert-status" ? ["--verify-cert"] : []),
    tail: [],
    refusal: NO_PROGRAM,
    values: {
      "-k": "example.org",
      "--servername": "example.org",
      "-6": "6",
      "-7": "7",
      "--read-fd": "6",
      "--write-fd": "7",
      "--alpn": "h2",
      "--starttls": "smtp",
      "--local-name": "client.example.org",
    },
  },
  "starttls-wrapper": {
    tail: [],
    refusal: NO_PROGRAM,
    values: { "-p": "smtp", "--protocol": "imap" },
  },
  "tls-sniff": {
    // A route and no default program, which routes need.
    tail: ["--prefix", "HELO", "{", "true", "}"],
    refusal: /^tls-sniff: routes need a default program \(the filter form has none\)\n$/,
    values: { "--prefix": "GET", "--sni": "example.org", "--alpn": "h2" },
  },
  tcpforward: {
    tail: ["example.org"],
    refusal: /^tcpforward: give a host and a port, a UNIX socket's path, or neither, not 'example.org'\n$/,
    values: { "-i": "127.0.0.1", "--source-ports": "1024-2047", "--mark": "0x7e2" },
  },
  "acme-challenge": {
    // Read last: the options before it have all been taken.
    tail: ["-t", "0"],
    refusal: /^acme-challenge: -t: must be more than 0\n$/,
  },
  "tls-keygen": {
    head: (option) =>
      ["-p", "--permit"].includes(option)
        ? ["ca"]
        : ["-k", "--keep"].includes(option)
          ? ["ticket"]
          : ["-u", "--url"].includes(option)
            ? ["ocsp"]
            : ["-R", "--reason"].includes(option)
              ? ["revoke"]
              : ["leaf"],
    // No file names: they are checked once each option is known to go with the command.
    tail: [],
    refusal:
      /^tls-keygen: missing (certfile and keyfile|cacert and cakey|ticketfile|chainfile|certdir and name)\n$/,
    values: {
      "-t": "rsa",
      "--key-type": "rsa",
      "-b": "2048",
      "--rsa-bits": "2048",
      "-n": "example.org",
      "--cn": "example.org",
      "-s": "example.org",
      "--san": "example.org",
      "-p": "example.org",
      "--permit": "example.org",
      "-C": "ca.pem",
      "--ca-cert": "ca.pem",
      "-K": "ca.key",
      "--ca-key": "ca.key",
      "-k": "3",
      "--keep": "3",
      "-u": "http://ocsp.example/",
      "--url": "http://ocsp.example/",
      "-R": "keyCompromise",
      "--reason": "superseded",
    },
  },
  "tls-everywhere": {
    // Checked once every option's value has been.
    tail: ["--table", "254"],
    refusal: /^tls-everywhere: --table 254: that is the kernel's main table\n$/,
    values: {
      "--ports": "25,80",
      "--exclude": "22",
      "--listen": "8999",
      "--state": "/var/lib/tls-everywhere",
      "--metrics": "127.0.0.1:9100",
      "--port": "25",
    },
  },
};

/** The words that give `option` as the page writes it. */
function words(option: Documented, probe: Probe): string[] {
  return [
    option.name,
    ...(option.value ? [probe.values?.[option.name] ?? "1"] : []),
    ...(option.block ? ["{", "true", "}"] : []),
  ];
}

for (const name of PROGRAMS) {
  test(`${name}: docs/${name}.md lists every option its parser defines, and no other`, () => {
    const page = documented(name);
    const parser = defined(name);
    const listed = new Set(page.map((o) => o.name));
    assert.deepEqual(
      {
        "defined, not on the page": [...parser.keys()].filter((o) => !listed.has(o)),
        "on the page, not defined": [...listed].filter((o) => !parser.has(o)),
      },
      { "defined, not on the page": [], "on the page, not defined": [] },
      `docs/${name}.md against src/${name}/`,
    );
    for (const option of page) {
      const { value, block } = parser.get(option.name) ?? {};
      if (value !== undefined)
        assert.equal(option.value, value, `${option.name}: ${value ? "a" : "no"} value`);
      if (block !== undefined)
        assert.equal(option.block, block, `${option.name}: ${block ? "a" : "no"} { prog... }`);
    }
  });

  test(`${name}: every option docs/${name}.md lists is accepted, and its usage line's too`, async () => {
    const page = documented(name);
    const probe = PROBES[name];
    if (!probe) {
      assert.deepEqual(page, [], `${name} has options: PROBES needs a way to stop it`);
      return;
    }
    // One run per head and form (short or long), the options in the page's order.
    const runs = new Map<string, string[]>();
    for (const option of page) {
      const head = probe.head?.(option.name) ?? [];
      const key = [...head, option.name.startsWith("--") ? "long" : "short"].join(" ");
      runs.set(key, [...(runs.get(key) ?? head), ...words(option, probe)]);
    }
    const usages = new Set<string>();
    await Promise.all(
      [...runs.values()].map(async (args) => {
        const r = await run(ours(name), [...args, ...probe.tail], {
          stdio: ["ignore", "pipe", "pipe"],
          env: { PATH: process.env["PATH"] },
          timeoutMs: 15_000,
        });
        const [, message = "", usage = ""] =
          new RegExp(`^((?:.*\\n)*?)${name}: usage: (.*)\\n$`).exec(r.stderr) ?? [];
        assert.deepEqual(
          [r.code, probe.refusal.test(message), usage !== ""],
          [100, true, true],
          `${name} ${[...args, ...probe.tail].join(" ")}\nrefused for another reason:\n${r.stderr}`,
        );
        usages.add(usage);
      }),
    );
    const listed = new Set(page.map((o) => o.name));
    for (const usage of usages)
      for (const option of usageOptions(usage))
        assert.ok(listed.has(option), `${option}, in the usage line ${usage}`);
  });
}
