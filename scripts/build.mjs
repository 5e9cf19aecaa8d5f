// Builds what the programs run: one bundled file per program (fast start-up when a foreign
// tcpserver spawns us) and the small native addon (accept loop and posix_spawn).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, existsSync, statSync, realpathSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const programs = readdirSync(join(root, "src"))
  .filter((name) => existsSync(join(root, "src", name, "cli.ts")))
  .sort();

// One self-contained file per program: fewer modules to load at start-up, and a program's
// in-process stages (tcpserver → tlsd → ...) are inlined and initialised only when used.
rmSync(join(root, "dist"), { recursive: true, force: true });
await build({
  absWorkingDir: root,
  entryPoints: Object.fromEntries(programs.map((p) => [p, `src/${p}/cli.ts`])),
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  splitting: false,
  format: "esm",
  platform: "node",
  target: "node24",
  // Bundled CommonJS dependencies (pino) need a require of their own inside ESM.
  banner: {
    js: "import { createRequire as __ucspiCreateRequire } from 'node:module'; const require = __ucspiCreateRequire(import.meta.url);",
  },
  logLevel: "warning",
});

const source = join(root, "src/native/ucspi_native.c");
const output = join(root, "build/ucspi_native.node");
const stale =
  process.env.UCSPI_REBUILD === "1" ||
  !existsSync(output) ||
  statSync(output).mtimeMs < statSync(source).mtimeMs;
if (stale) {
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
      source,
      "-o",
      output,
    ],
    { stdio: "inherit" },
  );
}

// The official Node binary (the npm "node" package carries it) ships its headers beside it:
// node_api.h for the addon interface and uv.h for the poll handles, stable across libuv 1.x.
function nodeHeaders() {
  const binary = `node-${process.platform}-${process.arch}`;
  const candidates = [
    join(dirname(realpathSync(process.execPath)), "..", "include", "node"),
    join(root, "node_modules", "node", "node_modules", binary, "include", "node"),
    join(root, "node_modules", binary, "include", "node"),
    "/usr/include/node",
    "/usr/local/include/node",
  ];
  const found = candidates.find((dir) => existsSync(join(dir, "uv.h")));
  if (!found) throw new Error(`build: no Node headers (uv.h) in ${candidates.join(", ")}`);
  return found;
}

// Every bin/ program is a symlink to this launcher (see src/native/launcher.c for why).
const launcherSource = join(root, "src/native/launcher.c");
const launcher = join(root, "build/ucspi-launch");
if (
  process.env.UCSPI_REBUILD === "1" ||
  !existsSync(launcher) ||
  statSync(launcher).mtimeMs < statSync(launcherSource).mtimeMs
) {
  mkdirSync(join(root, "build"), { recursive: true });
  execFileSync(
    process.env.CC ?? "cc",
    ["-O2", "-Wall", "-Werror", launcherSource, "-o", launcher],
    {
      stdio: "inherit",
    },
  );
}
