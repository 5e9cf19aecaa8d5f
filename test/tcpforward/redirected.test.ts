// REDIRECT (NAT) to a dual-stack tcpserver --redirected (`::`), in network namespaces the test
// makes: an IPv4 client reaches the listener as ::ffff:a.b.c.d, and the address and port it
// asked for are the ones IPv4's NAT kept, not the listener's own. tcpforward then goes on to
// that service rather than back to tcpserver (which it would take for a loop).
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeLab } from "../helpers/netns.ts";
import type { Lab } from "../helpers/netns.ts";
import { PATH_WITH_BIN, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const ASKED = 8282; // REDIRECT to the tcpserver that names what was asked for
const NAMER = 9997;
const GREETER = 2525; // the service itself; REDIRECT to the chain with tcpforward
const CHAIN = 9996;

const RULES = `
table inet ucspi_fwr_nat {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    tcp dport ${ASKED} redirect to :${NAMER}
    tcp dport ${GREETER} redirect to :${CHAIN}
  }
}
`;

let lab: Lab;
let dir: string;
const servers: RunningServer[] = [];

before(async () => {
  lab = makeLab("fwr");
  dir = scratchDir("fwr");
  writeFileSync(join(dir, "rules.nft"), RULES);
  lab.sh(lab.server, `nft -f ${join(dir, "rules.nft")}`);
  const env = { ...process.env, PATH: PATH_WITH_BIN };
  const wrap = ["ip", "netns", "exec", lab.server];
  for (const args of [
    [
      "--redirected",
      "::",
      String(NAMER),
      "sh",
      "-c",
      'printf "asked for %s port %s\\n" "$TCPLOCALIP" "$TCPLOCALPORT"',
    ],
    ["::", String(GREETER), "sh", "-c", 'printf "220 hello %s\\r\\n" "$TCPREMOTEIP"'],
    ["-v", "--redirected", "::", String(CHAIN), "tcpforward"],
  ])
    servers.push(await startServer(ours("tcpserver"), ["-RHl0", ...args], { env, wrap }));
});

after(async () => {
  for (const server of servers) await server.stop();
  lab.destroy();
});

/** The first line the service at ip, port says to a client in the client namespace. */
async function firstLine(ip: string, port: number): Promise<string> {
  const r = await lab.run(lab.client, "python3", [
    "-c",
    `import socket; s = socket.create_connection(("${ip}", ${port}), 10); print(s.recv(200).decode(), end="")`,
  ]);
  assert.equal(r.code, 0, r.stderr + servers.map((s) => s.log()).join(""));
  return r.stdout;
}

for (const v6 of [false, true]) {
  const family = v6 ? "IPv6" : "IPv4";
  const serverIp = () => (v6 ? lab.serverIp6 : lab.serverIp);

  test(`${family} client of a dual-stack --redirected listener: TCPLOCALIP and TCPLOCALPORT are what it asked for`, async () => {
    assert.equal(await firstLine(serverIp(), ASKED), `asked for ${serverIp()} port ${ASKED}\n`);
  });

  test(`${family} client: tcpforward behind --redirected :: reaches the service it asked for`, async () => {
    const before = servers[2]?.log().length ?? 0;
    assert.equal(await firstLine(serverIp(), GREETER), `220 hello ${serverIp()}\r\n`);
    assert.doesNotMatch(servers[2]?.log().slice(before) ?? "", /a loop/);
  });
}
