// node bench/tables.mjs [--check] [--readme FILE] [--results DIR] (npm run bench:tables): writes the README's performance tables
// from bench/results/, so that a figure in the docs is always one a run printed. README.md marks
// each generated table as
//   <!-- bench:NAME -->
//   ...
//   <!-- /bench:NAME -->
// and this script replaces what is between the markers with the newest result for NAME, headed
// by the run's date, rounds and machine (bench/run.mjs records the machine as machine-STAMP.json).
// Parts measured by the shared harness are summarised here from their raw .jsonl (medians over
// rounds, ratios as the median of per-round ratios against each named peer); the parts with a
// script of their own (smtp, postgres, ...) print their own markdown, which is copied.
// The files a table was made from are copied to bench/published/ (committed, unlike results/),
// and only those stay there.
// --check: make the tables from bench/published/ instead and exit 1, naming the blocks, if
// README.md differs (nothing is written): the test suite runs this, so a hand-edited figure fails.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const check = process.argv.includes("--check");
const published = join(root, "bench", "published");
// --results DIR: results from there instead (the test gives it a run stopped part way).
const resultsAt = process.argv.indexOf("--results");
const results =
  resultsAt > 0 ? process.argv[resultsAt + 1] : check ? published : join(root, "bench", "results");
// --readme FILE: another copy of the README (the test checks that an edited figure fails).
const readmeAt = process.argv.indexOf("--readme");
const readme = readmeAt > 0 ? process.argv[readmeAt + 1] : join(root, "README.md");
const used = new Set();

// What each harness part reports: the file's tag and workload, the two measures, the peers the
// ratios are taken against, and how a row is named.
const harness = {
  conn: { file: "idle-conn", rate: "conn/s", cpu: "CPU ms/conn", peers: ["tcpserver"] },
  held: {
    file: "held-conn",
    rate: "conn/s",
    cpu: "CPU ms/conn",
    peers: ["djb-idle", "djb-held-2000"],
  },
  tls: { file: "tls-tls", rate: "hs/s", cpu: "CPU ms/hs", peers: ["haproxy", "hitch"] },
  pq: { file: "pq-tls", rate: "hs/s", cpu: "CPU ms/hs", peers: ["haproxy", "hitch"] },
  workers: { file: "workers-tls", rate: "hs/s", cpu: "CPU ms/hs", peers: ["ts-workers-1"] },
  "tls-held": { file: "tls-held-tls", rate: "hs/s", cpu: "CPU ms/hs", peers: ["ts-tlsd-idle"] },
  bulk: {
    file: "bulk-bulk",
    rate: "MB/s",
    cpu: "CPU s/GiB",
    keys: ["mb_per_s", "server_cpu_s_per_gib"],
    peers: ["stunnel-exec"],
  },
  mem: {
    file: "mem-mem",
    rate: "PSS KiB/conn",
    cpu: "PSS KiB with N held",
    keys: ["pss_kb_per_conn", "pss_kb_total"],
    peers: ["stunnel-exec"],
  },
  "sniff-c1": { file: "sniff-c1-tls", rate: "hs/s", cpu: "CPU ms/hs", peers: ["tlsd"] },
  "sniff-c16": { file: "sniff-c16-tls", rate: "hs/s", cpu: "CPU ms/hs", peers: ["tlsd"] },
  "metrics-c1": { file: "metrics-c1-tls", rate: "hs/s", cpu: "CPU ms/hs", peers: ["no-metrics"] },
  "metrics-c16": { file: "metrics-c16-tls", rate: "hs/s", cpu: "CPU ms/hs", peers: ["no-metrics"] },
};
// Parts that print their own markdown: the newest file whose name matches (and whose text has
// `with`, for the SMTP runs, which differ only in the backend they ran).
const own = {
  "mem-warm": { pattern: /^mem-warm-(\d{8}-\d{6})\.md$/ },
  startup: { pattern: /^startup-(\d{8}-\d{6})\.md$/ },
  smtp: { pattern: /^smtp-(\d{8}-\d{6})\.md$/, with: "same backend (bench/smtp/sink" },
  "smtp-qmail": { pattern: /^smtp-(\d{8}-\d{6})\.md$/, with: "bin/qmail-smtpd)" },
  postgres: { pattern: /^postgres-(\d{8}-\d{6})\.md$/ },
  transparent: { pattern: /^(\d{8}-\d{6})-transparent\.md$/ },
  split: { pattern: /^split-(\d{8}-\d{6})\.md$/ },
};

// Writing, a part with no new result keeps the one published before.
const list = (dir) => (existsSync(dir) ? readdirSync(dir) : []);
const files = [...new Set([...list(results), ...list(published)])].sort();
const pathOf = (f) => (existsSync(join(results, f)) ? join(results, f) : join(published, f));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (v) =>
  v === undefined ? "-" : v >= 100 ? String(Math.round(v)) : String(Number(v.toPrecision(3)));
const stampDate = (stamp) =>
  `${stamp.slice(0, 4)}-${stamp.slice(4, 6)}-${stamp.slice(6, 8)} ${stamp.slice(9, 11)}:${stamp.slice(11, 13)} UTC`;

/** The machine file recorded at or before a result's stamp (a run writes it first). */
function machineLine(stamp) {
  const before = files.filter(
    (f) => /^machine-\d{8}-\d{6}\.json$/.test(f) && f.slice(8, 23) <= stamp,
  );
  if (!before.length) return "machine not recorded";
  used.add(before.at(-1));
  const m = JSON.parse(readFileSync(pathOf(before.at(-1)), "utf8"));
  return `${m.cores} cores (${m.cpu}), Linux ${m.kernel}, ${m.node}, system ${m.systemOpenssl.split(" ").slice(0, 2).join(" ")}; \`node -e 0\` ${m.nodeStartMs} ms`;
}

const rowsOf = (file) =>
  readFileSync(pathOf(file), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));

/** Where a harness run has a hole: a server with no row (not even a failed one) for a variant in
 * a round, as a run stopped part way leaves; undefined when whole. A run stopped exactly
 * between two rounds looks whole, with fewer rounds, and says so in its table's head. */
function holeIn(rows) {
  if (!rows.length) return "no rows at all";
  const rounds = Math.max(...rows.map((r) => r.round)) + 1;
  for (const v of new Set(rows.map((r) => JSON.stringify(r.variant))))
    for (const s of new Set(rows.map((r) => r.spec)))
      for (let round = 0; round < rounds; round++)
        if (!rows.some((r) => r.spec === s && r.round === round && JSON.stringify(r.variant) === v))
          return `${s} has no row for ${v} in round ${round + 1}`;
  return undefined;
}

/** The newest whole run of a harness part, and its rows; each newer one with a hole is named
 * on stderr. */
function newestWhole(part) {
  for (const file of files.filter((f) => f.endsWith(`-${part.file}.jsonl`)).reverse()) {
    const rows = rowsOf(file);
    const hole = holeIn(rows);
    if (!hole) return { file, rows };
    console.error(`bench tables: ${file} left out, a run stopped part way: ${hole}`);
  }
  return undefined;
}

function harnessTable(name, part) {
  const whole = newestWhole(part);
  if (!whole) return undefined;
  const { file } = whole;
  used.add(file);
  const stamp = file.slice(0, 15);
  const rows = whole.rows.filter((r) => !r.error);
  const [rateKey, cpuKey] = part.keys ?? ["rate_per_s", "server_cpu_ms_per_conn"];
  const rounds = Math.max(...rows.map((r) => r.round)) + 1;
  const variants = [...new Set(rows.map((r) => JSON.stringify(r.variant)))];
  const servers = [...new Set(rows.map((r) => r.spec))];
  const lines = [
    `Measured ${stampDate(stamp)}, ${rounds} interleaved round${rounds === 1 ? "" : "s"} (\`${file}\`); ${machineLine(stamp)}.`,
  ];
  for (const v of variants) {
    const vr = rows.filter((r) => JSON.stringify(r.variant) === v);
    const peers = part.peers.filter((p) => vr.some((r) => r.spec === p));
    const label = Object.entries(JSON.parse(v))
      .map(([k, x]) => (k === "c" ? `c=${x}` : k === "key" ? x.toUpperCase() : `${k} ${x}`))
      .join(", ");
    const head = [`${label}: server`, part.rate, part.cpu];
    for (const p of peers) head.push(`÷ ${p}`);
    lines.push("", `| ${head.join(" | ")} |`, `|${"---|".repeat(head.length)}`);
    for (const s of servers) {
      const mine = vr.filter((r) => r.spec === s);
      if (!mine.length) continue;
      const cells = [
        s,
        fmt(median(mine.map((r) => r[rateKey]))),
        fmt(median(mine.map((r) => r[cpuKey]))),
      ];
      for (const p of peers) {
        const ratio = (key) => {
          const per = mine
            .map((r) => [r[key], vr.find((x) => x.spec === p && x.round === r.round)?.[key]])
            .filter(([a, b]) => a && b)
            .map(([a, b]) => a / b);
          return per.length ? median(per).toFixed(2) : "-";
        };
        cells.push(`${ratio(rateKey)} / ${ratio(cpuKey)}`);
      }
      lines.push(`| ${cells.join(" | ")} |`);
    }
  }
  // What each server negotiated (the group matters: post-quantum or not).
  const negotiated = servers
    .map((s) => rows.find((r) => r.spec === s && r.tls))
    .filter(Boolean)
    .map((r) => `${r.spec} ${r.tls_proto} ${r.tls_group}`);
  if (negotiated.length) lines.push("", `Negotiated: ${negotiated.join("; ")}.`);
  lines.push(
    "",
    `Each ratio cell is ${part.rate} ÷ the peer's, then ${part.cpu} ÷ the peer's (median of per-round ratios).`,
  );
  return lines.join("\n");
}

function ownTable({ pattern, with: text }) {
  const file = files
    .filter((f) => pattern.test(f))
    .filter((f) => !text || readFileSync(pathOf(f), "utf8").includes(text))
    .at(-1);
  if (!file) return undefined;
  used.add(file);
  const stamp = pattern.exec(file)[1];
  const body = readFileSync(pathOf(file), "utf8").trim();
  return `Measured ${stampDate(stamp)} (\`${file}\`); ${machineLine(stamp)}.\n\n${body}`;
}

const text = readFileSync(readme, "utf8");
const missing = [];
const changed = [];
const updated = text.replace(
  /<!-- bench:([\w-]+) -->\n[\s\S]*?<!-- \/bench:\1 -->/g,
  (block, name) => {
    const table =
      name in harness
        ? harnessTable(name, harness[name])
        : name in own
          ? ownTable(own[name])
          : null;
    if (table === null) {
      console.error(`bench tables: fatal: README.md has a block for unknown part ${name}`);
      process.exit(100);
    }
    if (table === undefined) {
      missing.push(name);
      return block;
    }

    const next = `<!-- bench:${name} -->\n${table}\n<!-- /bench:${name} -->`;
    if (next !== block) changed.push(name);
    return next;
  },
);
if (missing.length) {
  console.error(`bench tables: no results for ${missing.join(", ")}`);
  process.exit(1);
}
if (check) {
  if (changed.length) {
    console.error(`bench tables: README.md differs from bench/published in ${changed.join(", ")}`);
    process.exit(1);
  }
} else {
  writeFileSync(readme, updated);
  mkdirSync(published, { recursive: true });
  // Only what a table is made from is replaced: a file published by hand and linked from the
  // README (the tlsfuzzer report) stays.
  const madeHere = (f) =>
    /^machine-\d{8}-\d{6}\.json$/.test(f) ||
    Object.values(harness).some((part) => f.endsWith(`-${part.file}.jsonl`)) ||
    Object.values(own).some((part) => part.pattern.test(f));
  for (const f of readdirSync(published))
    if (madeHere(f) && !used.has(f)) rmSync(join(published, f));
  for (const f of used)
    if (pathOf(f) !== join(published, f)) copyFileSync(pathOf(f), join(published, f));
  console.log(
    `bench tables: ${changed.length ? `wrote ${changed.join(", ")}` : "nothing changed"}`,
  );
}
