// IPv6 link-local clients diverted to tcpforward, in network namespaces the test makes: the
// address asked for (TCPLOCALIP) and the client's own (TCPREMOTEIP, which --transparent
// connects from) mean something only on their interface. tcpserver names it in TCP6INTERFACE,
// as ucspi-tcp-ipv6 does, and tcpforward connects and binds on it.
import assert from "node:assert/strict";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeLab } from "../helpers/netns.ts";
import type { Lab } from "../helpers/netns.ts";
import { PATH_WITH_BIN, ROOT, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const SERVER_LL = "fe80::77:1";
const CLIENT_LL = "fe80::77:2";
const TRANSPARENT_CHAIN = 9999; // tcpforward --transparent: from the client's own address
const PLAIN_CHAIN = 9998; // tcpforward: from an address of this host
const GREETER = 2525; // diverted to TRANSPARENT_CHAIN
const PLAIN_GREETER = 2526; // diverted to PLAIN_CHAIN
const ZONED = 9997; // tcpforward with a link-local host given with its zone
const OURS = 9996; // our tcpserver, and Debian's ucspi-tcp-ipv6 one, with no interception
const DEBIANS = 9995;

const RULES = `
table inet ucspi_fwl {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname "lo" return
    tcp flags & (fin | syn | rst | ack) != syn socket transparent 1 meta mark set 1 accept
    meta nfproto ipv6 fib daddr type local tcp dport ${GREETER} tproxy ip6 to :${TRANSPARENT_CHAIN} meta mark set 1 accept
    meta nfproto ipv6 fib daddr type local tcp dport ${PLAIN_GREETER} tproxy ip6 to :${PLAIN_CHAIN} meta mark set 1 accept
  }
  chain out {
    type route hook output priority mangle; policy accept;
    meta mark 2 ct mark set meta mark
    ct mark 2 meta mark set ct mark
  }
}
`;

let lab: Lab;
let dir: string;
let clientIf: string;
let serverIf: string;
const servers: RunningServer[] = [];

/** The namespace's one interface besides lo (the veth). */
function veth(ns: string): string {
  const name = lab.sh(ns, "ip -o link show | awk -F': ' '$2 != \"lo\" { print $2 }'");
  return name.trim().split("@")[0] ?? "";
}

before(async () => {
  lab = makeLab("fwl");
  dir = scratchDir("fwl");
  writeFileSync(join(dir, "rules.nft"), RULES);
  serverIf = veth(lab.server);
  clientIf = veth(lab.client);
  lab.sh(lab.client, `ip -6 addr add ${CLIENT_LL}/64 dev ${clientIf} nodad`);
  lab.sh(
    lab.server,
    `ip -6 addr add ${SERVER_LL}/64 dev ${serverIf} nodad
     nft -f ${join(dir, "rules.nft")}
     ip -6 rule add fwmark 1 lookup 100
     ip -6 rule add fwmark 2 lookup 100
     ip -6 route add local ::/0 dev lo table 100
     ip -6 route add local fe80::/64 dev ${serverIf} table 100`,
  );
  // The last route: the service's answers to the client's link-local address leave on the
  // interface (its scope), where lo's route does not match; this one takes them back to
  // tcpforward's transparent socket instead of out to the real client.
  const env = { ...process.env, PATH: PATH_WITH_BIN };
  const wrap = ["ip", "netns", "exec", lab.server];
  const greet = ["sh", "-c", 'printf "220 hello %s%%%s\\r\\n" "$TCPREMOTEIP" "$TCP6INTERFACE"'];
  for (const args of [
    ["::", String(OURS), ...greet],
    ["::", String(GREETER), ...greet],
    ["::", String(PLAIN_GREETER), ...greet],
    [
      "-v",
      "--transparent",
      "::",
      String(TRANSPARENT_CHAIN),
      "tcpforward",
      "--transparent",
      "--mark",
      "2",
    ],
    ["-v", "--transparent", "::", String(PLAIN_CHAIN), "tcpforward"],
    ["-v", "::", String(ZONED), "tcpforward", `${SERVER_LL}%${serverIf}`, String(PLAIN_GREETER)],
  ])
    servers.push(await startServer(ours("tcpserver"), ["-RHl0", ...args], { env, wrap }));
  const debian = join(ROOT, "build/peers/ucspi-tcp-ipv6/usr/bin/tcpserver");
  assert.ok(existsSync(debian), `${debian} is missing: sh scripts/fetch-test-peers.sh`);
  // Debian's takes :: as a name to look up: ::0 is its wildcard.
  servers.push(await startServer(debian, ["-RHl0", "::0", String(DEBIANS), ...greet], { wrap }));
});

after(async () => {
  for (const server of servers) await server.stop();
  lab.destroy();
});

/** The first line the service says to a client from CLIENT_LL to SERVER_LL port `port`. */
async function firstLine(port: number): Promise<string> {
  const r = await lab.run(lab.client, "python3", [
    "-c",
    [
      "import socket, sys",
      "index = socket.if_nametoindex(sys.argv[1])",
      "s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)",
      "s.settimeout(10)",
      "s.bind((sys.argv[2], 0, 0, index))",
      "s.connect((sys.argv[3], int(sys.argv[4]), 0, index))",
      'print(s.recv(200).decode(), end="")',
    ].join("\n"),
    clientIf,
    CLIENT_LL,
    SERVER_LL,
    String(port),
  ]);
  assert.equal(r.code, 0, r.stderr + servers.map((s) => s.log()).join(""));
  return r.stdout;
}

test("a link-local client's variables are Debian's: the address bare, its interface in TCP6INTERFACE", async () => {
  const line = await firstLine(OURS);
  assert.equal(line, `220 hello ${CLIENT_LL}%${serverIf}\r\n`);
  assert.equal(line, await firstLine(DEBIANS));
});

test("a link-local client reaches the link-local address it asked for, from this host's address on that interface", async () => {
  const line = await firstLine(PLAIN_GREETER);
  assert.match(line, new RegExp(`^220 hello fe80::[0-9a-f:]+%${serverIf}\r\n$`), servers[4]?.log());
  assert.doesNotMatch(servers[4]?.log() ?? "", /fatal/);
});

test("tcpforward --transparent: a link-local client reaches the service from its own link-local address", async () => {
  const line = await firstLine(GREETER);
  assert.match(line, new RegExp(`^220 hello ${CLIENT_LL}%${serverIf}\\r\\n$`), servers[3]?.log());
  assert.doesNotMatch(servers[3]?.log() ?? "", /fatal/);
});

test("a link-local host given with its zone (fe80::1%eth0) is reached on that interface", async () => {
  const line = await firstLine(ZONED);
  assert.match(
    line,
    new RegExp(`^220 hello fe80::[0-9a-f:]+%${serverIf}\\r\\n$`),
    servers[5]?.log(),
  );
});
