// starttls-wrapper with real plaintext servers and real clients: exim4 -bs (SMTP), dovecot's
// lmtp (LMTP), GNU imap4d (IMAP) and pop3d (POP3) behind the wrapper; swaks, python3's
// smtplib/imaplib/poplib, openssl s_client, curl and msmtp in front. Every protocol runs both
// ways: the remote hand-over (the wrapper connects to `tcpserver --proxy ... tlsd prog` and
// relays the TLS bytes) and local mode (TLS in the wrapper's own process). Clients that can
// choose their source address connect from 127.0.0.2, so the real client is told apart from the
// wrapper's own connection to the TLS service (from 127.0.0.1).
import assert from "node:assert/strict";
import { readdirSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { makePki } from "../helpers/certs.ts";
import { imapServer, lmtpServer, pop3Server, smtpServer } from "../helpers/mail-servers.ts";
import type { MailServer } from "../helpers/mail-servers.ts";
import { escapeRegExp } from "../helpers/normalize.ts";
import { cmdline } from "../helpers/procs.ts";
import { PATH_WITH_BIN as PATH, ours, run } from "../helpers/programs.ts";
import type { RunResult } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import type { RunningServer } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

const pki = makePki();
const cert = pki.server("localhost", ["localhost", "127.0.0.1"]);
const CA = pki.ca.cert;
/** Where the clients connect from: not the wrapper's address (127.0.0.1). */
const CLIENT_IP = "127.0.0.2";

type Mode = "remote" | "local" | "local -k";
type Protocol = "smtp" | "lmtp" | "imap" | "pop3";

/** A mail server behind the wrapper, one way (remote or local), opportunistic and, where asked,
 * require mode too. */
interface Wrapped {
  mail: MailServer;
  /** The opportunistic wrapper's port (-o). */
  port: number;
  /** The require-mode wrapper's port (-r), when started. */
  requirePort: number;
  /** What the TLS service's tcpserver logged so far (remote mode; "" in local mode). */
  serviceLog(): string;
  /** Everything the servers logged (for failure messages). */
  logs(): string;
}

/**
 * Sets up `protocol`'s mail server behind starttls-wrapper for the tests of one describe():
 * remote, a TLS service `tcpserver --proxy -RHl0 127.0.0.1 0 tlsd prog` and the wrapper handing
 * to it; local, the wrapper with CERTFILE/KEYFILE in its env. Stopped in after().
 */
function wrapped(
  protocol: Protocol,
  make: (dir: string) => Promise<MailServer>,
  mode: Mode,
  withRequire: boolean,
): Wrapped {
  const servers: RunningServer[] = [];
  const names: string[] = [];
  let dir = "";
  const w: Wrapped = {
    mail: undefined as unknown as MailServer,
    port: 0,
    requirePort: 0,
    serviceLog: () => (mode === "remote" ? (servers[0]?.log() ?? "") : ""),
    logs: () =>
      servers.map((s, i) => `--- ${names[i]} log:\n${s.log()}`).join("\n") +
      `\n--- mail server log:\n${w.mail?.log() ?? ""}`,
  };
  const tls = { CERTFILE: cert.cert, KEYFILE: cert.key };
  before(async () => {
    dir = scratchDir(`wrap-${protocol}`);
    w.mail = await make(dir);
    const env = { ...process.env, PATH, ...w.mail.env };
    let service: string[] = [];
    if (mode === "remote") {
      const s = await startServer(
        ours("tcpserver"),
        ["-v", "--proxy", "-RHl0", "127.0.0.1", "0", "tlsd", ...w.mail.argv],
        { env: { ...env, ...tls } },
      );
      servers.push(s);
      names.push("TLS service (tcpserver --proxy tlsd)");
      service = ["127.0.0.1", String(s.port)];
    }
    const wrapper = async (policy: "-o" | "-r") => {
      const s = await startServer(
        ours("tcpserver"),
        [
          ...["-v", "-RHl0", "127.0.0.1", "0"],
          ...["starttls-wrapper", "-v", "2", "-p", protocol, policy],
          ...(mode === "local -k" ? ["-k"] : []),
          ...service,
          ...w.mail.argv,
        ],
        { env: mode === "remote" ? env : { ...env, ...tls } },
      );
      servers.push(s);
      names.push(`wrapper ${policy}`);
      return s.port;
    };
    w.port = await wrapper("-o");
    if (withRequire) w.requirePort = await wrapper("-r");
  });
  after(async () => {
    for (const s of servers) await s.stop();
    await w.mail?.close();
    // A plaintext server the wrapper lets go (SIGTERM at STARTTLS) must be gone: GNU imap4d
    // sometimes wedges in its SIGTERM handler (exit() blocked in freelocale on
    // __libc_setlocale_lock, seen with gdb), and the chain then sends SIGKILL after a grace
    // of 2 s. A leftover (killed here, our own, by pid) fails the suite.
    const left = await waitFor(
      () => {
        const pids = leftovers(dir);
        return pids.length === 0 ? pids : undefined;
      },
      5_000,
      () => "",
    ).catch(() => leftovers(dir));
    if (left.length > 0) {
      const what = left.map((pid) => `${pid}: ${cmdline(pid)}`).join("\n");
      for (const pid of left) process.kill(pid, "SIGKILL");
      assert.fail(`processes of this suite outlived their servers:\n${what}`);
    }
  });
  return w;
}

/** Processes still running a program with a file under `dir` (a mail server of the suite). */
function leftovers(dir: string): number[] {
  if (!dir) return [];
  return readdirSync("/proc")
    .filter((name) => /^[0-9]+$/.test(name))
    .map(Number)
    .filter((pid) => pid !== process.pid && cmdline(pid).includes(`${dir}/`));
}

/** Runs `body`; a failure carries the servers' logs. */
async function withLogs(w: Wrapped, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    if (e instanceof Error) e.message += `\n${w.logs()}`;
    throw e;
  }
}

/** Runs a python3 script with `args`; returns what it printed as JSON on its last line. */
async function python(script: string, args: (string | number)[]): Promise<Record<string, unknown>> {
  const r = await run("python3", ["-c", script, ...args.map(String)], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, `python3 failed:\n${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as Record<string, unknown>;
}

/** The delivered message that matches `pattern`, waiting (bounded) for the delivery. */
function delivered(mail: MailServer, pattern: RegExp): Promise<string> {
  return waitFor(
    () => mail.messages().find((m) => pattern.test(m)),
    15_000,
    () => `no delivered message matches ${pattern}: ${JSON.stringify(mail.messages())}`,
  );
}

/** exim's Received line for a client that said HELO/EHLO `helo` from CLIENT_IP, and never the
 * wrapper's address anywhere in the message. */
function assertRealClient(message: string, helo: string): void {
  const received = message.match(/^Received: [^\n]*(?:\n\t[^\n]*)*/m)?.[0] ?? "";
  assert.match(
    received,
    new RegExp(`^Received: from \\[127\\.0\\.0\\.2\\] \\(helo=${helo.replace(/\./g, "\\.")}\\)`),
    message,
  );
  assert.doesNotMatch(message, /127\.0\.0\.1/, "the wrapper's address leaked into the message");
}

/** Unique subjects, so the tests of one server never mistake each other's mail. */
let serial = 0;

/** A plaintext client: the greeting, then `bytes` in one write; everything until the server
 * closes (bounded). */
function session(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", localAddress: CLIENT_IP });
    let got = "";
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no end; got ${JSON.stringify(got)}`));
    }, 20_000);
    socket.setEncoding("latin1");
    socket.on("data", (text: string) => {
      if (got === "") socket.write(bytes, "latin1");
      got += text;
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}
const subject = (what: string) => `${what} ${++serial} ${process.pid}`;

/** openssl s_client -starttls `proto` to `port`: verifies the chain, sends `input` after the
 * handshake and stays until the server closes (-ign_eof). */
function sClient(proto: string, port: number, input: string): Promise<RunResult> {
  return run(
    "openssl",
    [
      ...["s_client", "-connect", `127.0.0.1:${port}`, "-starttls", proto],
      ...["-CAfile", CA, "-verify_return_error", "-servername", "localhost", "-ign_eof"],
    ],
    { input, timeoutMs: 20_000 },
  );
}

const SMTPLIB = `
import json, smtplib, ssl, sys
port, rcpt, ca, subject, tls = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "tls"
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10,
                 source_address=("${CLIENT_IP}", 0))
s.ehlo()
out = {"before": sorted(s.esmtp_features)}
if tls:
    out["starttls"] = s.starttls(context=ssl.create_default_context(cafile=ca))[0]
    out["version"] = s.sock.version()
    s.ehlo()
    out["after"] = sorted(s.esmtp_features)
out["refused"] = s.sendmail("sender@client.test", [rcpt], "Subject: " + subject + "\\r\\n\\r\\nhello\\r\\n")
out["quit"] = s.quit()[0]
print(json.dumps(out))
`;

const LMTPLIB = `
import json, smtplib, ssl, sys
port, rcpt, ca, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = smtplib.LMTP("127.0.0.1", port, local_hostname="client.test", timeout=10,
                 source_address=("${CLIENT_IP}", 0))
s.ehlo()
out = {"before": sorted(s.esmtp_features)}
out["starttls"] = s.starttls(context=ssl.create_default_context(cafile=ca))[0]
out["version"] = s.sock.version()
s.ehlo()
out["after"] = sorted(s.esmtp_features)
out["refused"] = s.sendmail("sender@client.test", [rcpt], "Subject: " + subject + "\\r\\n\\r\\nhello\\r\\n")
out["quit"] = s.quit()[0]
print(json.dumps(out))
`;

const IMAPLIB = `
import imaplib, json, ssl, sys
port, user, password, ca, how = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
out = {"welcome": m.welcome.decode(), "before": sorted(m.capabilities)}
if how == "login-first":
    try:
        m.login(user, password)
        out["early"] = "accepted"
    except imaplib.IMAP4.error as e:
        out["early"] = str(e)
if how != "plain":
    out["starttls"] = m.starttls(ssl_context=ssl.create_default_context(cafile=ca))[0]
    out["version"] = m.sock.version()
    out["after"] = sorted(m.capabilities)
out["login"] = m.login(user, password)[0]
typ, data = m.select("INBOX")
out["select"] = typ
out["exists"] = int(data[0])
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
out["subject"] = data[0][1].decode().strip()
out["logout"] = m.logout()[0]
print(json.dumps(out))
`;

const POPLIB = `
import json, poplib, ssl, sys
port, user, password, ca, how = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
p = poplib.POP3("127.0.0.1", port, timeout=10)
out = {"welcome": p.getwelcome().decode(), "before": sorted(p.capa())}
if how == "user-first":
    try:
        p.user(user)
        out["early"] = "accepted"
    except poplib.error_proto as e:
        out["early"] = e.args[0].decode()
out["stls"] = p.stls(context=ssl.create_default_context(cafile=ca)).decode()
out["version"] = p.sock.version()
out["after"] = sorted(p.capa())
p.user(user)
out["pass"] = p.pass_(password).decode()
out["stat"] = list(p.stat())
out["quit"] = p.quit().decode()
print(json.dumps(out))
`;

/** swaks with STARTTLS (verifying the certificate) from CLIENT_IP: a message to the mail
 * server behind `w`'s opportunistic wrapper, with `subj` as its subject. */
function swaksTls(w: Wrapped, subj: string) {
  return run("swaks", [
    ...["--server", "127.0.0.1", "--port", String(w.port), "--local-interface", CLIENT_IP],
    ...["--tls", "--tls-verify", "--tls-ca-path", CA, "--tls-sni", "localhost"],
    ...["--helo", "swaks.test", "--from", "sender@swaks.test", "--to", w.mail.address],
    ...["--header", `Subject: ${subj}`, "--body", "hello from swaks"],
  ]);
}

for (const mode of ["remote", "local"] as const) {
  describe(`SMTP, exim4 -bs behind the wrapper (${mode})`, () => {
    const w = wrapped("smtp", (dir) => smtpServer(dir, { clientAddress: "env" }), mode, true);

    test("swaks --tls: STARTTLS advertised, mail delivered, Received names the real client", () =>
      withLogs(w, async () => {
        const subj = subject("swaks tls");
        const r = await swaksTls(w, subj);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /^<- {2}220 mail\.test ESMTP Exim /m);
        assert.match(r.stdout, /^<- {2}250-STARTTLS\r?$/m);
        assert.match(r.stdout, /^<- {2}220 2\.0\.0 Ready to start TLS/m);
        // After the handshake: exim's own EHLO reply (no STARTTLS: exim never had it), with the
        // client's address that tcpserver --proxy / the wrapper passed in TCPREMOTEIP.
        assert.match(r.stdout, /^<~ {2}250-mail\.test Hello swaks\.test \[127\.0\.0\.2\]/m);
        assert.doesNotMatch(r.stdout, /^<~ .*STARTTLS/m);
        // The fresh exim's greeting was swallowed: nothing but the EHLO reply after the go-ahead.
        assert.doesNotMatch(r.stdout, /^<~ {2}220 /m);
        assert.match(r.stdout, /^<~ {2}250 OK id=/m);
        assertRealClient(
          await delivered(w.mail, new RegExp(`^Subject: ${escapeRegExp(subj)}$`, "m")),
          "swaks.test",
        );
      }));

    test("swaks --tls-optional takes the advertised STARTTLS and delivers", () =>
      withLogs(w, async () => {
        const subj = subject("swaks tls-optional");
        const r = await run("swaks", [
          ...["--server", "127.0.0.1", "--port", String(w.port), "--local-interface", CLIENT_IP],
          ...["--tls-optional", "--tls-verify", "--tls-ca-path", CA, "--tls-sni", "localhost"],
          ...["--helo", "optional.test", "--from", "sender@swaks.test", "--to", w.mail.address],
          ...["--header", `Subject: ${subj}`, "--body", "hello"],
        ]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /^<- {2}220 2\.0\.0 Ready to start TLS/m);
        assert.match(r.stdout, /^<~ {2}250 OK id=/m);
        assertRealClient(
          await delivered(w.mail, new RegExp(`^Subject: ${escapeRegExp(subj)}$`, "m")),
          "optional.test",
        );
      }));

    test("exim ends the session after too many NOOPs: every reply it wrote reaches the client, run after run", () =>
      withLogs(w, async () => {
        // exim answers ten NOOPs, then 554 and exits with the rest unread: writes to it fail
        // (EPIPE), and what it wrote must still be read and passed on.
        // Everything after the greeting (which has the time in it).
        const replies = async () =>
          (await session(w.port, `EHLO x\r\n${"NOOP\r\n".repeat(20)}`)).replace(/^220 .*\r\n/, "");
        const expected = await replies();
        assert.match(expected, /^250-[^]*(250 OK\r\n){10}554 Too many nonmail commands\r\n$/);
        for (let i = 0; i < 20; i++) assert.equal(await replies(), expected);
      }));

    test("python smtplib starttls() then sendmail", () =>
      withLogs(w, async () => {
        const subj = subject("smtplib");
        const logged = w.serviceLog().length;
        const out = await python(SMTPLIB, [w.port, w.mail.address, CA, subj, "tls"]);
        assert.ok((out["before"] as string[]).includes("starttls"), String(out["before"]));
        assert.equal(out["starttls"], 220);
        assert.match(String(out["version"]), /^TLSv1\.[23]$/);
        const afterTls = out["after"] as string[];
        assert.ok(!afterTls.includes("starttls"), afterTls.join(" "));
        assert.ok(afterTls.includes("pipelining"), afterTls.join(" "));
        assert.deepEqual(out["refused"], {});
        assert.equal(out["quit"], 221);
        assertRealClient(
          await delivered(w.mail, new RegExp(`^Subject: ${escapeRegExp(subj)}$`, "m")),
          "client.test",
        );
        if (mode === "remote") {
          // The TLS service's tcpserver took both addresses from the PROXY header: the client
          // (127.0.0.2), and the address it connected to (the wrapper's port), never the
          // wrapper's own connection.
          const log = w.serviceLog().slice(logged);
          assert.match(log, /^tcpserver: pid \d+ from 127\.0\.0\.2$/m, log);
          assert.match(
            log,
            new RegExp(
              `^tcpserver: ok \\d+ [^: ]*:127\\.0\\.0\\.1:${w.port} :127\\.0\\.0\\.2::\\d+$`,
              "m",
            ),
            log,
          );
          assert.doesNotMatch(log, /from 127\.0\.0\.1/, log);
        }
      }));

    test("openssl s_client -starttls smtp, then EHLO and QUIT over TLS", () =>
      withLogs(w, async () => {
        const r = await sClient("smtp", w.port, "EHLO openssl.test\r\nQUIT\r\n");
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /Verify return code: 0 \(ok\)/);
        assert.match(r.stdout, /^250-mail\.test Hello openssl\.test/m);
        assert.doesNotMatch(r.stdout, /STARTTLS/);
        assert.doesNotMatch(r.stdout, /^220 mail\.test ESMTP/m, "greeting not swallowed");
        assert.match(r.stdout, /^221 mail\.test closing connection/m);
      }));

    test("curl --ssl-reqd smtp:// with --mail-from, --mail-rcpt and -T", () =>
      withLogs(w, async () => {
        const subj = subject("curl");
        const file = join(pki.dir, `curl-${serial}.eml`);
        writeFileSync(
          file,
          `From: sender@curl.test\r\nSubject: ${subj}\r\n\r\nhello from curl\r\n`,
        );
        const r = await run(
          "curl",
          [
            ...["-sS", "-v", "--ssl-reqd", "--cacert", CA, "--interface", CLIENT_IP],
            ...["--max-time", "15", `smtp://127.0.0.1:${w.port}/curl.test`],
            ...["--mail-from", "sender@curl.test", "--mail-rcpt", w.mail.address, "-T", file],
          ],
          { timeoutMs: 20_000 },
        );
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stderr, /^< 250-STARTTLS/m);
        assertRealClient(
          await delivered(w.mail, new RegExp(`^Subject: ${escapeRegExp(subj)}$`, "m")),
          "curl.test",
        );
      }));

    test("msmtp with tls on and tls_starttls on", () =>
      withLogs(w, async () => {
        const subj = subject("msmtp");
        const config = join(pki.dir, `msmtprc-${mode}`);
        writeFileSync(
          config,
          [
            "account default",
            "host 127.0.0.1",
            `port ${w.port}`,
            `source_ip ${CLIENT_IP}`,
            "domain msmtp.test",
            "from sender@msmtp.test",
            "auth off",
            "tls on",
            "tls_starttls on",
            `tls_trust_file ${CA}`,
            "tls_host_override localhost",
            "timeout 15",
            "",
          ].join("\n"),
          { mode: 0o600 },
        );
        const r = await run("msmtp", [`--file=${config}`, "--debug", w.mail.address], {
          input: `Subject: ${subj}\n\nhello from msmtp\n`,
        });
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /^<-- 250-STARTTLS/m);
        assertRealClient(
          await delivered(w.mail, new RegExp(`^Subject: ${escapeRegExp(subj)}$`, "m")),
          "msmtp.test",
        );
      }));

    test("opportunistic: swaks without --tls delivers in plaintext, with the real client", () =>
      withLogs(w, async () => {
        const subj = subject("plaintext");
        const r = await run("swaks", [
          ...["--server", "127.0.0.1", "--port", String(w.port), "--local-interface", CLIENT_IP],
          ...["--helo", "plain.test", "--from", "sender@swaks.test", "--to", w.mail.address],
          ...["--header", `Subject: ${subj}`, "--body", "hello in the clear"],
        ]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /^<- {2}250-STARTTLS/m);
        assert.match(r.stdout, /^<- {2}250 OK id=/m);
        assertRealClient(
          await delivered(w.mail, new RegExp(`^Subject: ${escapeRegExp(subj)}$`, "m")),
          "plain.test",
        );
      }));

    test("require (-r): swaks without --tls gets 530 for MAIL, nothing is delivered", () =>
      withLogs(w, async () => {
        const subj = subject("refused");
        const r = await run("swaks", [
          ...["--server", "127.0.0.1", "--port", String(w.requirePort)],
          ...["--local-interface", CLIENT_IP, "--helo", "plain.test"],
          ...["--from", "sender@swaks.test", "--to", w.mail.address],
          ...["--header", `Subject: ${subj}`, "--body", "must not arrive"],
        ]);
        assert.notEqual(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /^<- {2}250-STARTTLS/m);
        assert.match(r.stdout, /^<\*\* 530 5\.7\.0 Must issue a STARTTLS command first/m);
        // Then the same wrapper with --tls delivers.
        const ok = await run("swaks", [
          ...["--server", "127.0.0.1", "--port", String(w.requirePort)],
          ...["--local-interface", CLIENT_IP, "--helo", "required.test"],
          ...["--tls", "--tls-verify", "--tls-ca-path", CA, "--tls-sni", "localhost"],
          ...["--from", "sender@swaks.test", "--to", w.mail.address],
          ...["--header", `Subject: ${subj} tls`, "--body", "hello"],
        ]);
        assert.equal(ok.code, 0, ok.stdout + ok.stderr);
        assertRealClient(
          await delivered(w.mail, new RegExp(`^Subject: ${escapeRegExp(subj)} tls$`, "m")),
          "required.test",
        );
        assert.ok(
          !w.mail
            .messages()
            .some((m) => new RegExp(`^Subject: ${escapeRegExp(subj)}$`, "m").test(m)),
          "the refused mail was delivered",
        );
      }));
  });

  describe(`LMTP, dovecot's lmtp behind the wrapper (${mode})`, () => {
    const w = wrapped("lmtp", lmtpServer, mode, false);

    test("python smtplib.LMTP starttls() then sendmail", () =>
      withLogs(w, async () => {
        const subj = subject("lmtp");
        const out = await python(LMTPLIB, [w.port, w.mail.address, CA, subj]);
        assert.ok((out["before"] as string[]).includes("starttls"), String(out["before"]));
        assert.equal(out["starttls"], 220);
        assert.match(String(out["version"]), /^TLSv1\.[23]$/);
        const afterTls = out["after"] as string[];
        assert.ok(!afterTls.includes("starttls"), afterTls.join(" "));
        assert.ok(afterTls.includes("enhancedstatuscodes"), afterTls.join(" "));
        assert.deepEqual(out["refused"], {});
        assert.equal(out["quit"], 221);
        const message = await delivered(
          w.mail,
          new RegExp(`^Subject: ${escapeRegExp(subj)}$`, "m"),
        );
        assert.match(message, /^Received: from client\.test/m);
        assert.doesNotMatch(message, /127\.0\.0\.1/);
      }));

    test("openssl s_client -starttls lmtp, then LHLO and QUIT over TLS", () =>
      withLogs(w, async () => {
        const r = await sClient("lmtp", w.port, "LHLO openssl.test\r\nQUIT\r\n");
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /Verify return code: 0 \(ok\)/);
        assert.match(r.stdout, /^250-mail\.test\r?$/m);
        assert.match(r.stdout, /^250 PIPELINING/m);
        assert.doesNotMatch(r.stdout, /STARTTLS/);
        assert.doesNotMatch(r.stdout, /^220 mail\.test Dovecot/m, "greeting not swallowed");
        assert.match(r.stdout, /^221 /m);
      }));
  });

  describe(`IMAP, GNU imap4d behind the wrapper (${mode})`, () => {
    const w = wrapped("imap", imapServer, mode, true);
    before(() => w.mail.deposit("From: someone@example.org\nSubject: in the inbox\n\nhello\n"));

    test("python imaplib starttls(), login, select, logout", () =>
      withLogs(w, async () => {
        const out = await python(IMAPLIB, [w.port, w.mail.user, w.mail.password, CA, "tls"]);
        const beforeTls = out["before"] as string[];
        assert.ok(beforeTls.includes("STARTTLS"), beforeTls.join(" "));
        assert.ok(!beforeTls.includes("LOGINDISABLED"), beforeTls.join(" "));
        assert.equal(out["starttls"], "OK");
        assert.match(String(out["version"]), /^TLSv1\.[23]$/);
        // The CAPABILITY over TLS is imap4d's own: the wrapper is gone, and imap4d never had it.
        const afterTls = out["after"] as string[];
        assert.ok(afterTls.includes("IMAP4REV1"), afterTls.join(" "));
        assert.ok(!afterTls.includes("STARTTLS"), afterTls.join(" "));
        assert.equal(out["login"], "OK");
        assert.equal(out["select"], "OK");
        assert.equal(out["exists"], 1);
        assert.match(String(out["subject"]), /^subject: in the inbox$/i);
        assert.equal(out["logout"], "BYE");
      }));

    test("openssl s_client -starttls imap, then CAPABILITY and LOGOUT over TLS", () =>
      withLogs(w, async () => {
        const r = await sClient("imap", w.port, "a CAPABILITY\r\nb LOGOUT\r\n");
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /Verify return code: 0 \(ok\)/);
        assert.match(r.stdout, /^\* CAPABILITY IMAP4rev1 /m);
        assert.doesNotMatch(r.stdout, /^\* CAPABILITY .*STARTTLS/m);
        assert.match(r.stdout, /^a OK /m);
        assert.doesNotMatch(r.stdout, /^\* OK IMAP4rev1/m, "greeting not swallowed");
        assert.match(r.stdout, /^\* BYE /m);
        assert.match(r.stdout, /^b OK /m);
      }));

    test("curl --ssl-reqd imap:// lists INBOX", () =>
      withLogs(w, async () => {
        const r = await run(
          "curl",
          [
            ...["-sS", "-v", "--ssl-reqd", "--cacert", CA, "--max-time", "15"],
            ...["-u", `${w.mail.user}:${w.mail.password}`, `imap://127.0.0.1:${w.port}/`],
          ],
          { timeoutMs: 20_000 },
        );
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stderr, /STARTTLS/);
        assert.match(r.stdout, /^\* LIST .*INBOX\r?$/m);
      }));

    test("opportunistic: imaplib login without starttls works", () =>
      withLogs(w, async () => {
        const out = await python(IMAPLIB, [w.port, w.mail.user, w.mail.password, CA, "plain"]);
        assert.ok((out["before"] as string[]).includes("STARTTLS"));
        assert.equal(out["login"], "OK");
        assert.equal(out["exists"], 1);
        assert.equal(out["logout"], "BYE");
      }));

    test("require (-r): login before starttls gets NO [PRIVACYREQUIRED]; LOGINDISABLED shown", () =>
      withLogs(w, async () => {
        const out = await python(IMAPLIB, [
          ...[w.requirePort, w.mail.user, w.mail.password, CA, "login-first"],
        ]);
        const beforeTls = out["before"] as string[];
        assert.ok(beforeTls.includes("STARTTLS"), beforeTls.join(" "));
        assert.ok(beforeTls.includes("LOGINDISABLED"), beforeTls.join(" "));
        assert.match(String(out["early"]), /\[PRIVACYREQUIRED\]/);
        assert.equal(out["starttls"], "OK");
        const afterTls = out["after"] as string[];
        assert.ok(!afterTls.includes("STARTTLS") && !afterTls.includes("LOGINDISABLED"));
        assert.equal(out["login"], "OK");
        assert.equal(out["exists"], 1);
      }));
  });

  describe(`POP3, GNU pop3d behind the wrapper (${mode})`, () => {
    // APOP on: curl logs in with APOP whenever the greeting carries a timestamp.
    const w = wrapped("pop3", (dir) => pop3Server(dir, { apop: true }), mode, true);
    before(() => {
      w.mail.deposit("From: someone@example.org\nSubject: for pop\n\nhello\n");
      w.mail.deposit("From: someone@example.org\nSubject: another\n\nhello again\n");
    });

    test("python poplib stls(), user/pass, stat", () =>
      withLogs(w, async () => {
        const out = await python(POPLIB, [w.port, w.mail.user, w.mail.password, CA, "tls"]);
        // The greeting without its APOP timestamp (see curl --ssl-reqd below).
        assert.equal(String(out["welcome"]), "+OK POP3 Ready");
        const beforeTls = out["before"] as string[];
        assert.ok(beforeTls.includes("STLS") && beforeTls.includes("USER"), beforeTls.join(" "));
        assert.match(String(out["stls"]), /^\+OK/);
        assert.match(String(out["version"]), /^TLSv1\.[23]$/);
        const afterTls = out["after"] as string[];
        assert.ok(!afterTls.includes("STLS") && afterTls.includes("USER"), afterTls.join(" "));
        assert.match(String(out["pass"]), /^\+OK/);
        assert.equal((out["stat"] as number[])[0], 2);
        assert.match(String(out["quit"]), /^\+OK/);
      }));

    test("openssl s_client -starttls pop3, then CAPA and QUIT over TLS", () =>
      withLogs(w, async () => {
        const r = await sClient("pop3", w.port, "CAPA\r\nQUIT\r\n");
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /Verify return code: 0 \(ok\)/);
        assert.match(r.stdout, /^\+OK/m);
        assert.match(r.stdout, /^UIDL\r?$/m);
        assert.doesNotMatch(r.stdout, /^STLS/m);
        assert.doesNotMatch(r.stdout, /^\+OK POP3 Ready/m, "greeting not swallowed");
      }));

    /** curl on pop3://, listing the messages (`tls`: with --ssl-reqd, so STLS first). */
    const curlPop3 = (tls: boolean) =>
      run(
        "curl",
        [
          ...["-sS", "-v", ...(tls ? ["--ssl-reqd"] : []), "--cacert", CA, "--max-time", "15"],
          ...["-u", `${w.mail.user}:${w.mail.password}`, `pop3://127.0.0.1:${w.port}/`],
        ],
        { timeoutMs: 20_000 },
      );

    test("opportunistic: curl pop3:// without TLS logs in (USER, the APOP timestamp withheld)", () =>
      withLogs(w, async () => {
        const r = await curlPop3(false);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stderr, /^< \+OK POP3 Ready\r?$/m);
        assert.match(r.stderr, /^> USER /m);
        assert.doesNotMatch(r.stderr, /^> APOP /m);
        assert.match(r.stdout, /^1 \d+\r?\n2 \d+\r?$/m);
      }));

    // The plaintext pop3d's greeting carries an APOP timestamp (<pid.time@host>); after STLS the
    // client talks to a fresh pop3d with another one, so an APOP digest made from the first
    // would be refused. The wrapper withholds the timestamp, and curl (which prefers APOP
    // whenever the greeting offers it) logs in with USER/PASS over TLS.
    test("curl --ssl-reqd pop3:// lists the messages", () =>
      withLogs(w, async () => {
        const r = await curlPop3(true);
        assert.match(r.stderr, /^< \+OK Begin TLS negotiation/m);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /^1 \d+\r?\n2 \d+\r?$/m);
      }));

    test("require (-r): USER before STLS gets -ERR [AUTH]; then STLS and login work", () =>
      withLogs(w, async () => {
        const out = await python(POPLIB, [
          ...[w.requirePort, w.mail.user, w.mail.password, CA, "user-first"],
        ]);
        const beforeTls = out["before"] as string[];
        assert.ok(beforeTls.includes("STLS"), beforeTls.join(" "));
        assert.ok(!beforeTls.includes("USER"), beforeTls.join(" "));
        assert.match(String(out["early"]), /^-ERR \[AUTH\] /);
        assert.match(String(out["stls"]), /^\+OK/);
        assert.match(String(out["pass"]), /^\+OK/);
        assert.equal((out["stat"] as number[])[0], 2);
      }));
  });
}

// -k: the plaintext server goes on behind TLS (one server a session, told nothing of TLS),
// with the real servers, none of which has STARTTLS of its own here.
describe("-k, local mode: the same server behind TLS", () => {
  const smtp = wrapped(
    "smtp",
    (dir) => smtpServer(dir, { clientAddress: "env" }),
    "local -k",
    false,
  );
  const imap = wrapped("imap", imapServer, "local -k", false);
  const pop3 = wrapped("pop3", (dir) => pop3Server(dir, { apop: true }), "local -k", false);
  before(() => {
    imap.mail.deposit("From: someone@example.org\nSubject: in the inbox\n\nhello\n");
    pop3.mail.deposit("From: someone@example.org\nSubject: for pop\n\nhello\n");
  });
  const kept = (w: Wrapped) =>
    assert.match(w.logs(), /starttls-wrapper: info: [^ ]+: STARTTLS, the same server behind TLS$/m);

  test("exim4 -bs: swaks --tls delivers, exim answering its second EHLO inside TLS", () =>
    withLogs(smtp, async () => {
      const subj = subject("swaks -k");
      const r = await swaksTls(smtp, subj);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^<~ {2}250-mail\.test Hello swaks\.test \[127\.0\.0\.2\]/m);
      assert.doesNotMatch(r.stdout, /^<~ .*STARTTLS/m);
      assert.match(r.stdout, /^<~ {2}250 OK id=/m);
      assertRealClient(
        await delivered(smtp.mail, new RegExp(`^Subject: ${escapeRegExp(subj)}$`, "m")),
        "swaks.test",
      );
      kept(smtp);
    }));

  test("GNU imap4d: imaplib starttls(), login, select", () =>
    withLogs(imap, async () => {
      const out = await python(IMAPLIB, [imap.port, imap.mail.user, imap.mail.password, CA, "tls"]);
      assert.equal(out["starttls"], "OK");
      const afterTls = out["after"] as string[];
      assert.ok(
        afterTls.includes("IMAP4REV1") && !afterTls.includes("STARTTLS"),
        afterTls.join(" "),
      );
      assert.equal(out["login"], "OK");
      assert.equal(out["exists"], 1);
      assert.equal(out["logout"], "BYE");
      kept(imap);
    }));

  test("GNU pop3d: poplib stls(), user/pass, stat", () =>
    withLogs(pop3, async () => {
      const out = await python(POPLIB, [pop3.port, pop3.mail.user, pop3.mail.password, CA, "tls"]);
      assert.match(String(out["stls"]), /^\+OK/);
      const afterTls = out["after"] as string[];
      assert.ok(!afterTls.includes("STLS") && afterTls.includes("USER"), afterTls.join(" "));
      assert.match(String(out["pass"]), /^\+OK/);
      assert.equal((out["stat"] as number[])[0], 1);
      kept(pop3);
    }));
});
