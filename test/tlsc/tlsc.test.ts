// tlsc with real peers: openssl s_server, our tcpserver + tlsd; under our tcpclient (in-process)
// and djb's (a process of its own). Verification is on by default and never falls back.
import assert from "node:assert/strict";
import { test } from "node:test";
import { BIN, djb, ours, run } from "../helpers/programs.ts";
import { startServer } from "../helpers/server.ts";
import { sServer } from "../helpers/s-server.ts";
import { makePki } from "../helpers/certs.ts";

const pki = makePki();
const server = pki.server("localhost", ["localhost", "127.0.0.1"]);
const PATH = `${BIN}:/usr/bin:/bin`;

const SCRIPT =
  'echo "$SSL_PROTOCOL $SSL_TLS_SNI_SERVERNAME ${CAFILE-nocafile}"; echo hello >&7; head -c 6 <&6';

for (const client of [ours("tcpclient"), djb("tcpclient")]) {
  const who = client.startsWith("/usr")
    ? "djb's tcpclient spawning tlsc"
    : "our tcpclient, tlsc in-process";
  test(`${who}: verified against CAFILE, talks to openssl s_server`, async () => {
    const s = await sServer(server.cert, server.key);
    try {
      const r = await run(
        client,
        ["-RH", "127.0.0.1", String(s.port), "tlsc", "-k", "localhost", "/bin/sh", "-c", SCRIPT],
        {
          env: { PATH, CAFILE: pki.ca.cert },
        },
      );
      assert.equal(r.stderr, "");
      assert.equal(r.code, 0);
      assert.equal(r.stdout, "TLSv1.3 localhost nocafile\nolleh\n");
    } finally {
      s.child.kill();
    }
  });
}

test("verification on by default: an untrusted certificate or a wrong name ends it, the program never runs", async () => {
  const stranger = pki.selfSigned("localhost");
  // The cause in tlsc's words: what failed, and what to set; never Node's own advice.
  for (const [cert, key, name, env, reason] of [
    [
      stranger.cert,
      stranger.key,
      "localhost",
      { PATH, CAFILE: pki.ca.cert },
      `unable to verify the server certificate: self-signed certificate (checked against CAFILE ${pki.ca.cert})`,
    ],
    [
      stranger.cert,
      stranger.key,
      "localhost",
      { PATH },
      "unable to verify the server certificate: self-signed certificate (set CAFILE or CADIR)",
    ],
    [
      server.cert,
      server.key,
      "other.test",
      { PATH, CAFILE: pki.ca.cert },
      "the server certificate is not for other.test: it is for DNS:localhost, IP Address:127.0.0.1",
    ],
  ] as const) {
    const s = await sServer(cert, key);
    try {
      const r = await run(
        ours("tcpclient"),
        ["-RH", "127.0.0.1", String(s.port), "tlsc", "-k", name, "/bin/echo", "RAN"],
        { env },
      );
      assert.equal(r.code, 98);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr, `tlsc: fatal: ${reason}\n`);
    } finally {
      s.child.kill();
    }
  }
});

test("without -k, the address is verified (IP SAN); --no-verify-cert is explicit", async () => {
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "/bin/echo", "served"],
    {
      env: { PATH, CERTFILE: server.cert, KEYFILE: server.key },
    },
  );
  try {
    const ok = await run(
      ours("tcpclient"),
      ["-RH", "127.0.0.1", String(s.port), "tlsc", "/bin/sh", "-c", "cat <&6"],
      {
        env: { PATH, CAFILE: pki.ca.cert },
      },
    );
    assert.equal(ok.stdout, "served\n");
    const stranger = pki.selfSigned("nobody.test");
    const s2 = await startServer(
      ours("tcpserver"),
      ["-RHl0", "127.0.0.1", "0", "tlsd", "/bin/echo", "served"],
      {
        env: { PATH, CERTFILE: stranger.cert, KEYFILE: stranger.key },
      },
    );
    try {
      const refused = await run(
        ours("tcpclient"),
        ["-RH", "127.0.0.1", String(s2.port), "tlsc", "/bin/sh", "-c", "cat <&6"],
        { env: { PATH } },
      );
      assert.equal(refused.code, 98);
      const unverified = await run(
        ours("tcpclient"),
        [
          "-RH",
          "127.0.0.1",
          String(s2.port),
          "tlsc",
          "--no-verify-cert",
          "/bin/sh",
          "-c",
          "cat <&6",
        ],
        { env: { PATH } },
      );
      assert.equal(unverified.stdout, "served\n");
    } finally {
      await s2.stop();
    }
  } finally {
    await s.stop();
  }
});

test("without -k, the host given to tcpclient is verified, never the reverse name of the address", async () => {
  // A certificate for the name 127.0.0.1's PTR record gives (localhost), and not for the address.
  const byName = pki.server("localhost", ["localhost"]);
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "/bin/echo", "served"],
    { env: { PATH, CERTFILE: byName.cert, KEYFILE: byName.key } },
  );
  try {
    // -h: TCPREMOTEHOST is localhost, but the user asked for 127.0.0.1.
    const reverse = await run(
      ours("tcpclient"),
      ["-Rh", "127.0.0.1", String(s.port), "tlsc", "/bin/sh", "-c", "cat <&6"],
      { env: { PATH, CAFILE: pki.ca.cert } },
    );
    assert.equal(reverse.code, 98);
    assert.equal(reverse.stdout, "");
    assert.equal(
      reverse.stderr,
      "tlsc: fatal: the server certificate is not for 127.0.0.1: it is for DNS:localhost\n",
    );
    const named = await run(
      ours("tcpclient"),
      [
        "-Rh",
        "LocalHost",
        String(s.port),
        "tlsc",
        "/bin/sh",
        "-c",
        'echo "$TCPCLIENT_HOST $SSL_TLS_SNI_SERVERNAME"; cat <&6',
      ],
      { env: { PATH, CAFILE: pki.ca.cert } },
    );
    assert.equal(named.stderr, "");
    assert.equal(named.stdout, "localhost localhost\nserved\n");
  } finally {
    await s.stop();
  }
});

test("end to end: tcpclient + tlsc -y with a client certificate, tcpserver + tlsd -y exporting it", async () => {
  const alice = pki.client("alice");
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "-y", "/bin/sh", "-c", 'echo "$SSL_PEER_CERT_SUBJECT"'],
    {
      env: { PATH, CERTFILE: server.cert, KEYFILE: server.key, CAFILE: pki.ca.cert },
    },
  );
  try {
    const r = await run(
      ours("tcpclient"),
      [
        "-RH",
        "127.0.0.1",
        String(s.port),
        "tlsc",
        "-y",
        "-k",
        "localhost",
        "/bin/sh",
        "-c",
        'cat <&6; echo "${CERTFILE-stripped} $SSL_PEER_CERT_SUBJECT"',
      ],
      {
        env: { PATH, CAFILE: pki.ca.cert, CERTFILE: alice.cert, KEYFILE: alice.key },
      },
    );
    assert.equal(r.stderr, "");
    assert.equal(r.stdout, "C=FR, O=Test Org, CN=alice\nstripped CN=localhost\n");
  } finally {
    await s.stop();
  }
});

test("usage and configuration errors", async () => {
  const usage = await run(ours("tlsc"), ["-6", "1", "true"], { env: { PATH } });
  assert.equal(usage.code, 100);
  assert.match(
    usage.stderr,
    /^tlsc: the network fds \(-6, -7\) must be 3 or more\ntlsc: usage: tlsc /,
  );
  const noFds = await run(ours("tlsc"), ["-y", "true"], { env: { PATH } });
  assert.equal(noFds.code, 111);
  assert.equal(noFds.stderr, "tlsc: fatal: unable to use fd 6: file descriptor not open\n");
  // A -6 that is not an option (the program's word, a name's value) does not move tlsc off
  // fd 6. The launcher took it for one and left 6 free for Node: tlsc talked to Node's own
  // descriptor and aborted (SIGABRT), found by the random command lines.
  for (const args of [
    ["-", "-6"],
    ["-k", "-6", "true"],
    ["--", "-6"],
  ]) {
    const notOption = await run(ours("tlsc"), args, { env: { PATH } });
    assert.deepEqual(
      [notOption.signal, notOption.code, notOption.stderr],
      [null, 111, "tlsc: fatal: unable to use fd 6: file descriptor not open\n"],
    );
  }
  // An fd that -6/-7 (--read-fd/--write-fd) name and that is closed is said to be so. It was
  // left free for Node, which opened its own there (epoll, eventfd, its pipes) before tlsc
  // looked: `-6 9 -7 9` aborted (SIGABRT), `-6 15 -7 16` crashed (SIGSEGV), `-6 20 -7 20` said
  // "internal error: open EEXIST", `-6 5 -7 5` sent its handshake into Node's pipe.
  const named: [string[], number][] = [
    [["-6", "15", "-7", "16"], 15],
    [["-S69", "-7", "009"], 9],
    [["--read-fd=12", "--write-fd", "13"], 12],
    [["-7", "20", "--read-fd", "21"], 21],
  ];
  for (let fd = 3; fd <= 24; fd++) named.push([["-6", `${fd}`, "-7", `${fd}`], fd]);
  for (const [args, fd] of named) {
    const closed = await run(ours("tlsc"), [...args, "true"], { env: { PATH } });
    assert.deepEqual(
      [closed.signal, closed.code, closed.stderr],
      [null, 111, `tlsc: fatal: unable to use fd ${fd}: file descriptor not open\n`],
      args.join(" "),
    );
  }
  // One that is open is tlsc's to use, not held (a file here, so refused as such).
  const file = await run(
    "/bin/sh",
    ["-c", `exec 9</dev/null; exec ${ours("tlsc")} -6 9 -7 9 true`],
    {
      env: { PATH },
    },
  );
  assert.deepEqual(
    [file.code, file.stderr],
    [111, "tlsc: fatal: unable to use fd 9: not a socket or a pipe\n"],
  );
  // Without fds 6/7 too, a command line it cannot take is told as such first.
  const usageNoFds = await run(ours("tlsc"), ["-X", "true"], { env: { PATH } });
  assert.equal(usageNoFds.code, 100);
  assert.match(usageNoFds.stderr, /^tlsc: illegal option -- X\ntlsc: usage: tlsc /);
  const noCert = await run("/bin/sh", ["-c", `exec 6<&0 7>&1; exec ${ours("tlsc")} -y true`], {
    env: { PATH },
  });
  assert.equal(noCert.code, 100);
  assert.equal(noCert.stderr, "tlsc: fatal: CERTFILE not set\n");
  // A client pair that cannot serve was OpenSSL's words: "fatal: internal error:
  // error:0480006C:PEM routines::no start line", exit 111. Now tlsd's line and status.
  for (const [cert, key, problem] of [
    [pki.ca.key, server.key, "the certificate file holds no PEM certificate"],
    [server.cert, server.cert, "the key file holds a certificate, not a private key"],
    [server.cert, pki.ca.key, "the key does not belong to the certificate"],
  ] as const) {
    const bad = await run("/bin/sh", ["-c", `exec 6<&0 7>&1; exec ${ours("tlsc")} -y true`], {
      env: { PATH, CERTFILE: cert, KEYFILE: key },
    });
    assert.deepEqual(
      [bad.code, bad.stderr],
      [96, `tlsc: fatal: unable to use certificate ${cert} with key ${key}: ${problem}\n`],
    );
  }
});

test("--mod-ssl: the mod_ssl / ucspi-ssl variables about the server", async () => {
  const s = await startServer(
    ours("tcpserver"),
    ["-RHl0", "127.0.0.1", "0", "tlsd", "/bin/echo", "hi"],
    {
      env: { PATH, CERTFILE: server.cert, KEYFILE: server.key },
    },
  );
  try {
    const r = await run(
      ours("tcpclient"),
      [
        "-RH",
        "127.0.0.1",
        String(s.port),
        "tlsc",
        "--mod-ssl",
        "-k",
        "localhost",
        "/bin/sh",
        "-c",
        "env | grep ^SSL_ | sort",
      ],
      { env: { PATH, CAFILE: pki.ca.cert } },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^SSL_SERVER_S_DN=\/CN=localhost$/m);
    assert.match(r.stdout, /^SSL_SERVER_S_DN_CN=localhost$/m);
    assert.match(r.stdout, /^SSL_SERVER_I_DN_CN=Test CA$/m);
    assert.match(r.stdout, /^SSL_CIPHER_USEKEYSIZE=(128|256)$/m);
    assert.match(r.stdout, /^SSL_SERVER_M_SERIAL=([0-9A-F]{2})+$/m);
    assert.doesNotMatch(r.stdout, /^SSL_CLIENT_/m, "no client certificate was sent");
  } finally {
    await s.stop();
  }
});
