// tls-everywhere with certificates on demand, in network namespaces the test makes: the CA
// (pebble, with pebble-challtestsrv as its DNS: every name is the server namespace's address)
// runs in the client namespace, so its validator comes from outside as a real CA's does, to
// port 443 (tls-alpn-01) or 80 (http-01) of the host, both diverted to the chain like every
// other port. A plaintext web service (python3's http.server, whose access log names each
// client) on 8080, and another on 80; nothing on 443.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import type { TestPki } from "../helpers/certs.ts";
import { makeLab, untilAnswers, watch } from "../helpers/netns.ts";
import type { Lab, Watched } from "../helpers/netns.ts";
import { startPebble } from "../helpers/pebble.ts";
import type { Pebble } from "../helpers/pebble.ts";
import { PATH_WITH_BIN, ours, run } from "../helpers/programs.ts";
import { waitFor } from "../helpers/server.ts";

const LISTEN = 9999;
const HTTP = 8080;

let lab: Lab;
let pki: TestPki;
let pebble: Pebble;
/** pebble's root for this run, as its management API gives it. */
let rootFile = "";
/** The services on 8080 and 80. */
let services: Watched[] = [];
const accessLog = () => services.map((service) => service.log()).join("");

/** python3's http.server on `port`, its access log (one line per request, the client first)
 * kept. */
function startService(port: number): Watched {
  return watch(
    lab.start(lab.server, "python3", ["-u", "-m", "http.server", "--bind", "::", String(port)]),
  );
}

before(async () => {
  lab = makeLab("ta");
  pki = makePki();
  services = [startService(HTTP), startService(80)];
  pebble = await startPebble({
    tlsPort: 443,
    httpPort: 80,
    netns: { name: lab.client, listen: lab.clientIp, resolveTo: lab.serverIp },
  });
  rootFile = join(pki.dir, "pebble-root.pem");
  writeFileSync(rootFile, await pebble.root());
  for (const port of [HTTP, 80])
    await untilAnswers(lab, lab.server, `http://${lab.serverIp}:${port}/`);
});

after(() => {
  pebble.stop();
  lab.destroy();
});

/** tls-everywhere ordering from pebble for `names`, with a CERTDIR of its own, once its rules
 * are in. */
async function onDemand(tag: string, names: string, env: NodeJS.ProcessEnv = {}): Promise<Watched> {
  const certDir = join(pki.dir, `certs-${tag}`);
  mkdirSync(certDir);
  const child = lab.start(
    lab.server,
    ours("tls-everywhere"),
    [
      ...["--ports", `80,443,${HTTP}`, "--listen", String(LISTEN), "--silence", "300"],
      ...["--state", join(pki.dir, `state-${tag}`)],
    ],
    {
      ...process.env,
      PATH: PATH_WITH_BIN,
      CERTDIR: certDir,
      ACME_DIRECTORY: pebble.directory,
      ACME_CAFILE: pebble.listenerCa,
      ACME_NAMES: names,
      ...env,
    },
  );
  const tool = watch(child);
  await waitFor(
    () => (/info: diverting/.test(tool.log()) ? true : undefined),
    15_000,
    () => `the chain never started:\n${tool.log()}`,
  );
  return tool;
}

async function stop(tool: Watched): Promise<void> {
  tool.child.kill("SIGTERM");
  assert.deepEqual(await tool.exited, { code: 0, signal: null }, tool.log());
}

/** curl from the client namespace to `name` (this host's address) on the service's port,
 * verified against pebble's root: the status, and curl's complaint. */
async function https(name: string, tag: string) {
  const r = await lab.run(lab.client, "curl", [
    ...["-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}"],
    ...["--resolve", `${name}:${HTTP}:${lab.serverIp}`, "--cacert", rootFile],
    `https://${name}:${HTTP}/?${tag}`,
  ]);
  return { status: r.stdout, stderr: r.stderr };
}

/** The service's log line for the request tagged `tag`: it starts with the client's address. */
function served(tag: string): Promise<string> {
  return waitFor(() =>
    accessLog()
      .split("\n")
      .find((l) => l.includes(`?${tag} `)),
  );
}

const CLIENT = /^(::ffff:)?10\.77\.0\.2 /;

const orders = (tool: Watched, name: string) =>
  tool
    .log()
    .split("\n")
    .filter((l) => l === `tlsd: info: acme: ordering a certificate for ${name}`).length;

test("tls-alpn-01: the CA's validator, on port 443 where nothing listens, reaches tlsd; the client gets the service's answer over TLS with pebble's certificate for its name, the service sees the client; a second connection is served from CERTDIR, no new order", async () => {
  const tool = await onDemand("alpn", "site.test");
  try {
    const first = await https("site.test", "alpn-first");
    assert.equal(first.status, "200", `${first.stderr}\n${tool.log()}`);
    assert.match(await served("alpn-first"), CLIENT);
    assert.equal(orders(tool, "site.test"), 1, tool.log());
    const again = await https("site.test", "alpn-again");
    assert.equal(again.status, "200", again.stderr);
    assert.match(await served("alpn-again"), CLIENT);
    assert.equal(orders(tool, "site.test"), 1, tool.log());
  } finally {
    await stop(tool);
  }
});

test("a client that connects by address (https://10.77.0.1:8080/, no name sent): a certificate for the address it asked for, validated at that address's 443 under its reverse-DNS name, which curl verifies for the address; the service sees the client", async () => {
  const tool = await onDemand("address", lab.serverIp);
  try {
    const r = await lab.run(lab.client, "curl", [
      ...["-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}"],
      ...["--cacert", rootFile, `https://${lab.serverIp}:${HTTP}/?by-address`],
    ]);
    assert.equal(r.stdout, "200", `${r.stderr}\n${tool.log()}`);
    assert.match(await served("by-address"), CLIENT);
    assert.equal(orders(tool, lab.serverIp), 1, tool.log());
  } finally {
    await stop(tool);
  }
});

test("a client offering acme-tls/1 with no challenge pending: refused before any handshake, no program run, no order", async () => {
  const tool = await onDemand("nochallenge", "site.test other.test");
  try {
    const issued = await https("site.test", "nochallenge-issued");
    assert.equal(issued.status, "200", `${issued.stderr}\n${tool.log()}`);
    for (const name of ["site.test", "other.test"]) {
      const r = await lab.run(
        lab.client,
        "openssl",
        [
          ...["s_client", "-connect", `${lab.serverIp}:${HTTP}`, "-servername", name],
          ...["-alpn", "acme-tls/1", "-ign_eof"],
        ],
        `GET /?acme-tls-${name} HTTP/1.0\r\n\r\n`,
      );
      assert.notEqual(r.code, 0, r.stdout);
      await waitFor(
        () =>
          tool
            .log()
            .includes(
              `ALPN acme-tls/1 (tls-alpn-01 validation) and no challenge pending for ${name}\n`,
            ) || undefined,
        5000,
        tool.log,
      );
    }
    assert.doesNotMatch(accessLog(), /acme-tls-/);
    assert.equal(orders(tool, "site.test"), 1, tool.log());
    assert.equal(orders(tool, "other.test"), 0, tool.log());
  } finally {
    await stop(tool);
  }
});

test("http-01: the CA's plaintext request on port 80 is answered from tlsd's key authorization; the web service on 80 still gets every other request, from the client itself", async () => {
  const tool = await onDemand("http", "web.test", { ACME_CHALLENGE: "http-01" });
  try {
    const first = await https("web.test", "http01-first");
    assert.equal(first.status, "200", `${first.stderr}\n${tool.log()}`);
    assert.match(await served("http01-first"), CLIENT);
    assert.doesNotMatch(accessLog(), /acme-challenge/);
    const plain = await lab.run(lab.client, "curl", [
      ...["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"],
      `http://${lab.serverIp}/?port80`,
    ]);
    assert.equal(plain.stdout, "200", plain.stderr);
    assert.match(await served("port80"), CLIENT);
    const again = await https("web.test", "http01-again");
    assert.equal(again.status, "200", again.stderr);
    assert.equal(orders(tool, "web.test"), 1, tool.log());
  } finally {
    await stop(tool);
  }
});

test("a TLS service of its own on 443: the CA's validator reaches tlsd, not it; its own clients still get its own TLS", async () => {
  const own = pki.server("own", [lab.serverIp]);
  const tls443 = lab.start(lab.server, "openssl", [
    ...["s_server", "-quiet", "-accept", "443", "-cert", own.cert, "-key", own.key, "-www"],
  ]);
  tls443.stdout?.resume();
  tls443.stderr?.resume();
  await waitFor(() => (/:443 /.test(lab.sh(lab.server, "ss -Htln")) ? true : undefined));
  const tool = await onDemand("tls443", "tls.test");
  try {
    const first = await https("tls.test", "tls443-first");
    assert.equal(first.status, "200", `${first.stderr}\n${tool.log()}`);
    assert.match(await served("tls443-first"), CLIENT);
    // The service on 443 keeps its clients, and its certificate (the test CA's, not pebble's).
    const direct = await lab.run(lab.client, "curl", [
      ...["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"],
      ...["--cacert", pki.ca.cert, `https://${lab.serverIp}/`],
    ]);
    assert.equal(direct.stdout, "200", `${direct.stderr}\n${tool.log()}`);
  } finally {
    await stop(tool);
    tls443.kill("SIGKILL");
  }
});

test("ACME_* with the port the CA validates on not diverted: a warning naming it, --dry-run too; none when it is, nor for dns-01", async () => {
  const dryRun = (args: string[], env: NodeJS.ProcessEnv) =>
    run(ours("tls-everywhere"), ["--dry-run", ...args], {
      env: { ...process.env, PATH: PATH_WITH_BIN, ACME_DIRECTORY: pebble.directory, ...env },
    });
  const alpn = await dryRun(["--ports", "8080"], {});
  assert.equal(alpn.code, 0, alpn.stderr);
  assert.equal(
    alpn.stderr,
    "tls-everywhere: warning: port 443 is not diverted, and the CA validates tls-alpn-01 there: orders fail unless what listens on 443 answers them (tlsd with this CERTDIR)\n",
  );
  const http = await dryRun(["--exclude", "22,80"], { ACME_CHALLENGE: "http-01" });
  assert.equal(http.code, 0, http.stderr);
  assert.match(
    http.stderr,
    /^tls-everywhere: warning: port 80 is not diverted, and the CA validates http-01 there: .*\(acme-challenge with this CERTDIR\)\n$/,
  );
  for (const [args, env] of [
    [[], {}],
    [["--ports", "443"], {}],
    [["--ports", "8080", "--port", "443", "{", "tlsd", "tcpforward", "}"], {}],
    [["--ports", "1-100"], { ACME_CHALLENGE: "http-01" }],
    // dns-01's validator asks the zone's DNS servers, no port of this host.
    [["--ports", "8080"], { ACME_DNS_HOOK: "/bin/true" }],
    [["--ports", "8080"], { ACME_CHALLENGE: "dns-01", ACME_DNS_HOOK: "/bin/true" }],
  ] as const) {
    const r = await dryRun([...args], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "", args.join(" "));
  }
});

test("the CA in its namespace: addA changes what its DNS answers there (its management API is on that namespace's loopback, not the test's)", async () => {
  await pebble.addA("elsewhere.test", ["192.0.2.9"]);
  // One A question to the CA's DNS, from inside its namespace: its first answer's address.
  const ask = `import socket, sys
q = bytes.fromhex("123401000001000000000000") + b"".join(bytes([len(p)]) + p.encode() for p in sys.argv[1].split(".")) + bytes.fromhex("000001000001")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
host, port = sys.argv[2].split(":")
s.sendto(q, (host, int(port)))
r = s.recv(512)
def skip(i):  # past a name: its labels, up to a 0 or a pointer
    while r[i] and r[i] < 192: i += r[i] + 1
    return i + (2 if r[i] else 1)
i = skip(skip(12) + 4) + 10  # the question, then the answer's name, type, class, ttl, length
print(".".join(map(str, r[i:i + 4])))`;
  const r = await lab.run(lab.client, "python3", ["-c", ask, "elsewhere.test", pebble.dns]);
  assert.equal(r.stdout, "192.0.2.9\n", r.stderr);
});
