// Man pages (issue 14): the build makes build/man/NAME.1 from each program's page in docs/,
// and groff renders it with the NAME line man(1) and apropos read, and the page's sections.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT, run } from "../helpers/programs.ts";

const PROGRAMS = Object.keys(
  (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: Record<string, string> })
    .bin,
);

for (const name of PROGRAMS) {
  test(`man ${name}: rendered by groff, its NAME line and its page's sections`, async () => {
    const page = join(ROOT, "build", "man", `${name}.1`);
    assert.ok(existsSync(page), `${page} was built`);
    // -t: the options tables are tbl input; plain ASCII, no hyphenation, no overstriking.
    const r = await run("groff", ["-t", "-man", "-rHY=0", "-Tascii", "-P-cbou", page]);
    assert.equal(r.code, 0, r.stderr);
    const what = (await run(join(ROOT, "bin", name), ["--help"])).stdout.split("\n")[0] ?? "";
    const expected = what.replace(`${name}: `, `${name} - `);
    assert.ok(r.stdout.replace(/\s+/g, " ").includes(`NAME ${expected}`), r.stdout.slice(0, 400));
    const markdown = readFileSync(join(ROOT, "docs", `${name}.md`), "utf8");
    for (const heading of markdown.matchAll(/^## (.+)$/gm)) {
      const title = (heading[1] ?? "").replace(/`/g, "");
      assert.ok(r.stdout.includes(title), `section ${title}`);
    }
  });
}
