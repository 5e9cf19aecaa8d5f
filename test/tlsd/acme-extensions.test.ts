// ACME beyond RFC 8555's core, against Debian's pebble (2.4): renewal information (ARI, RFC
// 9773), certificate profiles, external account binding, key types, the site's hook after each
// certificate, and the account a restarted tlsd finds. Pebble 2.4 has neither ARI nor profiles, so it runs behind a front of the test's: an
// HTTPS reverse proxy that passes every request to pebble as it came (its Host kept, so
// pebble's URLs and its JWS checks name the front), adds `renewalInfo` and `meta.profiles` to
// the directory, answers the renewalInfo resource as the test says, and reads the payload of
// each new account and order.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { X509Certificate, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer as createHttpsServer, request as httpsRequest } from "node:https";
import { join } from "node:path";
import { test } from "node:test";
import { serveAcmeTlsd } from "../helpers/acme-tlsd.ts";
import { makePki } from "../helpers/certs.ts";
import { freePort } from "../helpers/interop.ts";
import { startPebble } from "../helpers/pebble.ts";
import type { Pebble } from "../helpers/pebble.ts";
import { ours } from "../helpers/programs.ts";
import type { RunningServer } from "../helpers/server.ts";
import { sClientVerified, servedPem } from "../helpers/tls-client.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const fallback = pki.server("localhost", ["localhost", "127.0.0.1"]);
const frontCert = pki.server("127.0.0.1", ["127.0.0.1"]);

interface Answer {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

interface Front {
  directory: string;
  /** The certificate identifiers the renewalInfo resource was asked for. */
  asked: string[];
  /** The payloads of the new orders. */
  orders: Array<Record<string, unknown>>;
  /** The payloads of the new accounts (with termsOfServiceAgreed: a registration, not a
   * look-up). */
  accounts: Array<Record<string, unknown>>;
  /** Passes what follows to another pebble (whose paths are the same). */
  retarget(other: Pebble): void;
  close(): void;
}

async function startFront(
  pebble: Pebble,
  options: { renewalInfo?: (id: string) => Answer; profiles?: Record<string, string> },
): Promise<Front> {
  let pebbleUrl = new URL(pebble.directory);
  let ca = readFileSync(pebble.listenerCa);
  const asked: string[] = [];
  const orders: Array<Record<string, unknown>> = [];
  const accounts: Array<Record<string, unknown>> = [];
  let newOrderPath = "";
  let newAccountPath = "";
  const pass = (
    req: IncomingMessage,
    body: Buffer,
    res: ServerResponse,
    edit?: (b: Buffer) => Buffer,
  ) => {
    const out = httpsRequest(
      {
        host: pebbleUrl.hostname,
        port: pebbleUrl.port,
        path: req.url,
        method: req.method,
        headers: req.headers,
        ca,
      },
      (answer) => {
        const parts: Buffer[] = [];
        answer.on("data", (b: Buffer) => parts.push(b));
        answer.on("end", () => {
          const whole = edit ? edit(Buffer.concat(parts)) : Buffer.concat(parts);
          // The body goes whole, in one piece: not chunked as pebble sent it.
          const headers = { ...answer.headers, "content-length": String(whole.length) };
          delete headers["transfer-encoding"];
          res.writeHead(answer.statusCode ?? 502, headers);
          res.end(whole);
        });
      },
    );
    out.on("error", () => res.destroy());
    out.end(body);
  };
  const server = createHttpsServer(
    { cert: readFileSync(frontCert.cert), key: readFileSync(frontCert.key) },
    (req, res) => {
      const parts: Buffer[] = [];
      req.on("data", (b: Buffer) => parts.push(b));
      req.on("end", () => {
        const body = Buffer.concat(parts);
        const path = req.url ?? "";
        if (path.startsWith("/ari/") && options.renewalInfo) {
          const id = path.slice("/ari/".length);
          asked.push(id);
          const answer = options.renewalInfo(id);
          res.writeHead(answer.status, { "Content-Type": "application/json", ...answer.headers });
          res.end(answer.body);
          return;
        }
        if (req.method === "POST" && (path === newOrderPath || path === newAccountPath)) {
          const jws = JSON.parse(body.toString()) as { payload: string };
          const payload = JSON.parse(Buffer.from(jws.payload, "base64url").toString());
          if (path === newOrderPath) orders.push(payload);
          else if (payload.termsOfServiceAgreed) accounts.push(payload);
        }
        if (path === pebbleUrl.pathname) {
          pass(req, body, res, (b) => {
            const directory = JSON.parse(b.toString()) as Record<string, unknown>;
            newOrderPath = new URL(String(directory["newOrder"])).pathname;
            newAccountPath = new URL(String(directory["newAccount"])).pathname;
            if (options.renewalInfo) directory["renewalInfo"] = `https://${req.headers.host}/ari`;
            if (options.profiles)
              directory["meta"] = {
                ...(directory["meta"] as object),
                profiles: options.profiles,
              };
            return Buffer.from(JSON.stringify(directory));
          });
          return;
        }
        pass(req, body, res);
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    directory: `https://127.0.0.1:${port}${pebbleUrl.pathname}`,
    asked,
    orders,
    accounts,
    retarget: (other: Pebble) => {
      pebbleUrl = new URL(other.directory);
      ca = readFileSync(other.listenerCa);
    },
    close: () => server.close(),
  };
}

interface Site {
  front: Front;
  server: RunningServer;
  port: number;
  cache: string;
  rootFile: string;
  /** A new tcpserver and tlsd in place of the first, on the same CERTDIR. */
  restart(): Promise<void>;
  /** A new pebble in place of the first behind the same front: a CA reset, which knows no
   * account and has a root of its own. */
  resetCa(): Promise<void>;
  stop(): Promise<void>;
}

/** pebble behind a front, and our tcpserver + tlsd (CERTDIR of its own) on the port pebble
 * validates on. */
async function site(
  front: Parameters<typeof startFront>[1],
  env: Record<string, string> = {},
  eab?: Record<string, string>,
): Promise<Site> {
  const port = await freePort();
  let pebble = await startPebble({ tlsPort: port, eab });
  const f = await startFront(pebble, front);
  const cache = scratchDir("ari");
  const cas = join(cache, ".cas.pem");
  writeFileSync(
    cas,
    readFileSync(pebble.listenerCa, "latin1") + readFileSync(pki.ca.cert, "latin1"),
  );
  const tlsd = () =>
    serveAcmeTlsd(
      ours("tcpserver"),
      port,
      cache,
      {
        ACME_DIRECTORY: f.directory,
        ACME_CAFILE: cas,
        ACME_NAMES: "a.test",
        ACME_WAIT: "20000",
        ...env,
      },
      { fallback },
    );
  let server = await tlsd().catch((error: unknown) => {
    f.close();
    pebble.stop();
    throw error;
  });
  const rootFile = join(cache, ".pebble-root.pem");
  writeFileSync(rootFile, await pebble.root());
  return {
    front: f,
    get server() {
      return server;
    },
    port,
    cache,
    rootFile,
    restart: async () => {
      await server.stop();
      server = await tlsd();
    },
    resetCa: async () => {
      const fresh = await startPebble({ tlsPort: port, eab });
      f.retarget(fresh);
      pebble.stop();
      pebble = fresh;
      writeFileSync(rootFile, await pebble.root());
    },
    stop: async () => {
      await server.stop();
      f.close();
      pebble.stop();
    },
  };
}

type RenewalRecord = Record<string, number | string>;

/** Where the site's tlsd keeps what the CA said of renewing a.test's certificate. */
const recordFileOf = (s: Site) => join(s.cache, ".acme", "renewal", "a.test");

/** That record, once `ok` holds of it: it is written in the background, after the question
 * (10 s at most, or the test fails). */
async function recordWhen(s: Site, ok: (r: RenewalRecord) => boolean): Promise<RenewalRecord> {
  const read = () => {
    try {
      return JSON.parse(readFileSync(recordFileOf(s), "utf8")) as RenewalRecord;
    } catch {
      return undefined; // not there yet
    }
  };
  for (let i = 0; i < 100; i++) {
    const r = read();
    if (r && ok(r)) return r;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`the record never became what was waited for: ${JSON.stringify(read())}`);
}

/** openssl s_client for a.test, verifying against pebble's root; the leaf it was served. */
async function handshake(s: Site) {
  const r = await sClientVerified(s.port, "a.test", s.rootFile, { showcerts: true });
  assert.equal(r.code, 0, r.stderr + s.server.log());
  const pem = servedPem(r.stdout);
  assert.ok(pem, r.stdout);
  return { pem, serial: new X509Certificate(pem).serialNumber };
}

/** The certificate's ARI identifier as openssl prints its parts (not our code's reading). */
function ariId(pem: string): string {
  const text = execFileSync(
    "openssl",
    ["x509", "-noout", "-serial", "-ext", "authorityKeyIdentifier"],
    {
      input: pem,
      encoding: "latin1",
    },
  );
  const serial = /^serial=([0-9A-F]+)$/m.exec(text)?.[1] ?? "";
  const aki = /^\s*(?:keyid:)?((?:[0-9A-F]{2}:)+[0-9A-F]{2})\s*$/m.exec(text)?.[1] ?? "";
  assert.ok(serial && aki, text);
  let serialBytes = Buffer.from(serial.length % 2 ? `0${serial}` : serial, "hex");
  if ((serialBytes[0] ?? 0) >= 0x80) serialBytes = Buffer.concat([Buffer.of(0), serialBytes]);
  return `${Buffer.from(aki.replace(/:/g, ""), "hex").toString("base64url")}.${serialBytes.toString("base64url")}`;
}

const window = (startMs: number, endMs: number) =>
  JSON.stringify({
    suggestedWindow: {
      start: new Date(Date.now() + startMs).toISOString(),
      end: new Date(Date.now() + endMs).toISOString(),
    },
    explanationURL: "https://ca.example/incident",
  });

test("ARI: a window the CA moved into the past renews at once, the order naming the certificate it replaces", async () => {
  let past = false;
  const s = await site({
    renewalInfo: () =>
      past
        ? { status: 200, body: window(-7_200_000, -3_600_000), headers: { "Retry-After": "21600" } }
        : { status: 200, body: window(40 * 86_400_000, 50 * 86_400_000) },
  });
  try {
    const first = await handshake(s);
    assert.equal(s.front.orders.length, 1);
    assert.equal(s.front.orders[0]?.["replaces"], undefined);
    // Pebble's certificates live years: nothing of their own dates would renew them now.
    past = true;
    await handshake(s);
    const [line] = await s.server.waitForLog(/^tlsd: info: acme: a\.test: the CA's renewal window/);
    assert.match(
      line ?? "",
      /^tlsd: info: acme: a\.test: the CA's renewal window is \S+Z to \S+Z; renewing at \S+Z \(the CA explains: https:\/\/ca\.example\/incident\)$/,
    );
    await s.server.waitForLog(/^tlsd: info: acme: a\.test: issued in \d+ ms$/, 2, 30_000);
    assert.deepEqual(s.front.asked, [ariId(first.pem)]);
    assert.equal(s.front.orders.at(-1)?.["replaces"], ariId(first.pem));
    assert.match(s.server.log(), /^tlsd: info: acme: renewing a\.test \(expires /m);
    const renewed = await handshake(s);
    assert.notEqual(renewed.serial, first.serial);
  } finally {
    await s.stop();
  }
});

test("ARI: a window ahead is kept in CERTDIR (the moment chosen in it, when to ask again: the CA's Retry-After), and another tlsd of the CERTDIR goes by it without asking", async () => {
  const start = 30 * 86_400_000;
  const end = 32 * 86_400_000;
  const s = await site({
    renewalInfo: () => ({
      status: 200,
      body: window(start, end),
      headers: { "Retry-After": "7200" },
    }),
  });
  try {
    const first = await handshake(s);
    const before = Date.now();
    await handshake(s);
    await s.server.waitForLog(/^tlsd: info: acme: a\.test: the CA's renewal window/);
    const recordFile = recordFileOf(s);
    // Written once the answer is in (before it, a record of the question alone).
    const record = await recordWhen(s, (r) => r["certificateId"] !== undefined);
    assert.ok(record, "the window is kept");
    assert.equal(record["serial"], first.serial);
    assert.equal(record["certificateId"], ariId(first.pem));
    const moment = Number(record["moment"]);
    assert.ok(
      moment >= Number(record["start"]) && moment <= Number(record["end"]),
      JSON.stringify(record),
    );
    assert.ok(Number(record["start"]) >= before + start - 60_000, JSON.stringify(record));
    // Retry-After: 7200 s from the answer.
    const askAt = Number(record["askAt"]) - Date.now();
    assert.ok(askAt > 7_000_000 && askAt <= 7_200_000, JSON.stringify(record));
    assert.equal(s.front.orders.length, 1);
    // Another tlsd (as under djb's tcpserver, a tlsd per connection) reads the record: with its
    // moment past, it renews at its first handshake, the order replacing the certificate the
    // record names, and the CA is not asked (its Retry-After is ahead).
    await s.restart();
    writeFileSync(recordFile, JSON.stringify({ ...record, moment: Date.now() - 1000 }));
    await handshake(s);
    await s.server.waitForLog(/^tlsd: info: acme: a\.test: issued in \d+ ms$/, 1, 30_000);
    assert.equal(s.front.orders.at(-1)?.["replaces"], ariId(first.pem));
    assert.equal(s.front.asked.length, 1);
  } finally {
    await s.stop();
  }
});

for (const [what, answer, cause] of [
  ["answers 400", { status: 400, body: "{}" }, "the CA answered its renewalInfo with HTTP 400"],
  ["answers what is not JSON", { status: 200, body: "<html>" }, "the answer is not JSON"],
  [
    "answers a window that ends before it starts",
    { status: 200, body: window(10 * 86_400_000, 9 * 86_400_000) },
    "the suggested window ends before it starts",
  ],
] as const) {
  test(`ARI: a CA that ${what}: one line, and the certificate's own dates decide`, async () => {
    const s = await site({ renewalInfo: () => answer });
    try {
      const first = await handshake(s);
      await handshake(s);
      const [line] = await s.server.waitForLog(/^tlsd: warning: acme: a\.test: no renewal window/);
      assert.equal(line, `tlsd: warning: acme: a.test: no renewal window from the CA: ${cause}`);
      assert.equal((await handshake(s)).serial, first.serial);
      assert.equal(s.front.orders.length, 1);
    } finally {
      await s.stop();
    }
  });
}

test("ACME_PROFILE: the order asks for the profile the CA offers; one it does not offer fails the order, one line", async () => {
  const profiles = { classic: "90 days", shortlived: "6 days" };
  const s = await site({ profiles }, { ACME_PROFILE: "shortlived" });
  try {
    await handshake(s);
    assert.equal(s.front.orders.length, 1);
    assert.equal(s.front.orders[0]?.["profile"], "shortlived");
  } finally {
    await s.stop();
  }
  for (const [front, cause] of [
    [{ profiles }, "ACME_PROFILE tlsserver: the CA offers classic, shortlived"],
    [{}, "ACME_PROFILE tlsserver: the CA offers no profiles"],
  ] as const) {
    const refused = await site(front, { ACME_PROFILE: "tlsserver", ACME_WAIT: "5000" });
    try {
      const r = await sClientVerified(refused.port, "a.test", refused.rootFile);
      assert.notEqual(r.code, 0);
      const [line] = await refused.server.waitForLog(
        /^tlsd: warning: acme: a\.test: order failed: /,
      );
      assert.equal(line, `tlsd: warning: acme: a.test: order failed: ${cause}`);
      assert.equal(refused.front.orders.length, 0);
    } finally {
      await refused.stop();
    }
  }
});

test("a restarted tlsd orders with the account its key already has, with ACME_EMAIL or without (acme-client's empty update of it was refused, and every order failed)", async () => {
  for (const email of [{}, { ACME_EMAIL: "hostmaster@example.org" }] as Record<string, string>[]) {
    const s = await site({}, { ACME_NAMES: "a.test b.test", ...email });
    try {
      await handshake(s);
      await s.restart();
      const r = await sClientVerified(s.port, "b.test", s.rootFile);
      assert.equal(r.code, 0, r.stderr + s.server.log());
      assert.match(s.server.log(), /^tlsd: info: acme: b\.test: issued in \d+ ms$/m);
      // One account: the restarted tlsd registered none.
      assert.equal(s.front.accounts.length, 1, JSON.stringify(s.front.accounts));
    } finally {
      await s.stop();
    }
  }
});

test("ARI: a question that fails later keeps the window the CA gave before, and is asked again in an hour", async () => {
  let fails = false;
  const s = await site({
    renewalInfo: () =>
      fails
        ? { status: 400, body: "{}" }
        : { status: 200, body: window(30 * 86_400_000, 32 * 86_400_000) },
  });
  try {
    const first = await handshake(s);
    await handshake(s);
    const recordFile = recordFileOf(s);
    const answered = await recordWhen(s, (r) => r["certificateId"] !== undefined);
    // Time to ask again, for the next tlsd of the CERTDIR; the CA fails this time.
    fails = true;
    writeFileSync(recordFile, JSON.stringify({ ...answered, askAt: Date.now() - 1000 }));
    await s.restart();
    await handshake(s);
    const [line] = await s.server.waitForLog(/^tlsd: warning: acme: a\.test: no renewal window/);
    assert.equal(
      line,
      "tlsd: warning: acme: a.test: no renewal window from the CA: the CA answered its renewalInfo with HTTP 400",
    );
    const after = await recordWhen(s, (r) => Number(r["askAt"]) > Date.now() + 3_000_000);
    assert.deepEqual(
      [after["certificateId"], after["start"], after["end"], after["moment"]],
      [ariId(first.pem), answered["start"], answered["end"], answered["moment"]],
    );
    assert.equal(s.front.asked.length, 2);
    assert.equal(s.front.orders.length, 1);
  } finally {
    await s.stop();
  }
});

test("ACME_EAB_KID and ACME_EAB_KEYFILE: the account is registered with the CA's external account binding; without one, or with another key, or a file that holds none, the order fails (one line, no key in it)", async () => {
  const dir = scratchDir("eab");
  const mac = randomBytes(32).toString("base64url");
  const keyFile = join(dir, "eab.key");
  writeFileSync(keyFile, `${mac}\n`, { mode: 0o600 });
  const s = await site({}, { ACME_EAB_KID: "kid-1", ACME_EAB_KEYFILE: keyFile }, { "kid-1": mac });
  try {
    await handshake(s);
    assert.equal(s.front.accounts.length, 1);
    const binding = s.front.accounts[0]?.["externalAccountBinding"] as { protected: string };
    const header = JSON.parse(Buffer.from(binding.protected, "base64url").toString());
    assert.equal(header.kid, "kid-1");
    assert.equal(header.alg, "HS256");
  } finally {
    await s.stop();
  }
  const otherKey = join(dir, "other.key");
  writeFileSync(otherKey, randomBytes(32).toString("base64url"), { mode: 0o600 });
  const junk = join(dir, "junk.key");
  writeFileSync(junk, "not a key\n", { mode: 0o600 });
  for (const [env, cause] of [
    [
      {},
      /^tlsd: warning: acme: a\.test: order failed: ACME server policy requires newAccount requests must include a value for the 'externalAccountBinding' field$/,
    ],
    [
      { ACME_EAB_KID: "kid-1", ACME_EAB_KEYFILE: otherKey },
      /^tlsd: warning: acme: a\.test: order failed: external account binding JWS verification error: /,
    ],
    [
      { ACME_EAB_KID: "kid-1", ACME_EAB_KEYFILE: junk },
      new RegExp(
        `^tlsd: warning: acme: a\\.test: order failed: ACME_EAB_KEYFILE ${junk} holds no base64url MAC key$`,
      ),
    ],
    [
      { ACME_EAB_KID: "kid-1", ACME_EAB_KEYFILE: join(dir, "none.key") },
      new RegExp(
        `^tlsd: warning: acme: a\\.test: order failed: unable to read ACME_EAB_KEYFILE ${join(dir, "none.key")}: file does not exist$`,
      ),
    ],
  ] as const) {
    const refused = await site({}, { ...env, ACME_WAIT: "5000" }, { "kid-1": mac });
    try {
      const r = await sClientVerified(refused.port, "a.test", refused.rootFile);
      assert.notEqual(r.code, 0);
      const [line] = await refused.server.waitForLog(
        /^tlsd: warning: acme: a\.test: order failed: /,
      );
      assert.match(line ?? "", cause);
      assert.equal(refused.front.orders.length, 0);
      assert.ok(!refused.server.log().includes(mac), refused.server.log());
      assert.ok(!refused.server.log().includes(readFileSync(otherKey, "latin1")));
    } finally {
      await refused.stop();
    }
  }
});

test("ACME_KEY_TYPE: the certificate's key is of the kind asked for (ECDSA P-256 unless said)", async () => {
  for (const [type, kind, detail] of [
    [undefined, "ec", { namedCurve: "prime256v1" }],
    ["p384", "ec", { namedCurve: "secp384r1" }],
    ["rsa2048", "rsa", { modulusLength: 2048 }],
  ] as const) {
    const s = await site({}, type ? { ACME_KEY_TYPE: type } : {});
    try {
      const { pem } = await handshake(s);
      const key = new X509Certificate(pem).publicKey;
      assert.equal(key.asymmetricKeyType, kind, type);
      assert.deepEqual(
        Object.fromEntries(
          Object.keys(detail).map((k) => [k, key.asymmetricKeyDetails?.[k as keyof typeof detail]]),
        ),
        detail,
      );
    } finally {
      await s.stop();
    }
  }
});

test("ARI: a CA that does not know the certificate (404: not one of its own) is asked again in a day, and nothing is said", async () => {
  const s = await site({ renewalInfo: () => ({ status: 404, body: "{}" }) });
  try {
    const first = await handshake(s);
    await handshake(s);
    const record = await recordWhen(s, (r) => Number(r["askAt"]) > Date.now() + 23 * 3_600_000);
    assert.deepEqual(Object.keys(record).sort(), ["askAt", "serial"]);
    assert.equal(record["serial"], first.serial);
    assert.ok(Number(record["askAt"]) > Date.now() + 23 * 3_600_000, JSON.stringify(record));
    assert.equal(s.front.asked.length, 1);
    assert.doesNotMatch(s.server.log(), /renewal window/);
  } finally {
    await s.stop();
  }
});

test("ACME_HOOK: run after each certificate is installed (the first, then a renewal), with the name and the files' paths and nothing of tlsd's environment; one that fails or cannot be run is one line, and the certificate serves", async () => {
  const dir = scratchDir("hook");
  const calls = join(dir, "calls");
  const hook = join(dir, "hook");
  writeFileSync(
    hook,
    `#!/bin/sh\necho "$# $1 $ACME_NAME $ACME_CERTFILE $ACME_KEYFILE" >> ${calls}\nenv >> ${calls}.env\n`,
    { mode: 0o755 },
  );
  const s = await site(
    { renewalInfo: () => ({ status: 200, body: window(-7_200_000, -3_600_000) }) },
    { ACME_HOOK: hook },
  );
  try {
    await handshake(s);
    await s.server.waitForLog(/^tlsd: info: acme: a\.test: ACME_HOOK ran$/);
    // The window is past: the second handshake renews.
    await handshake(s);
    await s.server.waitForLog(/^tlsd: info: acme: a\.test: ACME_HOOK ran$/, 2, 30_000);
    const renewed = await handshake(s);
    const live = join(s.cache, "a.test");
    const line = `1 a.test a.test ${live}/fullchain.pem ${live}/privkey.pem`;
    assert.deepEqual(readFileSync(calls, "utf8").trim().split("\n"), [line, line]);
    const installed = new X509Certificate(readFileSync(join(live, "fullchain.pem")));
    assert.equal(installed.serialNumber, renewed.serial);
    const env = readFileSync(`${calls}.env`, "utf8");
    assert.doesNotMatch(env, /^(CERTFILE|KEYFILE|CERTDIR|ACME_DIRECTORY|ACME_HOOK)=/m);
  } finally {
    await s.stop();
  }
  const failing = join(dir, "failing");
  writeFileSync(failing, "#!/bin/sh\nexit 3\n", { mode: 0o755 });
  for (const [program, cause] of [
    [failing, "exit 3"],
    [join(dir, "none"), "could not run: file does not exist"],
  ] as const) {
    const f = await site({}, { ACME_HOOK: program });
    try {
      await handshake(f);
      const [line] = await f.server.waitForLog(/^tlsd: warning: acme: a\.test: ACME_HOOK failed: /);
      assert.equal(line, `tlsd: warning: acme: a.test: ACME_HOOK failed: ${cause}`);
      await handshake(f);
    } finally {
      await f.stop();
    }
  }
});

test("a CA that forgot the account (a private CA reset): the order that finds out fails in one line, and the next one registers the account again and is issued", async () => {
  const s = await site({}, { ACME_NAMES: "a.test b.test" });
  try {
    await handshake(s);
    await s.resetCa();
    const refused = await sClientVerified(s.port, "b.test", s.rootFile);
    assert.notEqual(refused.code, 0);
    await s.server.waitForLog(/^tlsd: warning: acme: b\.test: order failed: /);
    const served = await sClientVerified(s.port, "b.test", s.rootFile);
    assert.equal(served.code, 0, served.stderr + s.server.log());
    // Registered at each CA: the first, then the one reset.
    assert.equal(s.front.accounts.length, 2, JSON.stringify(s.front.accounts));
  } finally {
    await s.stop();
  }
});
