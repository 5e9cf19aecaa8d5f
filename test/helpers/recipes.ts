// The shell recipes of README.md and docs/*.md, as a reader copies them: every ```sh block,
// cut into the commands a shell would run (a line; lines joined by a trailing backslash; a
// here-document with its body), comments and blank lines left out. A block written as a
// transcript (`$ command` lines, each followed by its output) gives each command with the
// output the page promises.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export interface Command {
  /** The command as one string (a here-document keeps its lines). */
  text: string;
  /** Run in the background (`&` at its end, taken off `text`). */
  background: boolean;
  /** In a transcript: the output shown under it. */
  output?: string;
}

export interface Block {
  /** Where it is: `docs/tlsd.md:166`. */
  where: string;
  commands: Command[];
}

/** Every ```sh block of README.md, then of docs/*.md in name order. */
export function recipeBlocks(root: string): Block[] {
  const pages = [
    "README.md",
    ...readdirSync(join(root, "docs"))
      .filter((name) => name.endsWith(".md"))
      .sort()
      .map((name) => `docs/${name}`),
  ];
  return pages.flatMap((page) => blocksOf(page, readFileSync(join(root, page), "utf8")));
}

export function blocksOf(page: string, markdown: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== "```sh") continue;
    const start = i + 1;
    const body: string[] = [];
    for (i++; i < lines.length && lines[i] !== "```"; i++) body.push(lines[i] ?? "");
    blocks.push({ where: `${page}:${start}`, commands: commandsOf(body) });
  }
  return blocks;
}

function commandsOf(lines: string[]): Command[] {
  if (lines.some((line) => line.startsWith("$ "))) return transcript(lines);
  const commands: Command[] = [];
  for (let i = 0; i < lines.length; i++) {
    let text = lines[i] ?? "";
    if (text.trim() === "" || text.trimStart().startsWith("#")) continue;
    while (text.endsWith("\\") && i + 1 < lines.length) text = `${text.slice(0, -1)}${lines[++i]}`;
    const heredoc = /<<\s*'?([A-Za-z_]+)'?/.exec(text);
    if (heredoc) {
      const end = heredoc[1];
      while (i + 1 < lines.length && lines[i] !== end) text += `\n${lines[++i] ?? ""}`;
    }
    text = text.replace(/\s+/g, (space) => (space.includes("\n") ? space : " ")).trim();
    const background = !heredoc && /\s&$/.test(text);
    commands.push({ text: background ? text.replace(/\s*&$/, "") : text, background });
  }
  return commands;
}

/** `$ command` lines, each followed by the output it gives, up to the next one: its blank
 * lines kept, but for those at its end (which only set it apart from the next command). */
function transcript(lines: string[]): Command[] {
  const commands: Command[] = [];
  for (const line of lines) {
    if (line.startsWith("$ ")) commands.push({ text: line.slice(2).trim(), background: false });
    else {
      const last = commands.at(-1);
      if (last) last.output = `${last.output ?? ""}${line}\n`;
    }
  }
  for (const command of commands) {
    const output = command.output?.trimEnd();
    if (output) command.output = `${output}\n`;
    else delete command.output;
  }
  return commands;
}
