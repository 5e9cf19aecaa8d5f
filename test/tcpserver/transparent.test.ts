// tcpserver --transparent under a real TPROXY rule, in network namespaces the test makes (a
// client namespace and a server namespace joined by a veth pair): nftables diverts three ports
// to one listener, whose program sees the address and port the client asked for (not the
// listener's own) and the client's own address and port; and -x rules keyed by the port asked
// for (`PORT/key`, docs/tcpserver.md) deny one of those ports and allow another.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeLab } from "../helpers/netns.ts";
import type { Lab } from "../helpers/netns.ts";
import { ours, run } from "../helpers/programs.ts";
import { rulesText } from "../helpers/rules.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const LISTENER = 9999; // TPROXY's target
const [ALLOWED, DENIED, UNKEYED] = [7001, 7002, 7003]; // the ports diverted to it

const RULES = `
table inet ucspi_tst {
  chain pre {
    type filter hook prerouting priority mangle; policy accept;
    iifname "lo" return
    tcp flags & (fin | syn | rst | ack) != syn socket transparent 1 meta mark set 1 accept
    meta nfproto ipv4 fib daddr type local tcp dport { ${ALLOWED}, ${DENIED}, ${UNKEYED} } tproxy ip to :${LISTENER} meta mark set 1 accept
    meta nfproto ipv6 fib daddr type local tcp dport { ${ALLOWED}, ${DENIED}, ${UNKEYED} } tproxy ip6 to :${LISTENER} meta mark set 1 accept
  }
}
`;

let lab: Lab;
let dir: string;
let server: RunningServer;

before(async () => {
  lab = makeLab("tst");
  dir = scratchDir("tst");
  writeFileSync(join(dir, "rules.nft"), RULES);
  lab.sh(
    lab.server,
    `nft -f ${join(dir, "rules.nft")}
     ip -4 rule add fwmark 1 lookup 100
     ip -6 rule add fwmark 1 lookup 100
     ip route add local 0.0.0.0/0 dev lo table 100
     ip -6 route add local ::/0 dev lo table 100`,
  );
  // A deny keyed by the port asked for, an allow keyed by another; a rule keyed by the
  // listener's own port, which no diverted client asked for, must never be the one met.
  const cdb = join(dir, "rules.cdb");
  const r = await run(ours("tcprules"), [cdb, `${cdb}.tmp`], {
    input: rulesText([
      `${DENIED}/${lab.clientIp}:deny`,
      `${DENIED}/${lab.clientIp6}:deny`,
      `${ALLOWED}/:allow,RULE="for ${ALLOWED}"`,
      `${LISTENER}/:allow,RULE="for the listener's port"`,
      ':allow,RULE="none"',
    ]),
  });
  assert.equal(r.code, 0, r.stderr);
  server = await startServer(
    ours("tcpserver"),
    [
      ...["-vRHl0", "--transparent", "-x", cdb, "::", String(LISTENER)],
      ...["sh", "-c", 'echo "$TCPLOCALIP $TCPLOCALPORT $TCPREMOTEIP $TCPREMOTEPORT $RULE"'],
    ],
    { env: { PATH: "/usr/bin:/bin" }, wrap: ["ip", "netns", "exec", lab.server] },
  );
});

after(async () => {
  await server?.stop();
  lab?.destroy();
});

/** What the listener's program says to a client from `source` port `sourcePort` (in the client
 * namespace) that asked for `ip` port `port`; "" when it is closed without a word. */
async function said(ip: string, port: number, source: string, sourcePort: number) {
  const r = await lab.run(lab.client, "python3", [
    "-c",
    [
      "import socket, sys",
      "s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)",
      "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)",
      "s.bind((sys.argv[3], int(sys.argv[4])))",
      "s.settimeout(10)",
      "s.connect((sys.argv[1], int(sys.argv[2])))",
      "data = b''",
      "while True:",
      "    b = s.recv(4096)",
      "    if not b: break",
      "    data += b",
      "sys.stdout.write(data.decode())",
    ].join("\n"),
    ...[ip, String(port), source, String(sourcePort)],
  ]);
  assert.equal(r.code, 0, r.stderr + server.log());
  return r.stdout;
}

for (const v6 of [false, true]) {
  const family = v6 ? "IPv6" : "IPv4";
  const serverIp = () => (v6 ? lab.serverIp6 : lab.serverIp);
  const clientIp = () => (v6 ? lab.clientIp6 : lab.clientIp);

  test(`${family}: TCPLOCALIP and TCPLOCALPORT are the address and port the client asked for, not the listener's; TCPREMOTEIP and TCPREMOTEPORT the client's own`, async () => {
    for (const [port, sourcePort] of [
      [UNKEYED, v6 ? 41001 : 41002],
      [ALLOWED, v6 ? 41003 : 41004],
    ] as const) {
      const rule = port === ALLOWED ? `for ${ALLOWED}` : "none";
      assert.equal(
        await said(serverIp(), port, clientIp(), sourcePort),
        `${serverIp()} ${port} ${clientIp()} ${sourcePort} ${rule}\n`,
      );
    }
  });

  test(`${family}: -x rules keyed by the port asked for (PORT/key): the client denied on one diverted port, allowed on another`, async () => {
    assert.equal(await said(serverIp(), DENIED, clientIp(), v6 ? 41005 : 41006), "");
    // djb's log line: 0:LOCALIP:LOCALPORT :REMOTEIP::REMOTEPORT (an IPv4 client of the
    // dual-stack listener as ::ffff:a.b.c.d).
    const [local, remote] = [serverIp(), clientIp()].map((ip) => ip.replaceAll(".", "\\."));
    await server.waitForLog(
      new RegExp(
        `^tcpserver: deny \\d+ 0:(::ffff:)?${local}:${DENIED} :(::ffff:)?${remote}::\\d+$`,
      ),
    );
    assert.match(
      await said(serverIp(), ALLOWED, clientIp(), v6 ? 41007 : 41008),
      new RegExp(` for ${ALLOWED}\n$`),
    );
  });
}
