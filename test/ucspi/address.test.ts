// Host and port arguments, mapped addresses, and the per-connection environment.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { isIPv4Mapped, ipv6Groups, unmapIPv4 } from "../../src/net/ip.ts";
import {
  connectionEnv,
  loadServices,
  parseClientHost,
  parsePort,
  parseServerHost,
  UnknownPortError,
  type ConnectionEnv,
} from "../../src/ucspi/address.ts";
import { FatalError } from "../../src/ucspi/errors.ts";

const SERVICES = loadServices(
  [
    "# comment line",
    "echo\t\t7/tcp",
    "echo\t\t7/udp",
    "smtp\t\t25/tcp\t\tmail",
    "ntp\t\t123/udp",
    "mail\t\t99/tcp   # later lines do not override an earlier alias",
    "http\t\t80/tcp\t\twww  # WorldWideWeb HTTP",
    "",
  ].join("\n"),
);

test("loadServices: tcp names and aliases, first mention wins", () => {
  assert.deepEqual(
    [...SERVICES],
    [
      ["echo", 7],
      ["smtp", 25],
      ["mail", 25],
      ["http", 80],
      ["www", 80],
    ],
  );
});

test("parsePort: decimal modulo 65536, service names, errors (all as djb 0.88 did)", () => {
  const table: [string, number][] = [
    ["0", 0],
    ["", 0], // djb: scan_ulong reads nothing and the whole (empty) text is used: port 0
    ["25", 25],
    ["0025", 25],
    ["65535", 65535],
    ["65536", 0],
    ["65561", 25],
    ["18446744073709551641", 25], // 2^64 + 25
    ["smtp", 25],
    ["mail", 25],
    ["echo", 7],
  ];
  for (const [text, port] of table) assert.equal(parsePort(text, SERVICES), port, text);
  for (const text of ["SMTP", " 25", "+25", "smtp ", "ntp", "-1", "0x19", "nosuch"]) {
    assert.throws(
      () => parsePort(text, SERVICES),
      (error: unknown) =>
        error instanceof UnknownPortError &&
        error instanceof FatalError &&
        error.exitCode === 111 &&
        error.message === `unable to figure out port number for ${text}`,
      text,
    );
  }
});

test("parsePort with the system /etc/services", () => {
  assert.equal(parsePort("smtp"), 25);
  assert.equal(parsePort("echo"), 7);
});

test("parsePort: any text gives a port in 0..65535 or UnknownPortError", () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[0-9]{0,30}$/)), (text) => {
      try {
        const port = parsePort(text, SERVICES);
        return Number.isInteger(port) && port >= 0 && port <= 65535;
      } catch (error) {
        return error instanceof UnknownPortError && error.portName === text;
      }
    }),
  );
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 1n << 80n }), (n) => {
      return parsePort(n.toString(), SERVICES) === Number(n % 65536n);
    }),
  );
});

test("parseServerHost / parseClientHost", () => {
  const table: [string, ReturnType<typeof parseServerHost>, ReturnType<typeof parseClientHost>][] =
    [
      ["0", "0.0.0.0", "127.0.0.1"],
      ["", "0.0.0.0", "127.0.0.1"],
      ["127.0.0.1", "127.0.0.1", "127.0.0.1"],
      ["010.0.0.1", "10.0.0.1", "10.0.0.1"],
      ["[127.0.0.2]", "127.0.0.2", "127.0.0.2"],
      ["::", "::", "::"],
      ["::1", "::1", "::1"],
      ["[::1]", "::1", "::1"],
      ["0:0:0:0:0:0:0:1", "0:0:0:0:0:0:0:1", "0:0:0:0:0:0:0:1"],
      ["::ffff:127.0.0.1", "::ffff:127.0.0.1", "::ffff:127.0.0.1"],
      ["fe80::1%eth0", "fe80::1%eth0", "fe80::1%eth0"],
      ["127.1", { name: "127.1" }, { name: "127.1" }],
      ["256.0.0.1", { name: "256.0.0.1" }, { name: "256.0.0.1" }],
      ["00", { name: "00" }, { name: "00" }],
      ["localhost", { name: "localhost" }, { name: "localhost" }],
      ["[localhost]", { name: "[localhost]" }, { name: "[localhost]" }],
    ];
  for (const [text, server, client] of table) {
    assert.deepEqual(parseServerHost(text), server, text);
    assert.deepEqual(parseClientHost(text), client, text);
  }
});

test("parseServerHost never throws; a string result is always an IP", () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.ipV4(), fc.ipV6()), (text) => {
      const host = parseServerHost(text);
      if (typeof host !== "string") return host.name === text;
      return /^[0-9.]+$/.test(host) || host.includes(":");
    }),
  );
});

test("isIPv4Mapped / unmapIPv4 / ipv6Groups", () => {
  assert.equal(isIPv4Mapped("::ffff:127.0.0.1"), true);
  assert.equal(isIPv4Mapped("::FFFF:7f00:1"), true);
  assert.equal(isIPv4Mapped("0:0:0:0:0:ffff:127.0.0.1"), true);
  assert.equal(isIPv4Mapped("::1"), false);
  assert.equal(isIPv4Mapped("127.0.0.1"), false);
  assert.equal(isIPv4Mapped("::127.0.0.1"), false);
  assert.equal(unmapIPv4("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(unmapIPv4("::ffff:7f00:2"), "127.0.0.2");
  assert.equal(unmapIPv4("::1"), "::1");
  assert.equal(unmapIPv4("10.0.0.1"), "10.0.0.1");
  // Any IPv4 text comes back as it is; its mapped IPv6 spellings come back as it.
  fc.assert(
    fc.property(fc.ipV4(), (ip) => unmapIPv4(ip) === ip && unmapIPv4(`::ffff:${ip}`) === ip),
  );
  assert.deepEqual(ipv6Groups("2001:db8::1"), [0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual(ipv6Groups("::ffff:1.2.3.4"), [0, 0, 0, 0, 0, 0xffff, 0x102, 0x304]);
  assert.deepEqual(ipv6Groups("fe80::1%eth0"), [0xfe80, 0, 0, 0, 0, 0, 0, 1]);
  assert.equal(ipv6Groups("1.2.3.4"), undefined);
  fc.assert(
    fc.property(fc.ipV6(), (ip) => {
      const groups = ipv6Groups(ip);
      return (
        groups !== undefined && groups.length === 8 && groups.every((g) => g >= 0 && g <= 0xffff)
      );
    }),
  );
  fc.assert(
    fc.property(fc.ipV4(), (ip) => {
      const canonical = ip
        .split(".")
        .map((part) => String(Number(part)))
        .join(".");
      return isIPv4Mapped(`::ffff:${ip}`) && unmapIPv4(`::ffff:${ip}`) === canonical;
    }),
  );
});

function asObject(env: ConnectionEnv): { set: Record<string, string>; unset: string[] } {
  return { set: Object.fromEntries(env.set), unset: [...env.unset].sort() };
}

test("connectionEnv, IPv4 listener: djb's PROTO=TCP and exactly seven TCP* variables", () => {
  const env = connectionEnv({
    localIp: "127.0.0.1",
    localPort: 34425,
    remoteIp: "127.0.0.2",
    remotePort: 33111,
    localHost: "0",
    listenerIsV6: false,
  });
  assert.deepEqual(asObject(env), {
    set: {
      PROTO: "TCP",
      TCPLOCALIP: "127.0.0.1",
      TCPLOCALPORT: "34425",
      TCPLOCALHOST: "0",
      TCPREMOTEIP: "127.0.0.2",
      TCPREMOTEPORT: "33111",
    },
    unset: ["TCPREMOTEHOST", "TCPREMOTEINFO"],
  });
  const full = connectionEnv({
    localIp: "127.0.0.1",
    localPort: 1,
    remoteIp: "127.0.0.1",
    remotePort: 2,
    remoteHost: "loop.test",
    remoteInfo: "", // djb sets TCPREMOTEINFO= for an ERROR reply
    listenerIsV6: false,
  });
  assert.deepEqual(asObject(full).unset, ["TCPLOCALHOST"]);
  assert.equal(asObject(full).set["TCPREMOTEINFO"], "");
  assert.equal(asObject(full).set["TCPREMOTEHOST"], "loop.test");
});

// What Debian's ucspi-tcp-ipv6 1:0.88-7 tcpserver (/tmp/v6/usr/bin/tcpserver) did, run as
// `env -i PATH=... <bogus TCP*/TCP6* values> tcpserver -v -l0 -HR HOST 0 envdump`
// (and with -h/-p against a stub DNS server via DNSCACHEIP, and -r with a fake identd on
// ::1:113 and 127.0.0.1:113):
//   * listener ::1 (or ::0, ''/0 = dual-stack ::), client ::1:
//       PROTO=TCP6, TCPLOCALIP=::1 TCPLOCALPORT=41705 TCPLOCALHOST=0 TCPREMOTEIP=::1
//       TCPREMOTEPORT=52981 and TCP6LOCALIP TCP6LOCALPORT TCP6LOCALHOST TCP6REMOTEIP
//       TCP6REMOTEPORT with the same values; with -h: TCPREMOTEHOST=TCP6REMOTEHOST=six.test
//       (PTR answer Six.Test lowercased); with -r: TCPREMOTEINFO=TCP6REMOTEINFO=alice.
//       Inherited TCPREMOTEHOST/INFO and TCP6REMOTEHOST/INFO/LOCALHOST were removed with -H/-R.
//       Log: `tcpserver: pid 5296 from ::1`, `tcpserver: ok 5296 0:::1:41705 :::1::52981`.
//   * dual-stack listener, client 127.0.0.1 (also a listener bound to 127.0.0.1, which this
//     build binds as ::ffff:127.0.0.1 on an IPv6 socket):
//       PROTO=TCP, TCPLOCALIP=127.0.0.1 TCPREMOTEIP=127.0.0.1, but
//       TCP6LOCALIP=::ffff:127.0.0.1 TCP6REMOTEIP=::ffff:127.0.0.1; ports, hosts, info equal.
//       Log: `tcpserver: pid 5744 from 127.0.0.1`,
//       `tcpserver: ok 5744 0:::ffff:127.0.0.1:36615 :::ffff:127.0.0.1::40819` (mapped forms).
//   * link-local client fe80::fc:ff:fe00:1 on eth0: as for ::1, plus TCP6INTERFACE=eth0.
//     Without a zone Debian leaves an inherited TCP6INTERFACE=bogus in place; we unset it.
//   * -p with a PTR whose A record does not match: TCPREMOTEHOST and TCP6REMOTEHOST both unset.
// Debian's tcpclient sets only PROTO (TCP6 for an IPv6 peer, TCP for IPv4) and the seven TCP*
// variables (TCPLOCALIP=::1 etc.), never TCP6*; host `0` or '' connected to ::1.
test("connectionEnv, IPv6 listener, IPv6 client: PROTO=TCP6, TCP* and TCP6* alike", () => {
  const env = connectionEnv({
    localIp: "::1",
    localPort: 41705,
    remoteIp: "::1",
    remotePort: 52981,
    localHost: "0",
    remoteInfo: "alice",
    listenerIsV6: true,
  });
  assert.deepEqual(asObject(env), {
    set: {
      PROTO: "TCP6",
      TCPLOCALIP: "::1",
      TCP6LOCALIP: "::1",
      TCPLOCALPORT: "41705",
      TCP6LOCALPORT: "41705",
      TCPLOCALHOST: "0",
      TCP6LOCALHOST: "0",
      TCPREMOTEIP: "::1",
      TCP6REMOTEIP: "::1",
      TCPREMOTEPORT: "52981",
      TCP6REMOTEPORT: "52981",
      TCPREMOTEINFO: "alice",
      TCP6REMOTEINFO: "alice",
    },
    unset: ["TCP6INTERFACE", "TCP6REMOTEHOST", "TCPREMOTEHOST"],
  });
});

test("connectionEnv, IPv6 listener, IPv4-mapped client: PROTO=TCP, mapped TCP6*IP", () => {
  const expected = {
    set: {
      PROTO: "TCP",
      TCPLOCALIP: "127.0.0.1",
      TCP6LOCALIP: "::ffff:127.0.0.1",
      TCPLOCALPORT: "36615",
      TCP6LOCALPORT: "36615",
      TCPREMOTEIP: "127.0.0.1",
      TCP6REMOTEIP: "::ffff:127.0.0.1",
      TCPREMOTEPORT: "40819",
      TCP6REMOTEPORT: "40819",
      TCPREMOTEHOST: "loop.test",
      TCP6REMOTEHOST: "loop.test",
    },
    unset: ["TCP6INTERFACE", "TCP6LOCALHOST", "TCP6REMOTEINFO", "TCPLOCALHOST", "TCPREMOTEINFO"],
  };
  for (const [localIp, remoteIp] of [
    ["::ffff:127.0.0.1", "::ffff:127.0.0.1"], // what Node reports on a dual-stack socket
    ["127.0.0.1", "127.0.0.1"],
  ] as const) {
    const env = connectionEnv({
      localIp,
      localPort: 36615,
      remoteIp,
      remotePort: 40819,
      remoteHost: "loop.test",
      listenerIsV6: true,
    });
    assert.deepEqual(asObject(env), expected);
  }
});

test("connectionEnv, IPv6 listener, link-local client: zone goes to TCP6INTERFACE", () => {
  const env = asObject(
    connectionEnv({
      localIp: "fe80::fc:ff:fe00:1%eth0",
      localPort: 43601,
      remoteIp: "fe80::fc:ff:fe00:1%eth0",
      remotePort: 49012,
      listenerIsV6: true,
    }),
  );
  assert.equal(env.set["PROTO"], "TCP6");
  assert.equal(env.set["TCP6INTERFACE"], "eth0");
  assert.equal(env.set["TCPREMOTEIP"], "fe80::fc:ff:fe00:1");
  assert.equal(env.set["TCP6LOCALIP"], "fe80::fc:ff:fe00:1");
});

test("connectionEnv, client role: PROTO by peer family, only the seven TCP* variables", () => {
  const v6 = asObject(
    connectionEnv({
      localIp: "::1",
      localPort: 53291,
      remoteIp: "::1",
      remotePort: 47002,
      localHost: "six.test",
      remoteHost: "six.test",
      listenerIsV6: true,
      role: "client",
    }),
  );
  assert.deepEqual(v6, {
    set: {
      PROTO: "TCP6",
      TCPLOCALIP: "::1",
      TCPLOCALPORT: "53291",
      TCPLOCALHOST: "six.test",
      TCPREMOTEIP: "::1",
      TCPREMOTEPORT: "47002",
      TCPREMOTEHOST: "six.test",
    },
    unset: ["TCPREMOTEINFO"],
  });
  const v4 = asObject(
    connectionEnv({
      localIp: "::ffff:127.0.0.1",
      localPort: 1,
      remoteIp: "::ffff:127.0.0.1",
      remotePort: 2,
      listenerIsV6: false,
      role: "client",
    }),
  );
  assert.equal(v4.set["PROTO"], "TCP");
  assert.equal(v4.set["TCPREMOTEIP"], "127.0.0.1");
  assert.equal(Object.keys(v4.set).length + v4.unset.length, 8);
});
