// Runs a tcprules (djb's or ours) on a rules text in a scratch folder and returns what it left.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { run } from "./programs.ts";

export interface Compiled {
  code: number | null;
  stdout: string;
  /** stderr, bytes as latin1 characters. */
  stderr: string;
  /** The cdb written, or undefined when there is none. */
  cdb: Buffer | undefined;
  /** Whether rules.tmp was left behind. */
  tmpLeft: boolean;
}

/** The rules of reference section 3.9, the file of the observed djb runs. */
export const REFERENCE_LINES: readonly string[] = [
  "# comment",
  "127.0.0.2:deny",
  '127.0.0.1:allow,RELAYCLIENT="",GREETING="hi there"',
  '10.1.2.3-5:allow,X="range"',
  '10.2-3.:allow,X="classrange"',
  '=mail.example.com:allow,X="host"',
  '=.example.com:allow,X="suffix"',
  'joe@127.0.0.1:allow,X="ident"',
  ":deny",
];

/** Lines as one rules file (latin1 bytes, newline after each). */
export function rulesText(lines: readonly string[]): Buffer {
  return Buffer.from(lines.map((line) => `${line}\n`).join(""), "latin1");
}

let counter = 0;

/** Runs `program rules.cdb rules.tmp < rules` in `dir` (new file names each call). */
export async function compile(program: string, rules: Buffer, dir: string): Promise<Compiled> {
  const name = `r${process.pid}-${counter++}`;
  const cdbPath = join(dir, `${name}.cdb`);
  const tmpPath = join(dir, `${name}.tmp`);
  const result = await run(program, [cdbPath, tmpPath], { input: rules });
  const cdb = existsSync(cdbPath) ? readFileSync(cdbPath) : undefined;
  const tmpLeft = existsSync(tmpPath);
  rmSync(cdbPath, { force: true });
  rmSync(tmpPath, { force: true });
  return { code: result.code, stdout: result.stdout, stderr: result.stderr, cdb, tmpLeft };
}
