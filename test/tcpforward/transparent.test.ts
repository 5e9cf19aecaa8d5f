// TLS and plaintext for services of a host that know nothing of either, by transparent
// interception (issue 12), in network namespaces the test makes: a client namespace and a
// server namespace joined by a veth pair. In the server namespace, nftables' TPROXY diverts
// the services' ports to our tcpserver --transparent, whose chain (tls-sniff, tlsd, tcpforward)
// connects to the very address and port the client asked for, from the client's own address.
// The services are real and independent: python3's http.server (whose access log names each
// client), and a greeting service for a client that waits to be spoken to.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import type { TestPki } from "../helpers/certs.ts";
import { makeLab } from "../helpers/netns.ts";
import type { Lab } from "../helpers/netns.ts";
import { PATH_WITH_BIN, ours } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";

const CHAIN_PORT = 9999; // TPROXY's target: the chain with full transparency
const PROXY_CHAIN_PORT = 9998; // the chain that tells its service by a PROXY v2 header
const REDIRECT_PORT = 9997; // REDIRECT's target (NAT)
const HTTP = 8080; // python3 http.server on the veth addresses
const LOOPBACK_ONLY = 6379; // python3 http.server on 127.0.0.1 only
const GREETER = 2525; // speaks first
const PROXY_READER = 8181; // our tcpserver --proxy: takes the client from the header
const REDIRECTED = 8282; // REDIRECT to a tcpserver --redirected
const NARROW_CHAIN_PORT = 9996; // a chain whose tcpforward has two source ports only
const NARROW = 8087; // python3 http.server, diverted to that chain

let lab: Lab;
let pki: TestPki;
const logs = new Map<string, () => string>();
const chains: RunningServer[] = [];

/** A child whose stderr is kept, under `name`. */
function keep(name: string, child: ChildProcess): ChildProcess {
  let text = "";
  child.stderr?.setEncoding("latin1");
  child.stderr?.on("data", (s: string) => (text += s));
  child.stdout?.resume();
  logs.set(name, () => text);
  return child;
}

const RULES = (mark: number, fwd: number) => `
table inet ucspi_test {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname "lo" return
    tcp flags & (fin | syn | rst | ack) != syn socket transparent 1 meta mark set ${mark} accept
    meta nfproto ipv4 fib daddr type local tcp dport { ${HTTP}, ${LOOPBACK_ONLY}, ${GREETER} } tproxy ip to :${CHAIN_PORT} meta mark set ${mark} accept
    meta nfproto ipv6 fib daddr type local tcp dport { ${HTTP}, ${LOOPBACK_ONLY}, ${GREETER} } tproxy ip6 to :${CHAIN_PORT} meta mark set ${mark} accept
    meta nfproto ipv4 fib daddr type local tcp dport ${PROXY_READER} tproxy ip to :${PROXY_CHAIN_PORT} meta mark set ${mark} accept
    meta nfproto ipv4 fib daddr type local tcp dport ${NARROW} tproxy ip to :${NARROW_CHAIN_PORT} meta mark set ${mark} accept
    meta nfproto ipv6 fib daddr type local tcp dport ${PROXY_READER} tproxy ip6 to :${PROXY_CHAIN_PORT} meta mark set ${mark} accept
  }
  chain out {
    type route hook output priority mangle; policy accept;
    meta mark ${fwd} ct mark set meta mark
    ct mark ${fwd} meta mark set ct mark
  }
}
table ip ucspi_test_nat {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    tcp dport ${REDIRECTED} redirect to :${REDIRECT_PORT}
  }
}
`;

before(async () => {
  lab = makeLab("tp");
  pki = makePki();
  const s = lab.server;
  const rules = join(pki.dir, "rules.nft");
  writeFileSync(rules, RULES(1, 2));
  lab.sh(
    s,
    `nft -f ${rules}
     for v in -4 -6; do
       ip $v rule add fwmark 1 lookup 100
       ip $v rule add fwmark 2 lookup 100
     done
     ip route add local 0.0.0.0/0 dev lo table 100
     ip -6 route add local ::/0 dev lo table 100`,
  );
  // The services, each on its own addresses, knowing nothing of TLS or of us.
  for (const [name, bind, port] of [
    ["http4", lab.serverIp, HTTP],
    ["http6", lab.serverIp6, HTTP],
    ["loopback", "127.0.0.1", LOOPBACK_ONLY],
    ["narrow", lab.serverIp, NARROW],
  ] as const) {
    keep(
      name,
      lab.start(s, "python3", ["-u", "-m", "http.server", "--bind", bind, String(port)], {
        ...process.env,
        PYTHONUNBUFFERED: "1",
      }),
    );
  }
  const greeter = await startServer(
    ours("tcpserver"),
    ["-RHl0", "::", String(GREETER), "sh", "-c", 'printf "220 hello %s\\r\\n" "$TCPREMOTEIP"'],
    { wrap: ["ip", "netns", "exec", s] },
  );
  const proxyReader = await startServer(
    ours("tcpserver"),
    [
      "-RHl0",
      "--proxy",
      `--proxy-from=${lab.serverIp},${lab.serverIp6}`,
      "::",
      String(PROXY_READER),
      "sh",
      "-c",
      'printf "client %s\\n" "$TCPREMOTEIP"',
    ],
    { wrap: ["ip", "netns", "exec", s] },
  );
  chains.push(greeter, proxyReader);
  const server = pki.server("service", [lab.serverIp, lab.serverIp6]);
  const env = { ...process.env, PATH: PATH_WITH_BIN, CERTFILE: server.cert, KEYFILE: server.key };
  // TLS when the client asks for it, plaintext as before when it does not; either way on to
  // the port the client asked for, from the client's own address (marked: never diverted).
  const forward = ["tcpforward", "-v2", "--transparent", "--mark", "2"];
  chains.push(
    await startServer(
      ours("tcpserver"),
      [
        "-vRHl0",
        "--transparent",
        "::",
        String(CHAIN_PORT),
        "tls-sniff",
        "-t",
        "300",
        "--plain",
        "{",
        ...forward,
        "}",
        "tlsd",
        ...forward,
      ],
      { env, wrap: ["ip", "netns", "exec", s] },
    ),
    await startServer(
      ours("tcpserver"),
      ["-vRHl0", "--transparent", "::", String(PROXY_CHAIN_PORT), "tcpforward", "-v2", "--proxy"],
      { env, wrap: ["ip", "netns", "exec", s] },
    ),
    await startServer(
      ours("tcpserver"),
      [
        "-vRHl0",
        "--transparent",
        "::",
        String(NARROW_CHAIN_PORT),
        "tcpforward",
        "--transparent",
        "--mark",
        "2",
        "--source-ports",
        "20000-20001",
      ],
      { env, wrap: ["ip", "netns", "exec", s] },
    ),
    await startServer(
      ours("tcpserver"),
      [
        "-vRHl0",
        "--redirected",
        "0",
        String(REDIRECT_PORT),
        "sh",
        "-c",
        'printf "asked for %s port %s\\n" "$TCPLOCALIP" "$TCPLOCALPORT"',
      ],
      { wrap: ["ip", "netns", "exec", s] },
    ),
  );
  // Each python service is up once it answers in its namespace.
  for (const [host, port] of [
    [lab.serverIp, HTTP],
    [`[${lab.serverIp6}]`, HTTP],
    ["127.0.0.1", LOOPBACK_ONLY],
  ] as const) {
    await waitFor(
      () => {
        try {
          lab.sh(s, `curl -s -o /dev/null --max-time 2 http://${host}:${port}/`);
          return true;
        } catch {
          return undefined;
        }
      },
      15_000,
      () => `service ${host}:${port} never answered`,
    );
  }
});

after(async () => {
  for (const chain of chains) await chain.stop();
  lab.destroy();
});

const chainLog = () => chains[2]?.log() ?? "";

function curl(args: readonly string[]) {
  return lab.run(lab.client, "curl", ["-sS", "--max-time", "10", ...args]);
}

for (const v6 of [false, true]) {
  const family = v6 ? "IPv6" : "IPv4";
  const host = () => (v6 ? `[${lab.serverIp6}]` : lab.serverIp);
  const clientIp = () => (v6 ? lab.clientIp6 : lab.clientIp);
  const accessLog = () => logs.get(v6 ? "http6" : "http4")?.() ?? "";

  test(`${family}: a plaintext HTTP request reaches the service unchanged, which sees the real client`, async () => {
    const r = await curl([`http://${host()}:${HTTP}/?plain-${family}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Directory listing/);
    const line = await waitFor(() =>
      accessLog()
        .split("\n")
        .find((l) => l.includes(`plain-${family}`)),
    );
    assert.ok(line.startsWith(`${clientIp()} `), line);
  });

  test(`${family}: HTTPS on the same port: tlsd answers with the certificate for the address asked, the service sees the real client`, async () => {
    const r = await curl([
      "--cacert",
      pki.ca.cert,
      "-w",
      "%{http_code} %{ssl_verify_result}",
      "-o",
      "/dev/null",
      `https://${host()}:${HTTP}/?tls-${family}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "200 0");
    const line = await waitFor(() =>
      accessLog()
        .split("\n")
        .find((l) => l.includes(`tls-${family}`)),
    );
    assert.ok(line.startsWith(`${clientIp()} `), line);
    await chains[2]?.waitForLog(
      new RegExp(
        `^tcpforward: info: ${clientIp().replaceAll(".", "\\.")}: connected to ${v6 ? lab.serverIp6 : lab.serverIp.replaceAll(".", "\\.")} port ${HTTP}$`,
      ),
    );
  });

  test(`${family}: a client port used again at once still reaches the chain (the host's TIME_WAIT of its last connection is not a way around it)`, async () => {
    // Port 40000 + i: a plaintext request, then TLS from the very same port. The host holds the
    // first connection in TIME_WAIT; a rule that let packets for it bypass TPROXY would hand
    // the new connection to the service itself, which would answer the ClientHello in HTTP.
    // The client waits for the chain's FIN before it closes, so that the TIME_WAIT is the
    // host's (as with any server that closes first), and binds the same port again at once.
    const r = await lab.run(lab.client, "python3", [
      "-c",
      [
        "import socket, ssl, sys",
        "family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET",
        "def connect():",
        "    s = socket.socket(family, socket.SOCK_STREAM)",
        "    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
        "    s.bind((sys.argv[3], int(sys.argv[4])))",
        "    s.connect((sys.argv[1], int(sys.argv[2])))",
        "    return s",
        "def fetch(s, path):",
        "    s.sendall(b'GET ' + path + b' HTTP/1.0\\r\\n\\r\\n')",
        "    answer = b''",
        "    while True:",
        "        b = s.recv(65536)",
        "        if not b: break",
        "        answer += b",
        "    s.close()",
        "    return answer.split(b' ')[1].decode()",
        "print(fetch(connect(), b'/?reuse-plain'))",
        "ctx = ssl.create_default_context(cafile=sys.argv[5])",
        "print(fetch(ctx.wrap_socket(connect(), server_hostname=sys.argv[1]), b'/?reuse-tls'))",
      ].join("\n"),
      v6 ? lab.serverIp6 : lab.serverIp,
      String(HTTP),
      clientIp(),
      String(v6 ? 40002 : 40001),
      pki.ca.cert,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "200\n200\n");
  });

  test(`${family}: a service bound to loopback only stays private: refused, nothing relayed, one line`, async () => {
    const r = await curl([`http://${host()}:${LOOPBACK_ONLY}/?secret`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /reset by peer|Empty reply|Recv failure/);
    const ip = v6 ? lab.serverIp6 : lab.serverIp;
    await chains[2]?.waitForLog(
      new RegExp(
        `^tcpforward: fatal: ${clientIp().replaceAll(".", "\\.")}: unable to connect to ${ip.replaceAll(".", "\\.")} port ${LOOPBACK_ONLY}: connection refused$`,
      ),
    );
    assert.doesNotMatch(logs.get("loopback")?.() ?? "", /secret/);
  });

  test(`${family}: a client that waits to be spoken to gets the service's greeting, with its own address`, async () => {
    const r = await lab.run(lab.client, "python3", [
      "-c",
      `import socket; s = socket.create_connection(("${v6 ? lab.serverIp6 : lab.serverIp}", ${GREETER}), 10); print(s.recv(200).decode(), end="")`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `220 hello ${clientIp()}\r\n`);
  });

  test(`${family}: with --proxy the service learns the client from a PROXY v2 header instead`, async () => {
    const r = await curl([`telnet://${host()}:${PROXY_READER}`]);
    assert.equal(r.stdout, `client ${clientIp()}\n`);
  });

  test(`${family}: REDIRECT (NAT): tcpserver --redirected names the address and port the client asked for`, async () => {
    const r = await curl([`telnet://${host()}:${REDIRECTED}`]);
    if (v6) {
      // The NAT table here is IPv4 only: IPv6 is refused by the host, as without the rule.
      assert.notEqual(r.code, 0);
      return;
    }
    assert.equal(r.stdout, `asked for ${lab.serverIp} port ${REDIRECTED}\n`);
  });
}

test("a client whose own port is one tcpforward could bind: never that one (it would reach the client's own connection, not the service)", async () => {
  // The chain may bind 20000 or 20001; the client comes from 20000, again and again.
  for (let i = 0; i < 6; i++) {
    const r = await lab.run(lab.client, "python3", [
      "-c",
      [
        "import socket, sys",
        "s = socket.socket()",
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
        "s.bind((sys.argv[2], 20000))",
        "s.settimeout(10)",
        "s.connect((sys.argv[1], int(sys.argv[3])))",
        "s.sendall(b'GET /?narrow HTTP/1.0\\r\\n\\r\\n')",
        "data = b''",
        "while True:",
        "    b = s.recv(65536)",
        "    if not b: break",
        "    data += b",
        "print(data.split(b' ')[1].decode())",
      ].join("\n"),
      lab.serverIp,
      lab.clientIp,
      String(NARROW),
    ]);
    assert.equal(r.stdout, "200\n", r.stderr + (chains[5]?.log() ?? ""));
  }
});

test("the chain's own connections to the services are never diverted again, and its listener took only what TPROXY sent", () => {
  // Every connection the chain accepted was the client's; none came from the chain itself.
  const froms = chainLog()
    .split("\n")
    .filter((l) => / from /.test(l))
    .map((l) => l.replace(/^.* from /, ""));
  assert.ok(froms.length >= 6, chainLog());
  for (const from of froms) assert.ok(from === lab.clientIp || from === lab.clientIp6, from);
});
