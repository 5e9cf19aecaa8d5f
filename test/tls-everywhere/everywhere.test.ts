// tls-everywhere in a network namespace the test makes (a client namespace and a server
// namespace joined by a veth pair): one command turns TLS on for a service that knows nothing
// of it (python3's http.server, whose access log names each client), the service sees the real
// client, and whatever way the command ends, the namespace's nftables ruleset, policy rules
// and routes are exactly what they were before.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { WITH_BYTES } from "../helpers/bytes.ts";
import { makePki } from "../helpers/certs.ts";
import type { Pair, TestPki } from "../helpers/certs.ts";
import { makeLab, untilAnswers, watch } from "../helpers/netns.ts";
import type { Lab, Watched } from "../helpers/netns.ts";
import { PATH_WITH_BIN, ROOT, ours } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import { parseUnit, specifiers, splitWords } from "../helpers/units.ts";

const LISTEN = 9999;
const HTTP = 8080;
const SMTP = 2525;

let lab: Lab;
let pki: TestPki;
let certificate: Pair;
let accessLog = "";
/** tls-everywhere's --state: where it records itself while it runs. */
let stateDir = "";

/** What the tool may change: compared before and after. (The kernel's own link-local route
 * may appear any time after the veth comes up: it is left out.) */
function hostState(): string {
  return [
    "nft list ruleset",
    "ip -4 rule",
    "ip -6 rule",
    "ip -4 route show table all",
    "ip -6 route show table all",
  ]
    .map((command) => `# ${command}\n${lab.sh(lab.server, `${command} | grep -v fe80:: || true`)}`)
    .join("\n");
}

let pristine = "";

before(async () => {
  lab = makeLab("te");
  pki = makePki();
  stateDir = join(pki.dir, "state");
  certificate = pki.server("service", [lab.serverIp, lab.serverIp6]);
  const service = lab.start(lab.server, "python3", [
    "-u",
    "-m",
    "http.server",
    "--bind",
    "::",
    String(HTTP),
  ]);
  service.stderr?.setEncoding("latin1");
  service.stderr?.on("data", (s: string) => (accessLog += s));
  service.stdout?.resume();
  await untilAnswers(lab, lab.server, `http://${lab.serverIp}:${HTTP}/`);
  // An admin's own table and rule, which the tool must leave exactly as they are.
  lab.sh(
    lab.server,
    `nft add table inet admin; nft add chain inet admin input '{ type filter hook input priority 0; policy accept; }'
     nft add rule inet admin input tcp dport 23 drop
     ip rule add fwmark 0x99 lookup 99`,
  );
  pristine = hostState();
});

after(() => lab.destroy());

type Tool = Watched;

/** The tool's options in these tests (beside --state). */
const OPTIONS = ["--ports", `${HTTP},2000-2100`, "--listen", String(LISTEN), "--silence", "300"];

function startTool(args: readonly string[] = []): Tool {
  return launchTool([...OPTIONS, "--state", stateDir, ...args]);
}

function launchTool(
  args: readonly string[],
  path = PATH_WITH_BIN,
  ns = lab.server,
  program = ours("tls-everywhere"),
): Tool {
  return watch(
    lab.start(ns, program, args, {
      ...process.env,
      PATH: path,
      CERTFILE: certificate.cert,
      KEYFILE: certificate.key,
    }),
  );
}

/** Once `count` tcpserver processes (chains, workers) say they accept, each `limit` at once,
 * and the rules are in. The rules go in only once the chains listen: by then each chain's port
 * has its listening socket. */
async function ready(tool: Tool, limit = 1000, count = 1, ports = [LISTEN]): Promise<void> {
  const line = new RegExp(`^tcpserver: status: 0/${limit}$`, "gm");
  await waitFor(
    () =>
      (tool.log().match(line)?.length ?? 0) >= count && /info: diverting/.test(tool.log())
        ? true
        : undefined,
    15_000,
    () => `the chain never started:\n${tool.log()}`,
  );
  const listeners = lab.sh(lab.server, "ss -Htln");
  for (const port of ports) assert.match(listeners, new RegExp(`:${port} `), listeners);
}

/** HTTP and HTTPS to the service's own port, from the client namespace (over IPv6 with `v6`):
 * each answered, and the service's log names the client's own address. */
async function fetchBoth(tag: string, v6 = false): Promise<void> {
  const [server, client] = v6
    ? [`[${lab.serverIp6}]`, lab.clientIp6]
    : [lab.serverIp, `(::ffff:)?${lab.clientIp.replaceAll(".", "\\.")}`];
  for (const [scheme, extra] of [
    ["http", []],
    ["https", ["--cacert", pki.ca.cert]],
  ] as const) {
    const r = await lab.run(lab.client, "curl", [
      "-sS",
      "--max-time",
      "10",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      ...extra,
      `${scheme}://${server}:${HTTP}/?${scheme}-${tag}`,
    ]);
    assert.equal(r.stdout, "200", r.stderr);
    const line = await waitFor(() =>
      accessLog.split("\n").find((l) => l.includes(`${scheme}-${tag}`)),
    );
    // python3 writes an IPv4 client of its dual-stack socket as ::ffff:a.b.c.d.
    assert.match(line, new RegExp(`^${client} `));
  }
}

test("--dry-run prints the rules and the commands that undo them, and changes nothing", async () => {
  const r = await lab.run(lab.server, ours("tls-everywhere"), [
    "--dry-run",
    "--ports",
    "8080,2000-2100",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /tproxy ip to :8999 meta mark set 2017 accept/);
  assert.match(r.stdout, /tproxy ip6 to :8999/);
  assert.match(r.stdout, /tcp dport \{ 8999 \} return\n.*\n    tcp dport \{ 22 \} return/);
  assert.match(r.stdout, /^# ip -6 route del local ::\/0 dev lo table 7001$/m);
  assert.equal(hostState(), pristine);
});

test("--dry-run with --port chains says what each runs: a tcpforward to where the client asked, transparent and marked; one that names its destination, as written", async () => {
  const r = await lab.run(lab.server, ours("tls-everywhere"), [
    ...["--dry-run", "--ports", "8080", "--mark", "100"],
    ...["--port", "25", "{", "starttls-wrapper", "-p", "smtp", "tcpforward", "10.0.0.5", "25", "}"],
    ...["--port", "143", "{", "starttls-wrapper", "-p", "imap", "tcpforward", "}"],
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^# tcp port 25 to :9000: starttls-wrapper -p smtp tcpforward 10\.0\.0\.5 25\n# tcp port 143 to :9001: starttls-wrapper -p imap tcpforward --transparent --mark 101\n/m,
  );
});

test("--ports and --exclude given more than once add up, the first replacing the default", async () => {
  const r = await lab.run(lab.server, ours("tls-everywhere"), [
    ...["--dry-run", "--ports", "80", "--exclude", "2022", "--ports", "443,8000-8100"],
    ...["--exclude", "8050"],
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^    tcp dport \{ 2022, 8050 \} return$/m);
  assert.match(r.stdout, /tcp dport \{ 80, 443, 8000-8100 \} tproxy ip to :8999 /);
  assert.doesNotMatch(r.stdout, /1-65535|\{ 22 \}/);
});

test("--dry-run's script, run by sh, installs exactly what the tool installs; --remove --dry-run's takes it out", async () => {
  const script = await lab.run(lab.server, ours("tls-everywhere"), ["--dry-run", ...OPTIONS]);
  assert.equal(script.code, 0, script.stderr);
  const installed = await lab.run(lab.server, "sh", ["-e"], script.stdout);
  assert.equal(installed.code, 0, installed.stderr);
  const byHand = hostState();
  assert.notEqual(byHand, pristine);
  const removal = await lab.run(lab.server, ours("tls-everywhere"), [
    ...["--remove", "--dry-run", ...OPTIONS],
  ]);
  assert.equal(removal.code, 0, removal.stderr);
  const removed = await lab.run(lab.server, "sh", ["-e"], removal.stdout);
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(hostState(), pristine);
  const tool = startTool();
  await ready(tool);
  try {
    // But for the table's comment, which names the running tool as its owner.
    const owned = `\n\tcomment "tls-everywhere ${tool.child.pid} \\d+ ${stateDir}"\n`;
    assert.match(hostState(), new RegExp(owned));
    assert.equal(hostState().replace(new RegExp(owned), "\n"), byHand);
  } finally {
    tool.child.kill("SIGTERM");
    assert.deepEqual(await tool.exited, { code: 0, signal: null });
  }
  assert.equal(hostState(), pristine);
});

/** `program` with a --state of its own and each of `extras`, while `tool` serves: refused with
 * one line naming `tool` as the rules' owner, and the rules stay in, untouched. */
async function refusedAsAnother(
  tool: Tool,
  program: string,
  extras: readonly (readonly string[])[],
): Promise<void> {
  const installed = hostState();
  for (const extra of extras) {
    const elsewhere = await lab.run(lab.server, program, [
      ...["--listen", "9998", "--state", join(pki.dir, "other-state"), ...extra],
    ]);
    assert.equal(elsewhere.code, 111, elsewhere.stderr);
    assert.equal(
      elsewhere.stderr,
      `tls-everywhere: fatal: the rules are another tls-everywhere's (pid ${tool.child.pid}, --state ${stateDir}): stop that one, and they go with it\n`,
    );
    assert.equal(hostState(), installed);
  }
}

test("one command: HTTP and HTTPS on the service's own port, IPv4 and IPv6, the real client in its log; SIGTERM leaves the host as it was", async () => {
  const tool = startTool();
  await ready(tool);
  await fetchBoth("first");
  // Run twice: refused with one line, and the first one goes on. With the same --state the
  // record names the one running; with another, the rules are of unknown origin.
  const again = await lab.run(lab.server, ours("tls-everywhere"), [
    ...["--listen", "9998", "--state", stateDir],
  ]);
  assert.equal(again.code, 111);
  assert.equal(
    again.stderr,
    `tls-everywhere: fatal: already running as pid ${tool.child.pid} (${stateDir}): stop that one first\n`,
  );
  // Another --state: the rules are the running one's, whether to start or to --remove; its
  // rules stay in, untouched.
  await refusedAsAnother(tool, ours("tls-everywhere"), [
    ["--remove"],
    ["--remove", "--table", "7100"],
    [],
  ]);
  await fetchBoth("second");
  // IPv6 clients too: the tool's own ip6 rules and IPv6 local route.
  await fetchBoth("ipv6", true);
  tool.child.kill("SIGTERM");
  assert.deepEqual(await tool.exited, { code: 0, signal: null });
  assert.match(tool.log(), /^tls-everywhere: info: rules removed$/m);
  assert.equal(hostState(), pristine);
});

/** The processes `pid` started that still run (its chains). */
function childrenOf(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).flatMap((task) =>
    readFileSync(`/proc/${pid}/task/${task}/children`, "latin1")
      .split(" ")
      .filter(Boolean)
      .map(Number),
  );
}

test("SIGHUP: the chain stopped, exactly what it installed taken out, status 0", async () => {
  const tool = startTool();
  await ready(tool);
  await fetchBoth("hup");
  const chains = childrenOf(tool.child.pid ?? 0);
  assert.equal(chains.length, 1, tool.log());
  tool.child.kill("SIGHUP");
  assert.deepEqual(await tool.exited, { code: 0, signal: null }, tool.log());
  assert.match(tool.log(), /^tls-everywhere: info: rules removed$/m);
  for (const pid of chains) assert.equal(existsSync(`/proc/${pid}`), false, `chain ${pid} runs`);
  assert.doesNotMatch(lab.sh(lab.server, "ss -Htln"), new RegExp(`:${LISTEN} `));
  assert.equal(hostState(), pristine);
});

test("a service bound to loopback only stays private (refused, nothing relayed, one line naming the address asked for); an --exclude'd port is never diverted", async () => {
  const [privatePort, excluded] = [2050, 2060];
  const [secret, other] = [
    ["127.0.0.1", privatePort],
    ["::", excluded],
  ].map(([bind, port]) =>
    lab.start(lab.server, "python3", ["-u", "-m", "http.server", "--bind", `${bind}`, `${port}`]),
  );
  let secretLog = "";
  secret?.stderr?.setEncoding("latin1");
  secret?.stderr?.on("data", (t: string) => (secretLog += t));
  for (const child of [secret, other]) child?.stdout?.resume();
  other?.stderr?.resume();
  const tool = startTool(["--exclude", String(excluded)]);
  try {
    await ready(tool);
    await waitFor(() => {
      const listening = lab.sh(lab.server, "ss -Htln");
      return [privatePort, excluded].every((p) => listening.includes(`:${p} `)) || undefined;
    });
    const refused = await lab.run(lab.client, "curl", [
      ...["-sS", "--max-time", "10", `http://${lab.serverIp}:${privatePort}/?secret`],
    ]);
    assert.notEqual(refused.code, 0);
    await waitFor(() =>
      tool
        .log()
        .includes(
          `tcpforward: fatal: ${lab.clientIp}: unable to connect to ${lab.serverIp} port ${privatePort}: connection refused\n`,
        )
        ? true
        : undefined,
    );
    assert.doesNotMatch(secretLog, /secret/);
    // Not diverted: TLS reaches the plaintext service itself, and the chain sees no connection.
    const tls = await lab.run(lab.client, "curl", [
      ...["-sS", "--max-time", "10", "--cacert", pki.ca.cert],
      `https://${lab.serverIp}:${excluded}/`,
    ]);
    assert.notEqual(tls.code, 0);
    assert.match(tls.stderr, /wrong version number/);
    assert.doesNotMatch(tool.log(), new RegExp(`:${excluded} `));
  } finally {
    tool.child.kill("SIGTERM");
    for (const child of [secret, other]) child?.kill();
  }
  assert.deepEqual(await tool.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
});

test("a client that waits to be spoken to (a server-first service): after --silence, plaintext to the service, whose greeting names the client's own address", async () => {
  const greeter = 2070;
  const service = lab.start(lab.server, ours("tcpserver"), [
    ...["-RHl0", "::", String(greeter), "sh", "-c", 'printf "220 hello %s\\r\\n" "$TCPREMOTEIP"'],
  ]);
  service.stdout?.resume();
  service.stderr?.resume();
  const tool = startTool();
  try {
    await ready(tool);
    await waitFor(() => lab.sh(lab.server, "ss -Htln").includes(`:${greeter} `) || undefined);
    const r = await lab.run(lab.client, "python3", [
      "-c",
      `import socket; s = socket.create_connection(("${lab.serverIp}", ${greeter}), 10); print(s.recv(200).decode(), end="")`,
    ]);
    assert.equal(r.stdout, `220 hello ${lab.clientIp}\r\n`, r.stderr + tool.log());
    assert.match(tool.log(), new RegExp(`:${greeter} `));
  } finally {
    tool.child.kill("SIGTERM");
    service.kill();
  }
  assert.deepEqual(await tool.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
});

test("an IPv6 client of the host's link-local address is served as without the tool (plaintext, straight to the service), where it hung", async () => {
  const link = `vc${process.pid % 100000}`;
  // The kernel's own fe80:: addresses, once duplicate address detection is done with them.
  const address = await waitFor(
    () =>
      /inet6 (fe80::[0-9a-f:]+)\/64 scope link\s*$/m.exec(
        lab.sh(lab.server, "ip -6 addr show scope link"),
      )?.[1],
  );
  await waitFor(() =>
    /tentative/.test(lab.sh(lab.client, "ip -6 addr show scope link")) ? undefined : true,
  );
  const tool = startTool();
  try {
    await ready(tool);
    const r = await lab.run(lab.client, "curl", [
      ...["-sS", "-g", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"],
      `http://[${address}%25${link}]:${HTTP}/?link-local`,
    ]);
    assert.equal(r.stdout, "200", r.stderr);
    const line = await waitFor(() => accessLog.split("\n").find((l) => l.includes("link-local")));
    assert.match(line, /^fe80::/);
  } finally {
    tool.child.kill("SIGTERM");
  }
  assert.deepEqual(await tool.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
});

test("--port: a port with a chain of its own: STARTTLS for an SMTP daemon that has none, which sees the real client before and after", async () => {
  const fakeLog = join(pki.dir, "smtp.log");
  const smtp = await startServer(
    ours("tcpserver"),
    ["-RHl0", "::", String(SMTP), join(ROOT, "test", "fixtures", "fake-smtp")],
    { env: { ...process.env, FAKE_LOG: fakeLog }, wrap: ["ip", "netns", "exec", lab.server] },
  );
  const tool = startTool([
    "--port",
    String(SMTP),
    "{",
    "starttls-wrapper",
    "-p",
    "smtp",
    "tcpforward",
    "}",
  ]);
  try {
    await ready(tool, 1000, 2, [LISTEN, LISTEN + 1]); // the main chain and port 2525's
    const r = await lab.run(lab.client, "python3", [
      "-c",
      [
        "import smtplib, ssl, sys",
        "ctx = ssl.create_default_context(cafile=sys.argv[1])",
        `s = smtplib.SMTP("${lab.serverIp}", ${SMTP}, timeout=10)`,
        's.ehlo("client.test")',
        'assert s.has_extn("starttls"), s.esmtp_features',
        "s.starttls(context=ctx)",
        's.ehlo("client.test")',
        "print(s.sock.version())",
        "s.quit()",
      ].join("\n"),
      pki.ca.cert,
    ]);
    assert.equal(r.code, 0, r.stderr + tool.log());
    assert.match(r.stdout, /^TLSv1\.[23]\n$/);
    // One EHLO before STARTTLS, one on the fresh session behind TLS, both from the client.
    assert.equal(
      readFileSync(fakeLog, "latin1"),
      `${lab.clientIp} ehlo client.test\n${lab.clientIp} ehlo client.test\n${lab.clientIp} quit\n`,
    );
  } finally {
    tool.child.kill("SIGTERM");
    await tool.exited;
    await smtp.stop();
  }
  assert.equal(hostState(), pristine);
});

/** What a server-first service at `host` `port` says, read to its end from the client
 * namespace. */
async function said(host: string, port: number): Promise<string> {
  const r = await lab.run(lab.client, "python3", [
    "-c",
    `import socket, sys\ns = socket.create_connection(("${host}", ${port}), timeout=30)\nwhile True:\n    b = s.recv(65536)\n    if not b: break\n    sys.stdout.buffer.write(b)`,
  ]);
  return r.stdout;
}

test("--port chains whose tcpforward names its destination run it as written (they never reached another host: the mark routed them to lo): another host, plain, with --proxy, or transparent when it routes back through this one; a daemon at 127.0.0.1; one at this host's address, transparent with the mark; a UNIX socket; the start lines say what each chain runs", async () => {
  const far = lab.far();
  // The far host's replies to the clients come back through this one, as a mail host's behind.
  lab.sh(far.ns, `ip route add default via ${far.serverIp}`);
  const socket = join(pki.dir, "daemon.sock");
  const mark = String(0x7e1 + 1);
  // Each service says who it takes its client for, and ends.
  const says = (tag: string) => ["sh", "-c", `echo "${tag} $TCPREMOTEIP"`];
  const services = [
    lab.start(far.ns, ours("tcpserver"), ["-RHl0", "0", "8081", ...says("far")]),
    lab.start(far.ns, ours("tcpserver"), [
      ...["--proxy", "--proxy-from", far.serverIp, "-RHl0", "0", "8082", ...says("far")],
    ]),
    // In the diverted range: the chain's own connections to them are never diverted again.
    lab.start(lab.server, ours("tcpserver"), ["-RHl0", "127.0.0.1", "2085", ...says("local")]),
    lab.start(lab.server, ours("tcpserver"), ["-RHl0", lab.serverIp, "2087", ...says("own")]),
    lab.start(lab.server, "python3", [
      "-c",
      `import socket\ns = socket.socket(socket.AF_UNIX)\ns.bind("${socket}")\ns.listen()\nwhile True:\n    c, _ = s.accept()\n    c.sendall(b"unix\\n")\n    c.close()`,
    ]),
  ];
  for (const service of services) watch(service);
  const cases: [number, string[], string][] = [
    [2080, ["tcpforward", far.ip, "8081"], `far ${far.serverIp}`],
    [2082, ["tcpforward", "--proxy", far.ip, "8082"], `far ${lab.clientIp}`],
    [2084, ["tcpforward", "--transparent", far.ip, "8081"], `far ${lab.clientIp}`],
    [2086, ["tcpforward", "127.0.0.1", "2085"], "local 127.0.0.1"],
    [
      2088,
      ["tcpforward", "--transparent", "--mark", mark, lab.serverIp, "2087"],
      `own ${lab.clientIp}`,
    ],
    [2090, ["tcpforward", socket], "unix"],
  ];
  const tool = startTool(
    cases.flatMap(([port, chain]) => ["--port", String(port), "{", ...chain, "}"]),
  );
  try {
    await waitFor(() => (existsSync(socket) ? true : undefined));
    await ready(tool, 1000, 1 + cases.length);
    // The tool's lines may reach us in several reads: ready() saw the first.
    const lines = cases.map(
      ([port, chain], i) =>
        `tls-everywhere: info: diverting tcp port ${port} to :${LISTEN + 1 + i}: ${chain.join(" ")}\n`,
    );
    await waitFor(
      () => (lines.every((line) => tool.log().includes(line)) ? true : undefined),
      15_000,
      () => `not every chain was said:\n${tool.log()}`,
    );
    const answers = await Promise.all(cases.map(([port]) => said(lab.serverIp, port)));
    assert.deepEqual(
      answers,
      cases.map(([, , answer]) => `${answer}\n`),
      tool.log(),
    );
  } finally {
    tool.child.kill("SIGTERM");
    for (const service of services) service.kill();
    far.remove();
  }
  assert.deepEqual(await tool.exited, { code: 0, signal: null }, tool.log());
  assert.equal(hostState(), pristine);
});

test("a service with TLS of its own keeps it: its clients get its own certificate, another CA's than the tool's", async () => {
  const own = makePki();
  const pair = own.server("tls-service", [lab.serverIp]);
  const service = lab.start(lab.server, "openssl", [
    ...["s_server", "-quiet", "-www", "-accept", "2043", "-cert", pair.cert, "-key", pair.key],
  ]);
  const tool = startTool();
  try {
    await ready(tool);
    await waitFor(() => (lab.sh(lab.server, "ss -Hltn 'sport = :2043'").trim() ? true : undefined));
    const url = `https://${lab.serverIp}:2043/`;
    const r = await lab.run(lab.client, "curl", [
      ...["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"],
      ...["--cacert", own.ca.cert, url],
    ]);
    assert.equal(r.stdout, "200", r.stderr);
    // The tool's own certificate (the one plaintext services get TLS with) is not shown here.
    const mine = await lab.run(lab.client, "curl", [
      ...["-sS", "--max-time", "10", "-o", "/dev/null", "--cacert", pki.ca.cert, url],
    ]);
    assert.notEqual(mine.code, 0);
    assert.match(mine.stderr, /certificate/);
    // The admin is told, once: the answer was new.
    const told = tool.log().match(/^tcpforward: info: .* port 2043 speaks TLS itself: .*$/gm);
    assert.equal(told?.length, 1, tool.log());
  } finally {
    tool.child.kill("SIGTERM");
    assert.deepEqual(await tool.exited, { code: 0, signal: null });
    service.kill();
  }
  assert.equal(hostState(), pristine);
});

test("--metrics: the main chain answers scrapes at the address, a --port chain's on the next port", async () => {
  const tool = startTool([
    ...["--metrics", "127.0.0.1:9100"],
    ...["--port", String(SMTP), "{", "tcpforward", "}"],
  ]);
  try {
    await ready(tool, 1000, 2, [LISTEN, LISTEN + 1]);
    await fetchBoth("metrics");
    const main = lab.sh(lab.server, "curl -sS --max-time 5 http://127.0.0.1:9100/metrics");
    // The two connections of fetchBoth, one of them TLS.
    assert.match(main, /^tcpserver_connections_accepted_total 2$/m, main);
    assert.match(main, /^tlsd_handshakes_total\{[^}]*result="ok"[^}]*\} 1$/m, main);
    assert.match(main, /^tls_sniff_connections_total\{verdict="tls",route="default"\} 1$/m, main);
    assert.match(main, /^tls_sniff_connections_total\{verdict="plain",route="plain"\} 1$/m, main);
    const chain = lab.sh(lab.server, "curl -sS --max-time 5 http://127.0.0.1:9101/metrics");
    assert.match(chain, /^tcpserver_connections_accepted_total 0$/m, chain);
  } finally {
    tool.child.kill("SIGTERM");
    assert.deepEqual(await tool.exited, { code: 0, signal: null });
  }
  assert.equal(hostState(), pristine);
});

test("--workers and --limit: the chain runs as that many processes on one port, sharing the limit", async () => {
  const tool = startTool(["--workers", "2", "--limit", "200"]);
  await ready(tool, 100, 2);
  await fetchBoth("workers");
  tool.child.kill("SIGTERM");
  assert.deepEqual(await tool.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
});

test("the chain killed with SIGKILL: the rules are removed at once, status 111; started again, it serves", async () => {
  const tool = startTool();
  await ready(tool);
  const chainPid = lab.sh(lab.server, `pgrep -P ${tool.child.pid ?? 0} || true`).trim();
  assert.match(chainPid, /^\d+$/);
  process.kill(Number(chainPid), "SIGKILL");
  assert.deepEqual(await tool.exited, { code: 111, signal: null });
  assert.match(tool.log(), /^tls-everywhere: fatal: the chain ended \(signal SIGKILL\)$/m);
  assert.equal(hostState(), pristine);
  const next = startTool();
  await ready(next);
  await fetchBoth("restarted");
  next.child.kill("SIGINT");
  assert.deepEqual(await next.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
});

test("a rule taken out by hand while it runs: at the end, a warning names it, no line says the rules were removed, status 111", async () => {
  const tool = startTool();
  await ready(tool);
  lab.sh(lab.server, "ip -4 rule del fwmark 2017 lookup 7001");
  tool.child.kill("SIGTERM");
  assert.deepEqual(await tool.exited, { code: 111, signal: null });
  assert.match(
    tool.log(),
    /^tls-everywhere: warning: unable to run ip -4 rule del fwmark 2017 lookup 7001: RTNETLINK answers: No such file or directory$/m,
  );
  assert.equal(tool.log().match(/^tls-everywhere: warning: /gm)?.length, 1, tool.log());
  assert.doesNotMatch(tool.log(), /rules removed/);
  assert.equal(hostState(), pristine);
  // The record stays: --remove finds nothing left of it.
  const removed = await lab.run(lab.server, ours("tls-everywhere"), [
    ...["--remove", "--state", stateDir],
  ]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(removed.stderr, /nothing of it was left\n$/);
  assert.equal(hostState(), pristine);
});

test("an install step refused and a step of its undo failing too: a warning names what could not be undone, the record stays, status 111; --remove finishes later", async () => {
  // ip as the tool finds it on its PATH: just before the install's last step, another program
  // puts that very route in (the kernel refuses the tool's: "File exists") and takes the table
  // out from under the tool (a firewall's reload, say), so the undo's first step fails.
  const wrapped = join(pki.dir, "ip-wrapped");
  mkdirSync(wrapped, { recursive: true });
  writeFileSync(
    join(wrapped, "ip"),
    `#!/bin/sh\nif [ "$*" = "-6 route add local ::/0 dev lo table 7001" ]; then\n  /usr/sbin/ip "$@" && /usr/sbin/nft delete table inet tls_everywhere\nfi\nexec /usr/sbin/ip "$@"\n`,
    { mode: 0o755 },
  );
  const tool = launchTool([...OPTIONS, "--state", stateDir], `${wrapped}:${PATH_WITH_BIN}`);
  assert.deepEqual(await tool.exited, { code: 111, signal: null });
  const log = tool.log();
  assert.match(
    log,
    /^tls-everywhere: warning: unable to run nft delete table inet tls_everywhere: .*No such file or directory$/m,
  );
  assert.equal(log.match(/^tls-everywhere: warning: /gm)?.length, 1, log);
  assert.match(
    log,
    /^tls-everywhere: fatal: unable to run ip -6 route add local ::\/0 dev lo table 7001: RTNETLINK answers: File exists\n$/m,
  );
  assert.doesNotMatch(log, /diverting|rules removed/);
  // The other program's route is not the tool's to take out: it stays.
  assert.match(lab.sh(lab.server, "ip -6 route show table 7001"), /^local default dev lo /m);
  // The record stays, naming the run: --remove takes out whatever of it is left.
  const record = join(stateDir, "running.json");
  assert.equal(existsSync(record), true, log);
  const removed = await lab.run(lab.server, ours("tls-everywhere"), [
    ...["--remove", "--state", stateDir],
  ]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(
    removed.stderr,
    new RegExp(
      `^tls-everywhere: info: tls-everywhere \\(pid ${tool.child.pid}\\) ended without taking out what it installed: `,
    ),
  );
  assert.equal(existsSync(record), false);
  assert.equal(hostState(), pristine);
});

test("lo down: refused with one line, exit 111, before any chain starts or any rule goes in, --ipv4-only too (it failed half-way, at the IPv6 local route; IPv4 alone diverted clients to a chain whose connections to the services, local addresses, go through lo: each one hung)", async () => {
  const state = join(pki.dir, "lo-down-state");
  for (const extra of [[], ["--ipv4-only"]]) {
    lab.sh(lab.server, "ip link set lo down");
    const tool = launchTool([...OPTIONS, "--state", state, ...extra]);
    try {
      const how = await Promise.race([tool.exited, ready(tool).then(() => "it started")]);
      assert.deepEqual(how, { code: 111, signal: null }, tool.log());
      assert.equal(
        tool.log(),
        "tls-everywhere: fatal: the loopback interface lo is down: the chain's connections to the services go through it (ip link set lo up)\n",
      );
      assert.equal(existsSync(join(state, "running.json")), false);
    } finally {
      tool.child.kill("SIGTERM");
      await tool.exited;
      lab.sh(lab.server, "ip link set lo up");
    }
    assert.equal(hostState(), pristine);
  }
});

test("a --state others can write is refused, one line, exit 111, nothing installed, nothing signalled", async () => {
  const open = join(pki.dir, "open-state");
  mkdirSync(open, { mode: 0o700 });
  chmodSync(open, 0o777);
  for (const extra of [["--remove"], []]) {
    const r = await lab.run(lab.server, ours("tls-everywhere"), [
      ...OPTIONS,
      ...["--state", open, ...extra],
    ]);
    assert.equal(r.code, 111, r.stderr);
    assert.equal(
      r.stderr,
      `tls-everywhere: fatal: --state ${open} is writable by others (mode 0777): its record cannot be trusted; chmod go-w it\n`,
    );
    assert.equal(hostState(), pristine);
  }
});

test("a --state under a directory another user could swap it in (theirs, or writable by others and not sticky, on the path as given or where a link leads) is refused, one line, exit 111, nothing installed; under a sticky one it is not", async () => {
  const open = join(pki.dir, "open-parent");
  const theirs = join(pki.dir, "their-parent");
  const sticky = join(pki.dir, "sticky-parent");
  for (const [dir, mode] of [
    [open, 0o777],
    [theirs, 0o755],
    [sticky, 0o1777],
  ] as const) {
    mkdirSync(join(dir, "made"), { recursive: true, mode: 0o700 });
    chmodSync(dir, mode);
  }
  chownSync(theirs, 4321, 4321);
  const linked = join(pki.dir, "linked-state");
  symlinkSync(join(open, "made"), linked);
  const openWhy = `is under ${open}, which is writable by others (mode 0777) and not sticky: its record cannot be trusted; chmod go-w it`;
  const cases: [string, string][] = [
    [join(open, "made"), openWhy],
    [join(open, "not-yet", "te"), openWhy],
    [linked, openWhy],
    [
      join(theirs, "made"),
      `is under ${theirs}, which belongs to uid 4321, not root: its record cannot be trusted`,
    ],
  ];
  for (const [state, why] of cases) {
    for (const extra of [["--remove"], ["--remove", "--dry-run"], []]) {
      const r = await lab.run(lab.server, ours("tls-everywhere"), [
        ...OPTIONS,
        ...["--state", state, ...extra],
      ]);
      assert.equal(r.code, 111, r.stderr);
      assert.equal(r.stderr, `tls-everywhere: fatal: --state ${state} ${why}\n`);
      assert.equal(r.stdout, "");
      assert.equal(hostState(), pristine);
    }
  }
  assert.equal(existsSync(join(open, "not-yet")), false);
  // A sticky one (as /tmp is): no other user can rename or replace what is not theirs in it.
  for (const state of [join(sticky, "made"), join(sticky, "not-yet")]) {
    const r = await lab.run(lab.server, ours("tls-everywhere"), [
      ...["--remove", "--dry-run", "--state", state],
    ]);
    assert.deepEqual([r.code, r.stderr], [0, ""]);
  }
});

test("a record naming a process that is not its chain (its real pid and start time): --remove leaves that process alone", async () => {
  const bystander = lab.start(lab.server, "sleep", ["300"]);
  const gone = spawnSync("true");
  try {
    const pid = bystander.pid ?? 0;
    await waitFor(() =>
      /\(sleep\)/.test(readFileSync(`/proc/${pid}/stat`, "latin1")) ? true : undefined,
    );
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const since = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    const forged = join(pki.dir, "forged-state");
    mkdirSync(forged, { mode: 0o700 });
    writeFileSync(
      join(forged, "running.json"),
      JSON.stringify({ owner: { pid: gone.pid, since: "1" }, chains: [{ pid, since }], args: [] }),
    );
    const r = await lab.run(lab.server, ours("tls-everywhere"), ["--remove", "--state", forged]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`left pid ${pid} alone \\(not its chain\\)\n$`));
    assert.equal(runs(pid), true);
    assert.equal(existsSync(join(forged, "running.json")), false);
  } finally {
    bystander.kill("SIGKILL");
  }
});

test("another user's process that looks like a chain (our tcpserver, a chain's options, the owner's mark in its environment): --remove leaves it alone, recorded or not", async () => {
  // Our very tcpserver, as a chain runs, but as uid 65534 (-u/-g after binding): its command
  // line and environment are as a chain's, where anyone may write them.
  const gone = spawnSync("true").pid;
  const lookalike = () => {
    const child = lab.start(
      lab.server,
      ours("tcpserver"),
      ["-1vRHl0", "-u", "65534", "-g", "65534", "--transparent", "0", "0", "cat"],
      { ...process.env, PATH: PATH_WITH_BIN, TLS_EVERYWHERE_OWNER: `${gone}:1` },
    );
    child.stderr?.resume();
    return child;
  };
  const [recorded, unrecorded] = [lookalike(), lookalike()];
  try {
    const ids = await Promise.all(
      [recorded, unrecorded].map(async (child) => {
        await new Promise((resolve) => child.stdout?.once("data", resolve));
        const pid = child.pid ?? 0;
        // -1 prints the port when bound, before the ids change.
        await waitFor(() =>
          /^Uid:\s+65534\s+65534\s+65534\s+65534$/m.test(
            readFileSync(`/proc/${pid}/status`, "latin1"),
          )
            ? true
            : undefined,
        );
        const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
        return { pid, since: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] };
      }),
    );
    const forged = join(pki.dir, "other-user-state");
    mkdirSync(forged, { mode: 0o700 });
    writeFileSync(
      join(forged, "running.json"),
      JSON.stringify({ owner: { pid: gone, since: "1" }, chains: [ids[0]], args: [] }),
    );
    const r = await lab.run(lab.server, ours("tls-everywhere"), ["--remove", "--state", forged]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`: left pid ${ids[0]?.pid} alone \\(not its chain\\)\n$`));
    assert.doesNotMatch(r.stderr, /stopped/);
    for (const id of ids) assert.equal(runs(id?.pid ?? 0), true);
  } finally {
    recorded.kill("SIGKILL");
    unrecorded.kill("SIGKILL");
  }
});

/** The tcpserver processes tls-everywhere started (its chains). */
function chainsOf(tool: Tool): number[] {
  const pids = lab.sh(lab.server, `pgrep -P ${tool.child.pid ?? 0} || true`).trim();
  return pids === "" ? [] : pids.split("\n").map(Number);
}

/** Whether `pid` runs (a zombie has ended). */
function runs(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Once the tool serves, SIGKILL for it alone (no process can catch that): its rules stay,
 * and its chain, whose pid this returns, goes on. */
async function killOnlyTool(tool: Tool): Promise<number> {
  await ready(tool);
  const [chain] = chainsOf(tool);
  assert.ok(chain !== undefined && runs(chain));
  tool.child.kill("SIGKILL");
  await tool.exited;
  assert.notEqual(hostState(), pristine);
  assert.equal(runs(chain), true);
  return chain;
}

test("the tool itself killed with SIGKILL: its chain goes on serving; the next start stops that chain, takes out its rules and serves", async () => {
  const tool = startTool();
  const chain = await killOnlyTool(tool);
  await fetchBoth("orphaned");
  const next = startTool();
  await ready(next);
  assert.match(
    next.log(),
    new RegExp(
      `^tls-everywhere: warning: tls-everywhere \\(pid ${tool.child.pid}\\) ended without taking out what it installed: stopped its chain \\(pid ${chain}\\), removed its rules$`,
      "m",
    ),
  );
  assert.equal(runs(chain), false);
  await fetchBoth("taken-over");
  next.child.kill("SIGTERM");
  assert.deepEqual(await next.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
  assert.equal(existsSync(join(stateDir, "running.json")), false);
});

test("the owner's mark is the chains' own: a chain's program does not see it in its environment, and --remove still finds that chain by it", async () => {
  // A --port chain whose program prints its environment to the client.
  const tool = startTool(["--port", String(SMTP), "{", "env", "}"]);
  try {
    await ready(tool, 1000, 2, [LISTEN, LISTEN + 1]);
    const r = await lab.run(lab.client, "python3", [
      "-c",
      `import socket, sys\ns = socket.create_connection(("${lab.serverIp}", ${SMTP}), timeout=10)\nwhile True:\n    b = s.recv(65536)\n    if not b: break\n    sys.stdout.buffer.write(b)`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    // The program's environment, as tcpserver gives it: the connection's variables, and no mark.
    assert.match(r.stdout, new RegExp(`^TCPREMOTEIP=${lab.clientIp.replaceAll(".", "\\.")}$`, "m"));
    assert.doesNotMatch(r.stdout, /TLS_EVERYWHERE_OWNER/);
  } catch (error) {
    tool.child.kill("SIGTERM");
    throw error;
  }
  // The tool killed before it recorded its chains: only the mark in their environment names
  // them.
  const chains = chainsOf(tool);
  assert.equal(chains.length, 2);
  tool.child.kill("SIGKILL");
  await tool.exited;
  await removeUnrecorded(tool, chains);
});

test("the chains get the tool's environment and words byte for byte: a CERTFILE and KEYFILE named with a byte ff serve HTTPS, and a --port chain's program gets $X and a word with that byte", async () => {
  // Node's spawn gave the chains U+FFFD (ef bf bd) for each such byte: tlsd found no
  // certificate and the chain ended before it listened.
  const named = (file: string) => {
    copyFileSync(file, Buffer.concat([Buffer.from(file), Buffer.of(0xff)]));
    return `${file}\\xff`;
  };
  const program =
    "import os, sys\n" +
    "os.write(1, (os.environb[b'X'].hex() + ' ' + ' '.join(os.fsencode(w).hex() for w in sys.argv[1:]) + '\\n').encode())";
  const [python = "", ...head] = WITH_BYTES;
  const tool = watch(
    lab.start(
      lab.server,
      python,
      [
        ...head,
        ...["env", "X=a\\xffb", `CERTFILE=${named(certificate.cert)}`],
        `KEYFILE=${named(certificate.key)}`,
        ours("tls-everywhere"),
        ...[...OPTIONS, "--state", stateDir],
        ...["--port", String(SMTP), "{", "python3", "-c", program, "\\xff", "}"],
      ],
      { ...process.env, PATH: PATH_WITH_BIN },
    ),
  );
  try {
    await ready(tool, 1000, 2, [LISTEN, LISTEN + 1]);
    await fetchBoth("bytes");
    assert.equal(await said(lab.serverIp, SMTP), "61ff62 ff\n");
  } finally {
    tool.child.kill("SIGTERM");
    await tool.exited;
  }
  assert.equal(hostState(), pristine);
});

/** `tool`, killed with SIGKILL, and its record as it is when that comes before the chains are
 * recorded (none named): --remove finds `chains` by the mark in their environment alone, stops
 * them and takes out the rules. */
async function removeUnrecorded(tool: Tool, chains: readonly number[]): Promise<void> {
  const file = join(stateDir, "running.json");
  const record = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  writeFileSync(file, JSON.stringify({ ...record, chains: [] }), { mode: 0o600 });
  try {
    const removed = await lab.run(lab.server, ours("tls-everywhere"), [
      ...["--remove", "--state", stateDir],
    ]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(
      removed.stderr,
      `tls-everywhere: info: tls-everywhere (pid ${tool.child.pid}) ended without taking out what it installed: stopped its chain (pid ${chains.join(", ")}), removed its rules\n`,
    );
    for (const chain of chains) assert.equal(runs(chain), false);
    assert.equal(hostState(), pristine);
  } finally {
    for (const chain of chains) if (runs(chain)) process.kill(chain, "SIGKILL");
  }
}

test("--remove after a SIGKILL (systemd's ExecStopPost): stops the chain left behind and takes out exactly the rules it was started with", async () => {
  // Options other than --remove's defaults: only the record says what the rules were.
  const tool = startTool(["--table", "7100", "--mark", "0x500", "--ipv4-only"]);
  const chain = await killOnlyTool(tool);
  const removed = await lab.run(lab.server, ours("tls-everywhere"), [
    ...["--remove", "--state", stateDir],
  ]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.match(
    removed.stderr,
    /^tls-everywhere: info: .*: stopped its chain \(pid \d+\), removed its rules\n$/,
  );
  assert.equal(runs(chain), false);
  assert.equal(hostState(), pristine);
  // Nothing left to do: a second --remove changes nothing and says nothing.
  const again = await lab.run(lab.server, ours("tls-everywhere"), [
    ...["--remove", "--state", stateDir],
  ]);
  assert.deepEqual([again.code, again.stderr], [0, ""]);
  assert.equal(hostState(), pristine);
});

/** `refused` said, and only said, that `serving` runs with this --state, whose record names it. */
function refusedFor(refused: Tool, serving: Tool): void {
  assert.equal(
    refused.log(),
    `tls-everywhere: fatal: already running as pid ${serving.child.pid} (${stateDir}): stop that one first\n`,
  );
  const record = JSON.parse(readFileSync(join(stateDir, "running.json"), "utf8")) as {
    owner: { pid: number };
  };
  assert.equal(record.owner.pid, serving.child.pid);
}

test("--remove --dry-run after a SIGKILL: prints what --remove would run for the rules the record names, and sh running it leaves the host as it was", async () => {
  // Options other than the defaults: only the record says what the rules were.
  const tool = startTool(["--table", "7100", "--mark", "0x500", "--ipv4-only"]);
  const chain = await killOnlyTool(tool);
  const record = join(stateDir, "running.json");
  try {
    const script = await lab.run(lab.server, ours("tls-everywhere"), [
      ...["--remove", "--dry-run", "--state", stateDir],
    ]);
    assert.equal(script.code, 0, script.stderr);
    assert.equal(script.stderr, "");
    // A dry run: nothing changed yet.
    assert.equal(runs(chain), true);
    assert.equal(existsSync(record), true);
    const commands = script.stdout.split("\n").filter((line) => line && !line.startsWith("#"));
    assert.deepEqual(commands, [
      `kill -TERM ${chain}`,
      "nft delete table inet tls_everywhere",
      "ip -4 route del local 0.0.0.0/0 dev lo table 7100",
      "ip -4 rule del fwmark 1281 lookup 7100",
      "ip -4 rule del fwmark 1280 lookup 7100",
      `rm -f -- ${record}`,
    ]);
    const removed = await lab.run(lab.server, "sh", ["-e"], script.stdout);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(hostState(), pristine);
    await waitFor(() => (runs(chain) ? undefined : true));
    assert.equal(existsSync(record), false);
  } finally {
    if (runs(chain)) process.kill(chain, "SIGKILL");
  }
});

test("a --remove that takes over after a SIGKILL, and in the meantime a start with the same --state took over and serves: the --remove is refused and leaves that one's record and rules alone", async () => {
  const tool = startTool();
  await killOnlyTool(tool);
  // The --remove, held in its second nft (after the chain's stop, before its rules go; the
  // first looks at the table's owner) until the start serves: the seconds a chain with
  // connections open takes to stop.
  const wrapped = join(pki.dir, "nft-held");
  const reached = join(pki.dir, "remove-held");
  const go = join(pki.dir, "remove-go");
  mkdirSync(wrapped, { recursive: true });
  writeFileSync(
    join(wrapped, "nft"),
    `#!/bin/sh\nif [ -e ${reached}.first ]; then\n  touch ${reached}\n  while [ ! -e ${go} ]; do sleep 0.05; done\nfi\ntouch ${reached}.first\nexec /usr/sbin/nft "$@"\n`,
    { mode: 0o755 },
  );
  const remove = launchTool(["--remove", "--state", stateDir], `${wrapped}:${PATH_WITH_BIN}`);
  await waitFor(() => (existsSync(reached) ? true : undefined));
  const next = startTool();
  try {
    await ready(next);
    writeFileSync(go, "");
    assert.deepEqual(await remove.exited, { code: 111, signal: null });
    refusedFor(remove, next);
    await fetchBoth("taken-over-meanwhile");
  } finally {
    writeFileSync(go, "");
    next.child.kill("SIGTERM");
  }
  assert.deepEqual(await next.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
});

test("the shipped systemd unit, its commands as systemd runs them: after a SIGKILL, ExecStopPost= stops the chain left behind and the host is as it was; a clean stop leaves it nothing to do", async () => {
  const unit = join(ROOT, "packaging/systemd/tls-everywhere.service");
  const service = parseUnit(unit).get("Service");
  assert.deepEqual(service?.get("StateDirectory"), ["tls-everywhere"]);
  const stateRoot = join(pki.dir, "unit-state");
  mkdirSync(join(stateRoot, "tls-everywhere"), { recursive: true, mode: 0o700 });
  /** A command of the unit: its words, %S, and $TLS_EVERYWHERE_ARGS from /etc/default. */
  const command = (key: string): string[] => {
    const [exec = ""] = service?.get(key) ?? [];
    const words = splitWords(exec)
      .map((word) => specifiers(word, { d: "", S: stateRoot }))
      .flatMap((word) => (word === "$TLS_EVERYWHERE_ARGS" ? OPTIONS : [word]));
    assert.equal(words[0], "/usr/lib/ucspi-tls/bin/tls-everywhere", `${unit}: ${key}=`);
    return words.slice(1);
  };
  for (const ending of ["SIGKILL", "SIGTERM"] as const) {
    const tool = launchTool(command("ExecStart"));
    await ready(tool);
    await fetchBoth(`unit-${ending}`);
    const [chain] = chainsOf(tool);
    assert.ok(chain !== undefined && runs(chain));
    tool.child.kill(ending);
    await tool.exited;
    const post = await lab.run(lab.server, ours("tls-everywhere"), command("ExecStopPost"));
    assert.equal(post.code, 0, post.stderr);
    assert.equal(
      post.stderr,
      ending === "SIGKILL"
        ? `tls-everywhere: info: tls-everywhere (pid ${tool.child.pid}) ended without taking out what it installed: stopped its chain (pid ${chain}), removed its rules\n`
        : "",
    );
    assert.equal(runs(chain), false);
    assert.equal(hostState(), pristine);
  }
});

test("rules of unknown origin (no record in --state): refused with one line; --remove with the same options takes them out", async () => {
  process.kill(await killOnlyTool(startTool()), "SIGKILL");
  rmSync(join(stateDir, "running.json"));
  const refused = await lab.run(lab.server, ours("tls-everywhere"), ["--state", stateDir]);
  assert.equal(refused.code, 111);
  assert.match(
    refused.stderr,
    /^tls-everywhere: fatal: already installed: nftables table inet tls_everywhere is there \(not recorded in .*, and no tls-everywhere runs: tls-everywhere --remove with the options that installed them takes them out\)$/m,
  );
  const removed = await lab.run(lab.server, ours("tls-everywhere"), ["--remove"]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(hostState(), pristine);
});

test("the rules go in only once every chain listens: when nft installs them, the main chain's port and each --port chain's are listening", async () => {
  // nft as the tool finds it on its PATH: what listens when the table goes in, then the real nft.
  const wrapped = join(pki.dir, "nft-wrapped");
  const seen = join(pki.dir, "listening-at-install");
  mkdirSync(wrapped, { recursive: true });
  writeFileSync(
    join(wrapped, "nft"),
    `#!/bin/sh\n[ "$1" = -f ] && ss -Htln >${seen}\nexec /usr/sbin/nft "$@"\n`,
    { mode: 0o755 },
  );
  const tool = launchTool(
    [...OPTIONS, "--state", stateDir, "--port", String(SMTP), "{", "tcpforward", "}"],
    `${wrapped}:${PATH_WITH_BIN}`,
  );
  await ready(tool, 1000, 2, [LISTEN, LISTEN + 1]);
  tool.child.kill("SIGTERM");
  assert.deepEqual(await tool.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
  const listening = readFileSync(seen, "utf8");
  for (const port of [LISTEN, LISTEN + 1])
    assert.match(listening, new RegExp(`:${port} `), listening);
});

/** Two tls-everywhere started at once, each `args`, held together (an nft on their PATH that
 * lets the first one's check of the table go on only once the second one's comes): both find
 * nothing installed and no record. `check` gets the one that was refused, once it has ended,
 * and the one that serves; then that one is stopped, and the host is as it was. */
async function twoAtOnce(
  tag: string,
  args: [readonly string[], readonly string[]],
  check: (refused: Tool, serving: Tool) => Promise<void>,
): Promise<void> {
  const wrapped = join(pki.dir, `nft-${tag}`);
  const barrier = join(pki.dir, `barrier-${tag}`);
  mkdirSync(wrapped, { recursive: true });
  mkdirSync(barrier, { recursive: true });
  writeFileSync(
    join(wrapped, "nft"),
    `#!/bin/sh
if [ "$1" = list ]; then
  touch ${barrier}/$$
  i=0
  while [ "$(ls ${barrier} | wc -l)" -lt 2 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
fi
exec /usr/sbin/nft "$@"
`,
    { mode: 0o755 },
  );
  const tools = args.map((a) => launchTool(a, `${wrapped}:${PATH_WITH_BIN}`));
  const refused = await Promise.race(tools.map((tool) => tool.exited.then(() => tool)));
  const serving = tools.find((tool) => tool !== refused);
  assert.ok(serving);
  try {
    assert.equal(refused.child.exitCode, 111, refused.log());
    await ready(serving, 1000, 1, []);
    await check(refused, serving);
  } finally {
    serving.child.kill("SIGTERM");
  }
  assert.deepEqual(await serving.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
}

test("two started at once with one --state: one serves, recorded; the other is refused before it starts a chain, and leaves that record alone", async () => {
  // Each on a port of its own, so that no port already taken refuses one of them first.
  const both = [...OPTIONS, "--state", stateDir];
  await twoAtOnce(
    "same-state",
    [both, [...both, "--listen", String(LISTEN - 10)]],
    async (refused, serving) => {
      refusedFor(refused, serving);
      await fetchBoth("same-state");
    },
  );
});

test("two started at once, each with a --state of its own: the one that comes second to install is refused, and the first one's table stays", async () => {
  const other = join(pki.dir, "other-state");
  await twoAtOnce(
    "two-states",
    [
      [...OPTIONS, "--state", stateDir],
      [...OPTIONS, "--state", other, "--listen", String(LISTEN - 10)],
    ],
    async (refused) => {
      assert.match(
        refused.log(),
        /^tls-everywhere: fatal: nftables table inet tls_everywhere was installed meanwhile \(by another tls-everywhere starting\): it is not ours, and stays$/m,
      );
      await fetchBoth("two-states");
    },
  );
});

test("a chain's port already taken: one line, exit 111, before any rule goes in", async () => {
  const squatter = lab.start(lab.server, "python3", [
    "-c",
    `import socket, time\ns = socket.socket(socket.AF_INET6)\ns.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\ns.bind(("::", ${LISTEN + 1}))\ns.listen()\nprint("ready", flush=True)\ntime.sleep(60)`,
  ]);
  try {
    await new Promise((resolve) => squatter.stdout?.once("data", resolve));
    const r = await lab.run(lab.server, ours("tls-everywhere"), [
      ...["--ports", String(HTTP), "--listen", String(LISTEN)],
      ...["--port", String(SMTP), "{", "tcpforward", "}"],
    ]);
    assert.equal(r.code, 111);
    assert.equal(
      r.stderr,
      `tls-everywhere: fatal: port ${LISTEN + 1} (a --port chain, after --listen) is in use: give --listen a free range\n`,
    );
    assert.equal(hostState(), pristine);
  } finally {
    squatter.kill("SIGKILL");
  }
});

test("a chain that ends before it listens (a stage's bad option): one line, exit 111, no rule ever goes in", async () => {
  const tool = startTool(["--port", String(SMTP), "{", "tlsd", "-Q", "tcpforward", "}"]);
  assert.deepEqual(await tool.exited, { code: 111, signal: null });
  assert.match(tool.log(), /^tlsd: illegal option -- Q$/m);
  assert.match(
    tool.log(),
    /^tls-everywhere: fatal: the chain ended before it listened \(status 100\)$/m,
  );
  assert.doesNotMatch(tool.log(), /diverting|rules removed/);
  assert.equal(hostState(), pristine);
  assert.equal(existsSync(join(stateDir, "running.json")), false);
});

test("CERTFILE without KEYFILE, or the reverse: refused with one line, exit 100, no self-signed certificate made, nothing installed", async () => {
  const state = join(pki.dir, "half-pair-state");
  for (const [set, unset] of [
    ["CERTFILE", "KEYFILE"],
    ["KEYFILE", "CERTFILE"],
  ] as const) {
    const file = set === "CERTFILE" ? certificate.cert : certificate.key;
    const r = await lab.run(lab.server, "env", [
      ...["-u", "CERTFILE", "-u", "KEYFILE", `${set}=${file}`],
      ...[ours("tls-everywhere"), ...OPTIONS, "--state", state],
    ]);
    assert.equal(r.code, 100, r.stderr);
    assert.equal(
      r.stderr,
      `tls-everywhere: fatal: ${unset} not set (${set} is): set both, or neither\n`,
    );
    assert.equal(existsSync(join(state, "cert.pem")), false);
    assert.equal(hostState(), pristine);
  }
});

test("bad command lines: one line, exit 100, nothing installed", async () => {
  for (const [args, line] of [
    [
      ["--ports", "80,70000"],
      /^tls-everywhere: --ports: not a port or a range of ports: '70000'$/m,
    ],
    [["--mark", "0"], /^tls-everywhere: --mark needs a number from 1 to/m],
    // tcpserver's own rule, said before anything starts, and by --dry-run too.
    [
      ["--workers", "5", "--limit", "2"],
      /^tls-everywhere: --workers 5 needs --limit 5 or more, not 2\n.*usage: /m,
    ],
    [
      ["--dry-run", "--workers", "5", "--limit", "2"],
      /^tls-everywhere: --workers 5 needs --limit 5 or more, not 2$/m,
    ],
    [["--table", "0"], /^tls-everywhere: --table needs a number from 1 to/m],
    [["--table", "253"], /^tls-everywhere: --table 253: that is the kernel's default table$/m],
    [
      ["--dry-run", "--table", "254"],
      /^tls-everywhere: --table 254: that is the kernel's main table$/m,
    ],
    [
      ["--remove", "--table", "255"],
      /^tls-everywhere: --table 255: that is the kernel's local table$/m,
    ],
    [["extra"], /^tls-everywhere: unexpected 'extra'$/m],
    [
      ["--metrics", "9100"],
      /^tls-everywhere: --metrics needs host:port, \[ipv6\]:port or the absolute path of a socket, not '9100'$/m,
    ],
    [["--port", "25"], /^tls-everywhere: --port 25: expected '\{ prog\.\.\. \}'$/m],
    [["--port", "25", "{", "tcpforward"], /^tls-everywhere: --port 25: '\{' without its '\}'$/m],
    [
      ["--port", "8999", "{", "tcpforward", "}"],
      /^tls-everywhere: --port 8999: that is a chain's own port$/m,
    ],
  ] as const) {
    const r = await lab.run(lab.server, ours("tls-everywhere"), args);
    assert.equal(r.code, 100, r.stderr);
    assert.match(r.stderr, line);
  }
  assert.equal(hostState(), pristine);
});

/** Runs a program with IPv6 sockets refused (EAFNOSUPPORT), by a seccomp filter, as systemd's
 * RestrictAddressFamilies= refuses them (x86_64). */
const NO_INET6 = `import ctypes, os, struct, sys
def op(code, jt, jf, k): return struct.pack("HBBI", code, jt, jf, k)
LD, JEQ, RET, ALLOW = 0x20, 0x15, 0x06, 0x7FFF0000
prog = b"".join([
    op(LD, 0, 0, 4), op(JEQ, 1, 0, 0xC000003E), op(RET, 0, 0, ALLOW),
    op(LD, 0, 0, 0), op(JEQ, 0, 3, 41),
    op(LD, 0, 0, 16), op(JEQ, 0, 1, 10),
    op(RET, 0, 0, 0x00050000 | 97),
    op(RET, 0, 0, ALLOW),
])
buf = ctypes.create_string_buffer(prog, len(prog))
class Prog(ctypes.Structure): _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Prog(len(prog) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
assert libc.prctl(38, 1, 0, 0, 0) == 0
assert libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0) == 0
os.execvp(sys.argv[1], sys.argv[1:])
`;

test("IPv6 unavailable (IPv6 sockets refused, or IPv6 disabled in the namespace): one line saying so, and it diverts IPv4 only, serves, and takes its rules out", async () => {
  const noInet6 = join(pki.dir, "no-inet6.py");
  writeFileSync(noInet6, NO_INET6);
  const refused = launchTool(
    [noInet6, ours("tls-everywhere"), ...OPTIONS, "--state", stateDir],
    PATH_WITH_BIN,
    lab.server,
    "python3",
  );
  refused.child.stdout?.resume();
  try {
    await ready(refused);
    await fetchBoth("no-inet6");
    assert.match(
      refused.log(),
      /^tls-everywhere: warning: IPv6 is unavailable \(IPv6 sockets are refused: address family not supported\): diverting IPv4 only$/m,
    );
    assert.doesNotMatch(lab.sh(lab.server, "nft list ruleset; ip -6 rule"), /ip6 to|2017/);
  } finally {
    refused.child.kill("SIGTERM");
  }
  assert.deepEqual(await refused.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
  // A namespace of its own with IPv6 disabled (no local IPv6 route can go in there).
  const off = makeLab("te6");
  try {
    off.sh(
      off.server,
      "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.lo.disable_ipv6=1",
    );
    const before = off.sh(off.server, "nft list ruleset; ip -4 rule");
    // --dry-run says what the run does: its script, IPv4 only, runs by sh -e.
    const script = await off.run(off.server, ours("tls-everywhere"), ["--dry-run", ...OPTIONS]);
    assert.match(
      script.stderr,
      /^tls-everywhere: warning: IPv6 is unavailable .*: diverting IPv4 only\n$/,
    );
    assert.doesNotMatch(script.stdout, /ip6|ip -6/);
    const byHand = await off.run(off.server, "sh", ["-e"], script.stdout);
    assert.equal(byHand.code, 0, byHand.stderr);
    const undo = await off.run(off.server, ours("tls-everywhere"), [
      ...["--remove", "--dry-run", "--ipv4-only", ...OPTIONS],
    ]);
    assert.equal((await off.run(off.server, "sh", ["-e"], undo.stdout)).code, 0);
    assert.equal(off.sh(off.server, "nft list ruleset; ip -4 rule"), before);
    const tool = launchTool(
      [...OPTIONS, "--state", join(pki.dir, "no-ipv6-state")],
      PATH_WITH_BIN,
      off.server,
    );
    try {
      await waitFor(
        () => (/info: diverting/.test(tool.log()) ? true : undefined),
        15_000,
        () => `it never diverted:\n${tool.log()}`,
      );
      assert.match(
        tool.log(),
        /^tls-everywhere: warning: IPv6 is unavailable \(it is disabled on lo: net.ipv6.conf.lo.disable_ipv6 = 1\): diverting IPv4 only$/m,
      );
      assert.match(off.sh(off.server, "nft list ruleset"), /tproxy ip to :9999/);
    } finally {
      tool.child.kill("SIGTERM");
    }
    assert.deepEqual(await tool.exited, { code: 0, signal: null }, tool.log());
    assert.equal(off.sh(off.server, "nft list ruleset; ip -4 rule"), before);
  } finally {
    off.destroy();
  }
});

test("a chain's port refused for another cause than its use (below 1024 without CAP_NET_BIND_SERVICE): one line naming it, exit 111, nothing installed", async () => {
  const r = await lab.run(lab.server, "setpriv", [
    "--bounding-set=-net_bind_service",
    ours("tls-everywhere"),
    ...["--ports", String(HTTP), "--listen", "999", "--state", stateDir],
  ]);
  assert.equal(r.code, 111, r.stderr);
  assert.equal(
    r.stderr,
    "tls-everywhere: fatal: unable to listen on port 999 (--listen): access denied\n",
  );
  assert.equal(hostState(), pristine);
});

test("another install's tls-everywhere runs: a --remove or a start of this one, with a --state of its own, is refused with one line naming it, and its rules stay", async () => {
  // A second install of the package: its own launcher, its own dist/.
  const other = join(pki.dir, "other-install");
  mkdirSync(join(other, "build"), { recursive: true });
  mkdirSync(join(other, "bin"), { recursive: true });
  for (const file of ["ucspi-launch", "ucspi_native.node"])
    copyFileSync(join(ROOT, "build", file), join(other, "build", file));
  chmodSync(join(other, "build", "ucspi-launch"), 0o755);
  cpSync(join(ROOT, "dist"), join(other, "dist"), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(other, "node_modules"));
  symlinkSync(join("..", "build", "ucspi-launch"), join(other, "bin", "tls-everywhere"));
  const tool = startTool();
  await ready(tool);
  try {
    await refusedAsAnother(tool, join(other, "bin", "tls-everywhere"), [["--remove"], []]);
    await fetchBoth("other-install");
  } finally {
    tool.child.kill("SIGTERM");
  }
  assert.deepEqual(await tool.exited, { code: 0, signal: null });
  assert.equal(hostState(), pristine);
});

test("the tool killed with SIGKILL before it recorded its chain (its record as it is then: no chain named): --remove still stops that chain and takes out its rules", async () => {
  const tool = startTool();
  await removeUnrecorded(tool, [await killOnlyTool(tool)]);
});

test("a rule of the host's that looks up --table (another fwmark): refused with one line, exit 111, where its traffic was sent to the tool's local route while it ran", async () => {
  lab.sh(lab.server, "ip rule add fwmark 0x98 lookup 7001");
  const withRule = hostState();
  const tool = startTool();
  try {
    const how = await Promise.race([tool.exited, ready(tool).then(() => "it started")]);
    assert.deepEqual(how, { code: 111, signal: null });
    assert.equal(
      tool.log(),
      "tls-everywhere: fatal: routing table 7001 (-4) is looked up by a rule not of ours (from all fwmark 0x98 lookup 7001): give --table a table of its own\n",
    );
    assert.equal(hostState(), withRule);
  } finally {
    tool.child.kill("SIGTERM");
    await tool.exited;
    lab.sh(lab.server, "ip rule del fwmark 0x98 lookup 7001");
  }
  assert.equal(hostState(), pristine);
});
