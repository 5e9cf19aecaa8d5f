// dns-01 (ACME_CHALLENGE=dns-01, ACME_DNS_HOOK) against Debian's pebble, whose validator asks
// pebble-challtestsrv for the TXT record: the site's hook publishes it there through
// challtestsrv's management API, as a real one would through its DNS provider's. Pebble's
// tls-alpn-01 port is one where nothing listens, so a certificate can only come by dns-01.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { Resolver } from "node:dns/promises";
import { join } from "node:path";
import { test } from "node:test";
import { acmeSite, serveAcmeTlsd } from "../helpers/acme-tlsd.ts";
import { makePki } from "../helpers/certs.ts";
import type { Pebble } from "../helpers/pebble.ts";
import { serveZone } from "../helpers/dns-zone.ts";
import { childrenOf, freePort, freeUdpPort } from "../helpers/interop.ts";
import { PATH_WITH_BIN, djb, ours } from "../helpers/programs.ts";
import { waitFor } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";
import { alive } from "../helpers/supervise.ts";
import { sClientVerified, servedPem } from "../helpers/tls-client.ts";

const pki = makePki();
const fallback = pki.server("localhost", ["localhost", "127.0.0.1"]);

/** How the test's hook behaves: an action's exit status; `publish` "late" sets the record two
 * seconds after present has exited (a DNS provider whose API answers before its servers
 * have it), "never" not at all. */
interface HookBehaviour {
  present?: number;
  cleanup?: number;
  publish?: "late" | "never";
  /** Another DNS server's management API (challtestsrv's), where present also publishes the
   * record, two seconds after it has exited. */
  also?: string;
  /** Files a test's DNS servers read the record from (dns-zone.ts): present writes the value
   * to `now` at once, and to `late` two seconds after it has exited. */
  zoneFiles?: { now: string; late?: string };
  /** While this file is there, present publishes and then stays (a provider's slow wait), its
   * pid in `hold`.pid: an order that stays under way. */
  hold?: string;
}

/** A hook in lego's exec form: each call's arguments and ACME_NAME go to `calls`; present
 * sets the TXT record at challtestsrv, cleanup clears it. */
function dnsHook(dir: string, pebble: Pebble, exits: HookBehaviour = {}) {
  const set = `curl -sSf --data-binary "{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}" ${pebble.dnsManagement}/set-txt`;
  const zone = exits.zoneFiles;
  const setAlso = [
    exits.also ? set.replace(pebble.dnsManagement, exits.also) : "true",
    ...(zone?.late ? [`echo "$3" > ${zone.late}`] : []),
  ].join("; ");
  const setNow = zone ? `${set} && echo "$3" > ${zone.now}` : set;
  const publish =
    exits.publish === "never"
      ? "true"
      : exits.publish === "late"
        ? `(sleep 2; ${set}) >/dev/null 2>&1 & true`
        : `${setNow} || exit 9; (sleep 2; ${setAlso}) >/dev/null 2>&1 & true`;
  const calls = join(dir, "calls");
  const hook = join(dir, "dns-hook");
  writeFileSync(
    hook,
    [
      "#!/bin/sh",
      `echo "$# $1 $2 $3 $ACME_NAME" >> ${calls}`,
      'case "$1" in',
      `present) ${publish}; ${exits.hold ? `[ -e ${exits.hold} ] && echo $$ > ${exits.hold}.pid && exec sleep 60;` : ""} exit ${exits.present ?? 0} ;;`,
      `cleanup) curl -sSf --data-binary "{\\"host\\":\\"$2\\"}" ${pebble.dnsManagement}/clear-txt || exit 9; exit ${exits.cleanup ?? 0} ;;`,
      "esac",
      "exit 7",
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  return { hook, calls: () => (existsSync(calls) ? readFileSync(calls, "utf8") : "") };
}

/** pebble (its tls-alpn-01 port a dead one), and `tcpserver` (ours unless said) + tlsd
 * ordering by dns-01; `env` is tlsd's ACME settings. */
async function site(
  exits: HookBehaviour = {},
  env = {},
  validitySeconds?: number,
  more: (pebble: Pebble) => Record<string, string> = () => ({}),
  tcpserver = ours("tcpserver"),
) {
  const dir = scratchDir("acme-dns");
  let calls = () => "";
  let acme: Record<string, string> = {};
  const s = await acmeSite(
    tcpserver,
    (pebble) => {
      const hook = dnsHook(dir, pebble, exits);
      calls = hook.calls;
      acme = { ACME_NAMES: "a.test", ACME_DNS_HOOK: hook.hook, ...env, ...more(pebble) };
      return acme;
    },
    { fallback, deadTlsPort: true, validitySeconds },
  );
  // Every ACME setting of its tlsd, for another tlsd or tls-keygen renew of the same site.
  const acmeEnv = { ...acme, ACME_DIRECTORY: s.pebble.directory, ACME_CAFILE: s.pebble.listenerCa };
  return { ...s, calls, acmeEnv };
}

/** The TXT records challtestsrv serves for `host` now (none: empty). */
async function txt(pebble: Pebble, host: string): Promise<string[]> {
  const resolver = new Resolver({ timeout: 2_000, tries: 1 });
  resolver.setServers([pebble.dns]);
  return (await resolver.resolveTxt(host).catch(() => [])).map((chunks) => chunks.join(""));
}

test("dns-01: ACME_DNS_HOOK publishes the TXT record (lego's exec arguments), the CA validates it, the certificate serves, and the record is removed", async () => {
  const s = await site();
  try {
    const r = await sClientVerified(s.port, "a.test", s.rootFile, { showcerts: true });
    assert.equal(r.code, 0, r.stderr + s.server.log());
    assert.match(r.stdout, /^hello a\.test$/m);
    const installed = new X509Certificate(readFileSync(join(s.cache, "a.test", "fullchain.pem")));
    assert.equal(installed.checkHost("a.test"), "a.test");
    await s.server.waitForLog(/^tlsd: info: acme: a\.test: issued in \d+ ms$/);
    const [present, cleanup, ...more] = s.calls().trim().split("\n");
    assert.deepEqual(more, []);
    // The value is base64url of a SHA-256 digest (RFC 8555 section 8.4): 43 characters.
    const value = /^3 present _acme-challenge\.a\.test\. ([A-Za-z0-9_-]{43}) a\.test$/.exec(
      present ?? "",
    )?.[1];
    assert.ok(value, s.calls());
    assert.equal(cleanup, `3 cleanup _acme-challenge.a.test. ${value} a.test`);
    assert.deepEqual(await txt(s.pebble, "_acme-challenge.a.test"), []);
    // Nothing of the other kinds was set up.
    assert.equal(existsSync(join(s.cache, ".acme", "tls-alpn-01")), false);
    assert.equal(existsSync(join(s.cache, ".acme-http-01")), false);
  } finally {
    await s.stop();
  }
});

test("dns-01: a hook that fails to publish fails the order in one line (the handshake gets the default certificate with ACME_FALLBACK=default), and cleanup still runs", async () => {
  const s = await site({ present: 4 }, { ACME_FALLBACK: "default", ACME_WAIT: "30000" });
  try {
    assert.equal(
      await failedToDefault(s),
      "tlsd: warning: acme: a.test: order failed: ACME_DNS_HOOK did not publish the record: exit 4",
    );
    assert.match(s.calls(), /^3 cleanup _acme-challenge\.a\.test\. /m);
    assert.equal(existsSync(join(s.cache, "a.test")), false);
  } finally {
    await s.stop();
  }
});

test("dns-01: a hook that cannot remove the record is one warning; the certificate is installed and serves", async () => {
  const s = await site({ cleanup: 5 });
  try {
    const r = await sClientVerified(s.port, "a.test", s.rootFile);
    assert.equal(r.code, 0, r.stderr + s.server.log());
    const [line] = await s.server.waitForLog(/^tlsd: warning: acme: a\.test: ACME_DNS_HOOK /);
    assert.equal(
      line,
      "tlsd: warning: acme: a.test: ACME_DNS_HOOK did not remove the record: exit 5",
    );
    await s.server.waitForLog(/^tlsd: info: acme: a\.test: issued in \d+ ms$/);
    assert.doesNotMatch(s.server.log(), /order failed/);
  } finally {
    await s.stop();
  }
});

test("ACME_WILDCARD: the first name below *.w.test orders one certificate for *.w.test (by dns-01, CERTDIR/*.w.test), which then serves every name below it with no order more; a name on the list itself gets its own", async () => {
  const s = await site({}, { ACME_NAMES: "*.w.test a.test", ACME_WILDCARD: "yes" });
  try {
    const ordered = () =>
      s.server
        .log()
        .split("\n")
        .filter((l) => l.startsWith("tlsd: info: acme: ordering a certificate for "));
    for (const name of ["x.w.test", "y.w.test", "z.w.test"]) {
      const r = await sClientVerified(s.port, name, s.rootFile, { showcerts: true });
      assert.equal(r.code, 0, r.stderr + s.server.log());
      assert.match(r.stdout, new RegExp(`^hello ${name.replace(/\./g, "\\.")}$`, "m"));
    }
    assert.deepEqual(ordered(), ["tlsd: info: acme: ordering a certificate for *.w.test"]);
    const leaf = new X509Certificate(readFileSync(join(s.cache, "*.w.test", "fullchain.pem")));
    assert.equal(leaf.subjectAltName, "DNS:*.w.test");
    // The record is the name below the wildcard's; ACME_NAME is the certificate's.
    assert.match(
      s.calls(),
      /^3 present _acme-challenge\.w\.test\. [A-Za-z0-9_-]{43} \*\.w\.test$/m,
    );
    const own = await sClientVerified(s.port, "a.test", s.rootFile);
    assert.equal(own.code, 0, own.stderr + s.server.log());
    assert.deepEqual(ordered(), [
      "tlsd: info: acme: ordering a certificate for *.w.test",
      "tlsd: info: acme: ordering a certificate for a.test",
    ]);
  } finally {
    await s.stop();
  }
});

test("ACME_WILDCARD: a client's name below *.w.test renews the wildcard certificate when it is due, and no name of its own is ordered", async () => {
  // Certificates live 8 s, and renewal is due 8 s before the end: at once.
  const s = await site(
    {},
    { ACME_NAMES: "*.w.test", ACME_WILDCARD: "yes", ACME_RENEW_BEFORE: "8" },
    8,
  );
  try {
    const first = await sClientVerified(s.port, "x.w.test", s.rootFile, { showcerts: true });
    assert.equal(first.code, 0, first.stderr + s.server.log());
    const during = await sClientVerified(s.port, "y.w.test", s.rootFile);
    assert.equal(during.code, 0, during.stderr + s.server.log());
    await s.server.waitForLog(/^tlsd: info: acme: \*\.w\.test: issued in \d+ ms$/, 2, 30_000);
    assert.match(s.server.log(), /^tlsd: info: acme: renewing \*\.w\.test \(expires /m);
    assert.doesNotMatch(s.server.log(), /ordering a certificate for [xy]\.w\.test/);
    const after = await sClientVerified(s.port, "z.w.test", s.rootFile, { showcerts: true });
    assert.equal(after.code, 0, after.stderr + s.server.log());
    const leaf = (out: string) => new X509Certificate(servedPem(out) ?? "");
    assert.notEqual(leaf(after.stdout).serialNumber, leaf(first.stdout).serialNumber);
  } finally {
    await s.stop();
  }
});

type Site = Awaited<ReturnType<typeof site>>;

/** a.test's order failed, and its client got the default certificate (localhost's: the site
 * has ACME_FALLBACK=default): the order's one line. */
async function failedToDefault(s: Site): Promise<string | undefined> {
  const r = await sClientVerified(s.port, "a.test", pki.ca.cert, { verify: "localhost" });
  assert.equal(r.code, 0, r.stderr + s.server.log());
  const [line] = await s.server.waitForLog(/^tlsd: warning: acme: a\.test: order failed: /);
  return line;
}

/** ACME_DNS_WAIT let the order through: the client gets the certificate. Stops the site. */
async function orderedAfterWait(s: Site): Promise<void> {
  try {
    const r = await sClientVerified(s.port, "a.test", s.rootFile);
    assert.equal(r.code, 0, r.stderr + s.server.log());
    await s.server.waitForLog(/^tlsd: info: acme: a\.test: issued in \d+ ms$/);
  } finally {
    await s.stop();
  }
}

/** ACME_DNS_WAIT (`seconds`) ran out: the client gets the default certificate (the site has
 * ACME_FALLBACK=default), and the order's one line names the servers that lacked the record.
 * Stops the site. */
async function waitRanOut(s: Site, lacking: string, seconds: number): Promise<void> {
  try {
    assert.equal(
      await failedToDefault(s),
      `tlsd: warning: acme: a.test: order failed: ACME_DNS_WAIT: ${lacking} did not have the record _acme-challenge.a.test. in ${seconds} s`,
    );
  } finally {
    await s.stop();
  }
}

test("ACME_DNS_WAIT: a record published after the hook has exited (a provider slower than its API) is waited for at ACME_RESOLVER before the CA is told; one never published fails the order in one line when the wait runs out", async () => {
  await orderedAfterWait(
    await site({ publish: "late" }, {}, undefined, (pebble) => ({
      ACME_DNS_WAIT: "30",
      ACME_RESOLVER: pebble.dns,
    })),
  );
  const never = await site(
    { publish: "never" },
    { ACME_FALLBACK: "default" },
    undefined,
    (pebble) => ({ ACME_DNS_WAIT: "2", ACME_RESOLVER: pebble.dns }),
  );
  await waitRanOut(never, never.pebble.dns, 2);
});

/** A site whose hook stays in present (an order under way) until `hold` is removed. */
async function heldSite(tcpserver = ours("tcpserver"), validitySeconds?: number) {
  const hold = join(scratchDir("acme-stop"), "hold");
  writeFileSync(hold, "");
  const s = await site({ hold }, { ACME_WAIT: "60000" }, validitySeconds, undefined, tcpserver);
  return { ...s, hold };
}

/** Waits for the held hook's present (its record published, then it stays): its pid and the
 * record's value. */
async function presentHeld(s: Awaited<ReturnType<typeof heldSite>>, log = () => s.server.log()) {
  const pid = await waitFor(
    () => (existsSync(`${s.hold}.pid`) ? Number(readFileSync(`${s.hold}.pid`, "utf8")) : undefined),
    15_000,
    () => `present never ran: ${s.calls()}${log()}`,
  );
  // The last present's: the held one.
  const presents = [
    ...s.calls().matchAll(/^3 present _acme-challenge\.a\.test\. (\S+) a\.test$/gm),
  ];
  const value = presents.at(-1)?.[1] ?? "";
  assert.deepEqual(await txt(s.pebble, "_acme-challenge.a.test"), [value]);
  return { pid, value };
}

/** What a stop mid-order must leave: the held hook ended, its record removed by cleanup, the
 * claim on the name let go (with why for the tlsds that waited on it), and one line. */
async function assertTakenDown(
  s: Awaited<ReturnType<typeof heldSite>>,
  pid: number,
  value: string,
  log: string,
) {
  // Ended (its sleep had 60 s to go): looked for until it is gone, as its pid answered once
  // (a fresh-clone run of .ci/run) just after tcpserver's exit; a zombie not yet reaped has
  // ended too.
  await waitFor(
    () => (alive(pid) ? undefined : true),
    15_000,
    () => `the held hook (pid ${pid}) still runs`,
  );
  assert.match(
    s.calls(),
    new RegExp(`^3 cleanup _acme-challenge\\.a\\.test\\. ${value} a\\.test$`, "m"),
  );
  assert.deepEqual(await txt(s.pebble, "_acme-challenge.a.test"), []);
  assert.deepEqual(readdirSync(join(s.cache, ".acme", "orders")), []);
  assert.equal(
    readFileSync(join(s.cache, ".acme", "failures", "a.test"), "utf8"),
    "the tlsd that ordered it was stopped\n",
  );
  assert.match(log, /^(tlsd|tls-keygen): warning: acme: a\.test: order abandoned: stopped$/m);
  assert.doesNotMatch(log, /order failed/);
}

test("stopped mid-order (SIGTERM to our tcpserver): the hook still publishing is ended, the record taken down, the claim on the name let go; the next tcpserver of the CERTDIR orders it at once", async () => {
  const s = await heldSite();
  let next: RunningServer | undefined;
  try {
    const waiting = sClientVerified(s.port, "a.test", s.rootFile);
    const { pid, value } = await presentHeld(s);
    const end = await s.server.stop();
    assert.equal(end.code, 0, s.server.log());
    assert.notEqual((await waiting).code, 0);
    await assertTakenDown(s, pid, value, s.server.log());
    // Before, the claim stayed fresh for ten minutes, and this tcpserver's clients waited on it.
    rmSync(s.hold);
    next = await serveAcmeTlsd(ours("tcpserver"), await freePort(), s.cache, s.acmeEnv, {
      fallback,
    });
    const r = await sClientVerified(next.port, "a.test", s.rootFile);
    assert.equal(r.code, 0, r.stderr + next.log());
    assert.doesNotMatch(next.log(), /being ordered by another tlsd/);
  } finally {
    await next?.stop();
    await s.stop();
  }
});

test("stopped mid-order (SIGTERM to a tlsd of djb's tcpserver, as a supervisor's stop of the whole group sends it): the same, and the tlsd ends by the signal", async () => {
  const s = await heldSite(djb("tcpserver"));
  try {
    const waiting = sClientVerified(s.port, "a.test", s.rootFile);
    const { pid, value } = await presentHeld(s);
    const tcpserver = s.server.child.pid ?? 0;
    const [tlsd, ...others] = childrenOf(tcpserver);
    assert.ok(tlsd && others.length === 0, JSON.stringify(childrenOf(tcpserver)));
    process.kill(tlsd.pid, "SIGTERM");
    assert.notEqual((await waiting).code, 0);
    // djb's tcpserver -v says how its child ended: by signal 15, as without the handler.
    await s.server.waitForLog(new RegExp(`^tcpserver: end ${tlsd.pid} status 15$`));
    await assertTakenDown(s, pid, value, s.server.log());
  } finally {
    await s.stop();
  }
});

test("tls-keygen renew stopped mid-order (a timer's unit stopped): the same, and it ends by the signal", async () => {
  // Certificates live an hour here, and are due an hour before their end: at once.
  const s = await heldSite(ours("tcpserver"), 3600);
  try {
    rmSync(s.hold);
    const first = await sClientVerified(s.port, "a.test", s.rootFile);
    assert.equal(first.code, 0, first.stderr + s.server.log());
    writeFileSync(s.hold, "");
    const renew = spawn(ours("tls-keygen"), ["renew", s.cache], {
      env: { ...process.env, PATH: PATH_WITH_BIN, ...s.acmeEnv, ACME_RENEW_BEFORE: "3600" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let log = "";
    renew.stderr.setEncoding("utf8").on("data", (t: string) => (log += t));
    const ended = new Promise<NodeJS.Signals | null>((resolve) =>
      renew.on("exit", (_code, signal) => resolve(signal)),
    );
    const { pid, value } = await presentHeld(s, () => log);
    renew.kill("SIGTERM");
    assert.equal(await ended, "SIGTERM", log);
    await assertTakenDown(s, pid, value, log);
  } finally {
    await s.stop();
  }
});

/** The process among `tcpserver`'s children that `pid` descends from. */
function childAbove(tcpserver: number, pid: number): number {
  let at = pid;
  for (let i = 0; i < 64; i++) {
    const stat = readFileSync(`/proc/${at}/stat`, "latin1");
    const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (parent === tcpserver) return at;
    at = parent;
  }
  throw new Error(`${pid} does not descend from ${tcpserver}`);
}

test("killed outright mid-order (SIGKILL to a tlsd of djb's tcpserver): the tlsd that waited on its order sees at once that it is gone, removes the record the killed order published, orders the name itself, and its client gets the certificate", async () => {
  const s = await heldSite(djb("tcpserver"));
  let held = 0;
  try {
    const first = sClientVerified(s.port, "a.test", s.rootFile);
    const killed = await presentHeld(s);
    held = killed.pid;
    const waiting = sClientVerified(s.port, "a.test", s.rootFile);
    await s.server.waitForLog(
      /^tlsd: info: acme: a\.test: being ordered by another tlsd; waiting for it$/,
    );
    // Found while the order is held: once it goes on, the held process may be gone or have a
    // new parent (a walk up from it once reached pid 0).
    const victim = childAbove(s.server.child.pid ?? 0, held);
    rmSync(s.hold);
    process.kill(victim, "SIGKILL");
    assert.notEqual((await first).code, 0);
    const r = await waiting;
    assert.equal(r.code, 0, r.stderr + s.server.log());
    assert.match(
      s.server.log(),
      /^tlsd: warning: acme: a\.test: the tlsd that was ordering it is gone$/m,
    );
    await s.server.waitForLog(/^tlsd: info: acme: a\.test: issued in \d+ ms$/);
    // Before, the claim stayed fresh for ten minutes after its owner was killed.
    assert.deepEqual(readdirSync(join(s.cache, ".acme", "orders")), []);
    // The record the killed order published was removed before the new order began.
    const calls = s.calls().trim().split("\n");
    const cleanup = `3 cleanup _acme-challenge.a.test. ${killed.value} a.test`;
    assert.ok(calls.indexOf(cleanup) > 0, s.calls());
    assert.ok(
      calls.indexOf(cleanup) < calls.findLastIndex((c) => c.includes(" present ")),
      s.calls(),
    );
    assert.match(
      s.server.log(),
      /^tlsd: info: acme: a\.test: removed the record an order killed before its end left$/m,
    );
    assert.deepEqual(readdirSync(join(s.cache, ".acme", "dns-01")), []);
  } finally {
    if (held) spawn("kill", ["-KILL", String(held)], { stdio: "ignore" });
    await s.stop();
  }
});

/** A second DNS server for the zone: pebble-challtestsrv on free ports, answering only what its
 * management API is told. */
async function secondDns() {
  const [dns, management] = await Promise.all([freePort(), freePort()]);
  const child = spawn(
    "pebble-challtestsrv",
    [
      ...["-dns01", `127.0.0.1:${dns}`, "-management", `127.0.0.1:${management}`],
      ...["-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv6", ""],
    ],
    { stdio: "ignore" },
  );
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([`127.0.0.1:${dns}`]);
  // Answering: an A record of any name (its default address).
  for (let i = 0; i < 50 && (await resolver.resolve4("up.test").catch(() => [])).length === 0; i++)
    await new Promise((resolve) => setTimeout(resolve, 100));
  return {
    server: `127.0.0.1:${dns}`,
    management: `http://127.0.0.1:${management}`,
    stop: () => child.kill("SIGKILL"),
  };
}

test("ACME_DNS_WAIT where the zone's servers cannot be found (challtestsrv answers no SOA): each server of ACME_RESOLVER is asked, and the CA told once each has the record; one that never has it fails the order, the line naming that one alone", async () => {
  const other = await secondDns();
  try {
    await orderedAfterWait(
      await site({ also: other.management }, {}, undefined, (pebble) => ({
        ACME_DNS_WAIT: "30",
        ACME_RESOLVER: `${pebble.dns} ${other.server}`,
      })),
    );
    const one = await site({}, { ACME_FALLBACK: "default" }, undefined, (pebble) => ({
      ACME_DNS_WAIT: "2",
      ACME_RESOLVER: `${pebble.dns},${other.server}`,
    }));
    await waitRanOut(one, other.server, 2);
  } finally {
    other.stop();
  }
});

test("ACME_DNS_WAIT finds the zone's own servers (a CNAME followed, its SOA, its NS and their addresses, through ACME_RESOLVER) and tells the CA once each has the record; one that never has it fails the order, the line naming that server", async () => {
  const dir = scratchDir("acme-zone");
  const file = (ns: string) => join(dir, `${ns}.txt`);
  // The record's name, and where a CNAME sends it (acme-dns's way).
  const recordNames = ["_acme-challenge.a.test", "a.acme.test"];
  const txtOf = (ns: string) => (name: string) =>
    recordNames.includes(name) && existsSync(file(ns))
      ? [readFileSync(file(ns), "latin1").trim()]
      : [];
  // The resolver knows the zone and its servers, not the record: asked for it, the wait would
  // never end.
  const [port, aliasPort] = [await freeUdpPort(), await freeUdpPort()];
  const servers = [
    await serveZone("127.0.0.1", port, {
      soa: ["a.test"],
      ns: { "a.test": ["ns1.a.test", "ns2.a.test"] },
      a: { "ns1.a.test": ["127.0.0.2"], "ns2.a.test": ["127.0.0.3"] },
    }),
    // Another view: the record's name a CNAME into the zone acme.test, served by 127.0.0.3.
    await serveZone("127.0.0.1", aliasPort, {
      cname: { "_acme-challenge.a.test": "a.acme.test" },
      soa: ["acme.test"],
      ns: { "acme.test": ["ns.acme.test"] },
      a: { "ns.acme.test": ["127.0.0.3"] },
    }),
    await serveZone("127.0.0.2", 53, { soa: ["a.test"], txt: txtOf("ns1") }),
    await serveZone("127.0.0.3", 53, { soa: ["a.test"], txt: txtOf("ns2") }),
  ];
  try {
    await orderedAfterWait(
      await site(
        { zoneFiles: { now: file("ns1"), late: file("ns2") } },
        { ACME_DNS_WAIT: "30", ACME_RESOLVER: `127.0.0.1:${port}` },
      ),
    );
    rmSync(file("ns1"));
    rmSync(file("ns2"));
    const one = await site(
      { zoneFiles: { now: file("ns1") } },
      { ACME_FALLBACK: "default", ACME_DNS_WAIT: "2", ACME_RESOLVER: `127.0.0.1:${port}` },
    );
    await waitRanOut(one, "127.0.0.3", 2);
    // Followed through the CNAME: the record is looked for under the name it points to, at
    // that zone's server, which has it at once.
    rmSync(file("ns1"));
    await orderedAfterWait(
      await site(
        { zoneFiles: { now: file("ns2") } },
        { ACME_DNS_WAIT: "10", ACME_RESOLVER: `127.0.0.1:${aliasPort}` },
      ),
    );
  } finally {
    for (const server of servers) server.stop();
  }
});
