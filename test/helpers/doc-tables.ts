// The options tables of the pages in docs/ (`| option | ... |`, a `long` and a `default` column
// on some), as test/docs/options.test.ts and test/ucspi/man.test.ts read them.

/** A table row's cells; `\|` (a `|` inside a cell) kept as `|`. */
export function cells(row: string): string[] {
  return row
    .trim()
    .replace(/^\||\|$/g, "")
    .split(/(?<!\\)\|/)
    .map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

/** The tables in `text` whose first header is `option`: their headers and rows, as cells. */
export function optionTables(text: string): { header: string[]; rows: string[][] }[] {
  const lines = text.split("\n");
  const tables: { header: string[]; rows: string[][] }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const header = cells(lines[i] ?? "");
    if (header[0] !== "option" || !/^\|[-| :]+\|$/.test(lines[i + 1]?.trim() ?? "")) continue;
    const rows: string[][] = [];
    for (i += 2; lines[i]?.startsWith("|"); i++) rows.push(cells(lines[i] ?? ""));
    tables.push({ header, rows });
  }
  return tables;
}
