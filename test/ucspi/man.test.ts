// Man pages (issue 14): the build makes build/man/NAME.1 from each program's page in docs/,
// and groff renders it with the NAME line man(1) and apropos read, and the page's sections;
// and the page reads in an 80- or 72-column terminal (scripts/man-roff.mjs): no line is wider,
// and each option of the Options table starts a line of its own, as man pages list them (the
// tbl tables once overlapped: `-ks1i//-k-2andatory-sni`).
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { optionTables } from "../helpers/doc-tables.ts";
import { ROOT, run } from "../helpers/programs.ts";

const PROGRAMS = Object.keys(
  (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: Record<string, string> })
    .bin,
);

/** The page rendered as man does it for a terminal `width` columns wide, plain ASCII. */
async function render(page: string, width?: number): Promise<string> {
  // -t: a blockquote is tbl input; no hyphenation, no overstriking.
  const lineLength = width === undefined ? [] : [`-rLL=${width}n`];
  const r = await run("groff", ["-t", "-man", "-rHY=0", ...lineLength, "-Tascii", "-P-cbou", page]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** What each row of the page's options tables (first header `option`) starts its line with in
 * the man page, code spans as plain text: `-K ms, --handshake-timeout`; and its default. */
function optionRows(markdown: string): { tag: string; value: string }[] {
  return optionTables(markdown).flatMap(({ header, rows }) => {
    const column = (row: string[], name: string) =>
      (header.includes(name) ? (row[header.indexOf(name)] ?? "") : "").replace(/`/g, "");
    return rows.map((row) => ({
      tag: [column(row, "option"), column(row, "long")].filter(Boolean).join(", "),
      value: column(row, "default"),
    }));
  });
}

/** The lines of the page's code blocks but the Synopsis' (which is filled): shown as written. */
function verbatim(markdown: string): Set<string> {
  const synopsis = /^## Synopsis\n[\s\S]*?(?=^## )/m;
  const blocks = markdown.replace(synopsis, "").matchAll(/^\s*```.*\n([\s\S]*?)^\s*```$/gm);
  return new Set([...blocks].flatMap((block) => (block[1] ?? "").split("\n").map((l) => l.trim())));
}

for (const name of PROGRAMS) {
  test(`man ${name}: rendered by groff, its NAME line and its page's sections`, async () => {
    const page = join(ROOT, "build", "man", `${name}.1`);
    assert.ok(existsSync(page), `${page} was built`);
    const r = { stdout: await render(page) };
    const what = (await run(join(ROOT, "bin", name), ["--help"])).stdout.split("\n")[0] ?? "";
    const expected = what.replace(`${name}: `, `${name} - `);
    // The one line, as man pages have it (the page's opening paragraphs head its Description).
    assert.ok(
      r.stdout.replace(/\s+/g, " ").includes(`NAME ${expected} SYNOPSIS`),
      r.stdout.slice(0, 400),
    );
    const markdown = readFileSync(join(ROOT, "docs", `${name}.md`), "utf8");
    // Each section heads a line, in capitals as man pages have them, but for its code spans
    // (an option's case is its meaning).
    const lines = r.stdout.split("\n");
    for (const heading of markdown.matchAll(/^## (.+)$/gm)) {
      const title = (heading[1] ?? "")
        .split(/(`[^`]*`)/)
        .map((part, k) => (k % 2 === 1 ? part.slice(1, -1) : part.toUpperCase()))
        .join("");
      assert.ok(
        lines.some((line) => line.trimEnd() === title),
        `section ${title}`,
      );
    }
  });
}

for (const name of PROGRAMS) {
  test(`man ${name} at 80 and 72 columns: no wider line, each option at the start of its own`, async () => {
    const markdown = readFileSync(join(ROOT, "docs", `${name}.md`), "utf8");
    const options = optionRows(markdown);
    assert.ok(
      options.length > 0 || !/^\| option \|/m.test(markdown),
      "the options tables are read",
    );
    const asWritten = verbatim(markdown);
    for (const width of [80, 72]) {
      const text = await render(join(ROOT, "build", "man", `${name}.1`), width);
      const lines = text.split("\n");
      // An example's line is shown as written (the pager wraps it); all else is filled.
      const wide = lines.filter((l) => l.length > width && !asWritten.has(l.trim()));
      assert.deepEqual(wide, [], `${name} at ${width} columns: lines wider than ${width}`);
      const flat = text.replace(/\s+/g, " ");
      for (const { tag, value } of options) {
        assert.ok(
          lines.some((l) => l.trimStart() === tag || l.trimStart().startsWith(`${tag} `)),
          `${name} at ${width} columns: no line starts with ${tag}`,
        );
        if (value !== "")
          assert.ok(flat.includes(`${tag} (default: ${value})`), `${tag}'s default`);
      }
    }
  });
}
