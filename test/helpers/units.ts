// systemd unit files as the tests read them: sections and keys, systemd's word splitting, and
// the specifiers the shipped units use. Only what the shipped units need; anything else is an
// error, so a unit that grows past it is noticed.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

/** A unit file's settings: section → key → every value, in order (comments and blanks out). */
export function parseUnit(file: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of readFileSync(file, "utf8").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    assert.ok(!line.endsWith("\\"), `${file}: continuation lines are not parsed here: ${line}`);
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1] as string, current);
      continue;
    }
    const eq = line.indexOf("=");
    assert.ok(current && eq > 0, `${file}: ${line}`);
    const key = line.slice(0, eq).trim();
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return sections;
}

/** systemd's splitting of a command line or an Environment= value: words, with quotes. */
export function splitWords(value: string): string[] {
  const words: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  for (const m of value.matchAll(re)) words.push(m[1] ?? m[2] ?? m[3] ?? "");
  return words;
}

/** The specifiers the shipped units use: %d (credentials), %S (state root), %i and %f (a
 * template's instance, and the path it stands for), %%. */
export function specifiers(
  value: string,
  map: { d: string; S: string; i?: string | undefined },
): string {
  return value.replace(/%(.)/g, (_, c: string) => {
    if (c === "d") return map.d;
    if (c === "S") return map.S;
    if ((c === "i" || c === "f") && map.i !== undefined)
      return c === "i" ? map.i : unescapedPath(map.i);
    if (c === "%") return "%";
    throw new Error(`specifier %${c} is not emulated by this test: ${value}`);
  });
}

/** systemd's %f: an instance made by `systemd-escape --path`, as the path it stands for. */
function unescapedPath(instance: string): string {
  const path = instance
    .replace(/-/g, "/")
    .replace(/\\x([0-9a-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  return `/${path}`;
}
