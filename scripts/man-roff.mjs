// What the man pages' roff makes otherwise than marked-man does (marked's --config, in
// scripts/build.mjs), so that `man NAME` reads at 80 columns (and 72). docs/*.md keep their
// tables for the web pages (and test/docs/options.test.ts).
//
// - A table is a list of tagged paragraphs (.TP), as man pages list options, variables and exit
//   codes, in place of marked-man's tbl table, whose columns overlap. The tag is the row's first
//   cell; in an options table (its first header `option`) the `long` column joins it
//   (`-K ms, --handshake-timeout`, the option bold, its value italic) and the `default` column
//   follows it (`(default: 60000)`). The other cells are the paragraph, each under its header's
//   name when there are more than one.
// - The Synopsis' code block is filled, one hanging paragraph a usage line (a line that starts
//   with a blank continues the one before), options bold; a short bracket holding no other
//   bracket is not broken, a long one (`[ -p smtp|lmtp|...|xmpp ]`) may be after a `|`.
// - A link to another page or a source file (`[tlsd](tlsd.md)`) is its text in italics, as a
//   link within the page is, where marked-man printed the path and blank lines around it.
// - A section's heading is in capitals (SYNOPSIS, OPTIONS), its code spans as they are.
// - A code span is shown with its quotes (marked leaves them as &quot; and &#39;, which
//   marked-man prints), and a long one may break after a comma.

/** An option's code span with its value (`-K ms`): the option bold, the value italic. */
const VALUE = /\\fB(\\-(?:(?!\\f)\S)*) ((?:(?!\\f).)+)\\fP/g;

/** A table's roff: one .TP a row, the tag then the text indented under it. */
function table(token) {
  const renderer = this.parser.renderer;
  const inline = (cell) => {
    renderer.jumps = true; // as marked-man's renderer after a break: text trimmed, no newline
    return this.parser.parseInline(cell.tokens).trim();
  };
  const headers = token.header.map((cell) => cell.text.trim().toLowerCase());
  const options = headers[0] === "option";
  const tagged = options ? ["option", "long", "default"] : [headers[0]];
  const textColumns = headers.flatMap((name, k) => (tagged.includes(name) ? [] : [k]));
  const titles = token.header.map(inline);
  const out = [];
  for (const row of token.rows) {
    const cells = row.map(inline);
    const at = (name) => (headers.includes(name) ? cells[headers.indexOf(name)] : "");
    // Broken, if it must be, only before its default.
    const unbroken = (roff) => roff.replace(/ /g, "\\ ");
    const forms = [cells[0], at("long")].filter(Boolean).join(", ");
    const tag = options
      ? unbroken(forms.replace(VALUE, "\\fB$1\\fP \\fI$2\\fP")) +
        (at("default") ? ` ${unbroken(`(default: ${at("default")})`)}` : "")
      : cells[0];
    const text = textColumns
      .filter((k) => cells[k])
      .map((k) => (textColumns.length > 1 ? `\\fI${titles[k]}\\fR: ` : "") + cells[k]);
    out.push(
      ".TP",
      `\\&${tag}`,
      ...text
        .map((line) => `\\&${line}`)
        .join("\n.br\n")
        .split("\n"),
    );
  }
  renderer.jumps = true;
  return `${out.join("\n")}\n`;
}

/** The Synopsis' usage lines, filled: `.TP` with the program's name as the tag, so that a
 * wrapped line goes on under its first option. */
function code(token) {
  if (this.parser.renderer.manSection !== "Synopsis") return false;
  const lines = token.text.replace(/\n\s+/g, " ").split("\n");
  // Not hyphenated (a value's name, `verbosity`, is a word to type); then the man macros' own
  // hyphenation again, which the tagged paragraphs are laid out with.
  const out = [".PD 0", ".ad l", ".nh"];
  for (const line of lines) {
    const [name = "", ...words] = line.trim().split(/\s+/);
    const roff = words
      .join(" ")
      .replace(/\\/g, "\\\\")
      .replace(/-/g, "\\-")
      .replace(/(^| )(\\-\S*)/g, "$1\\fB$2\\fR")
      .replace(/(\S)\|(?=\S)/g, "$1|\\:")
      .replace(/\[ ([^[\]]*) \]/g, (_, inside) =>
        inside.length > 24 ? `[\\ ${inside}\\ ]` : `[\\ ${inside.replace(/ /g, "\\ ")}\\ ]`,
      );
    out.push(`.TP ${name.length + 1}n`, `\\fB${name.replace(/-/g, "\\-")}\\fR`, `\\&${roff}`);
  }
  this.parser.renderer.jumps = true;
  return `${out.join("\n")}\n.PD\n.ad\n.hy \\n[HY]\n`;
}

/** A section's heading in capitals, as man pages have them (its code spans as written: an
 * option's case is its meaning); and the section noted, for `code`. */
function heading(token) {
  if (token.depth !== 2) return false;
  this.parser.renderer.manSection = token.text.trim();
  const upper = (t) =>
    t.type === "text" ? { ...t, text: t.text.toUpperCase(), tokens: t.tokens?.map(upper) } : t;
  this.parser.renderer.jumps = true;
  return `.SH ${this.parser.parseInline(token.tokens.map(upper))}\n`;
}

/** A code span as marked-man renders it, with its quotes, and a place to break after each
 * comma of a long one (groff's \:). */
function codespan(token) {
  const text = token.text.replace(/&quot;/g, '"').replace(/&#39;/g, "'");
  const roff = this.parser.renderer.codespan(text.length > 40 ? text.replace(/,/g, ",\0") : text);
  return roff.replace(/\0/g, "\\:");
}

/** A relative link: its text in italics (marked-man's link renders the rest). */
function link(token) {
  if (/^[a-z][a-z0-9+.-]*:/i.test(token.href)) return false;
  return `\\fI${this.parser.parseInline(token.tokens)}\\fR${token.punctuation ?? ""}`;
}

export default {
  extensions: [
    { name: "table", renderer: table },
    { name: "code", renderer: code },
    { name: "heading", renderer: heading },
    { name: "codespan", renderer: codespan },
    { name: "link", renderer: link },
  ],
};
