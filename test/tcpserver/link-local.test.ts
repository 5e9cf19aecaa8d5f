// -I interface, Debian's ucspi-tcp-ipv6 letter for link-local addresses, in network namespaces
// the test makes (a veth pair with fe80:: addresses of its own): a link-local address means
// something only on its interface, and `tcpserver -I eth0 fe80::1 25` (or `tcpclient -I eth0
// fe80::1 25`) names it without the `%eth0` zone. Ours said "illegal option -- I" to both.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { makeLab } from "../helpers/netns.ts";
import type { Lab } from "../helpers/netns.ts";
import { debianIpv6, ours } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";

const SERVER_LL = "fe80::78:1";
const CLIENT_LL = "fe80::78:2";
const GREET = ["sh", "-c", 'printf "hello %s%%%s\\n" "$TCPREMOTEIP" "$TCP6INTERFACE"'];

let lab: Lab;
let serverIf: string;
let clientIf: string;
const servers = new Map<string, RunningServer>();

/** The namespace's one interface besides lo (the veth). */
function veth(ns: string): string {
  const name = lab.sh(ns, "ip -o link show | awk -F': ' '$2 != \"lo\" { print $2 }'");
  return name.trim().split("@")[0] ?? "";
}

before(async () => {
  lab = makeLab("tll");
  serverIf = veth(lab.server);
  clientIf = veth(lab.client);
  lab.sh(lab.server, `ip -6 addr add ${SERVER_LL}/64 dev ${serverIf} nodad`);
  lab.sh(lab.client, `ip -6 addr add ${CLIENT_LL}/64 dev ${clientIf} nodad`);
  const wrap = ["ip", "netns", "exec", lab.server];
  for (const [who, file] of [
    ["ours", ours("tcpserver")],
    ["Debian's", debianIpv6("tcpserver")],
  ] as const) {
    const args = ["-RHl0", "-I", serverIf, SERVER_LL, "0", ...GREET];
    servers.set(who, await startServer(file, args, { wrap }));
  }
});

after(async () => {
  for (const server of servers.values()) await server.stop();
  lab.destroy();
});

for (const server of ["ours", "Debian's"])
  for (const [client, file] of [
    ["our", () => ours("tcpclient")],
    ["Debian's", () => debianIpv6("tcpclient")],
  ] as const)
    test(`${client} tcpclient -I reaches ${server} tcpserver -I on a link-local address`, async () => {
      const port = servers.get(server)?.port ?? 0;
      const r = await lab.run(lab.client, file(), [
        "-RHl0",
        "-I",
        clientIf,
        SERVER_LL,
        String(port),
        "sh",
        "-c",
        'cat <&6; echo "local $TCPLOCALIP remote $TCPREMOTEIP"',
      ]);
      assert.equal(r.code, 0, `${r.stderr}${servers.get(server)?.log()}`);
      assert.equal(
        r.stdout,
        `hello ${CLIENT_LL}%${serverIf}\nlocal ${CLIENT_LL} remote ${SERVER_LL}\n`,
      );
    });

test("without -I a link-local address names no interface: one fatal line, exit 111", async () => {
  const server = await lab.run(lab.server, ours("tcpserver"), ["-RHl0", SERVER_LL, "0", "true"]);
  assert.equal(server.code, 111);
  assert.equal(server.stderr, "tcpserver: fatal: unable to bind: invalid argument\n");
  const client = await lab.run(lab.client, ours("tcpclient"), ["-RHl0", SERVER_LL, "1", "true"]);
  assert.equal(client.code, 111);
  assert.match(client.stderr, /^tcpclient: unable to connect to fe80::78:1 port 1: /);
});

test("-I or a %zone naming no interface of this host: one line, exit 111, at once", async () => {
  const r = await lab.run(lab.server, ours("tcpserver"), ["-I", "nosuch0", SERVER_LL, "0", "true"]);
  assert.equal(r.code, 111);
  assert.equal(r.stderr, "tcpserver: fatal: unable to bind: no network interface nosuch0\n");
  // tcpclient waited out its connect limit (60 s) on such a zone, then said "timed out".
  for (const args of [["-I", "nosuch0", SERVER_LL], [`${SERVER_LL}%nosuch0`]]) {
    const c = await lab.run(lab.client, ours("tcpclient"), ["-RH", ...args, "1", "true"]);
    assert.deepEqual(
      [c.code, c.stderr],
      [
        111,
        `tcpclient: unable to connect to ${SERVER_LL}%nosuch0 port 1: no network interface nosuch0\n`,
      ],
    );
  }
  // An address that is not link-local does not need one: -I is ignored, as by Debian's.
  const s = await startServer(ours("tcpserver"), ["-RHl0", "-I", "nosuch0", "::1", "0", "true"], {
    wrap: ["ip", "netns", "exec", lab.server],
  });
  await s.stop();
});
