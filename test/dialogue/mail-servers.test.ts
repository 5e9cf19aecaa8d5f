// The real plaintext mail servers that starttls-wrapper's tests put behind it (exim4 -bs,
// dovecot's lmtp, GNU imap4d and pop3d) work as UCSPI programs under our tcpserver, with real
// clients: python3's smtplib/imaplib/poplib, swaks and msmtp.
import assert from "node:assert/strict";
import { test } from "node:test";
import { imapServer, lmtpServer, pop3Server, smtpServer } from "../helpers/mail-servers.ts";
import type { MailServer } from "../helpers/mail-servers.ts";
import { ours, run } from "../helpers/programs.ts";
import { startServer, waitFor } from "../helpers/server.ts";
import { scratchDir } from "../helpers/scratch.ts";

/** Runs `body` with `make`'s server under our tcpserver on 127.0.0.1; cleans up after. */
async function withServer(
  make: (dir: string) => Promise<MailServer>,
  body: (server: MailServer, port: number) => Promise<void>,
): Promise<void> {
  const dir = scratchDir("mail");
  const server = await make(dir);
  try {
    const s = await startServer(ours("tcpserver"), ["127.0.0.1", "0", ...server.argv], {
      env: { ...process.env, ...server.env },
    });
    try {
      await body(server, s.port);
    } catch (e) {
      (e as Error).message += `\n--- tcpserver log:\n${s.log()}\n--- server log:\n${server.log()}`;
      throw e;
    } finally {
      await s.stop();
    }
  } finally {
    await server.close();
  }
}

/** Runs a python3 script with `args`; returns what it printed as JSON on its last line. */
async function python(script: string, args: (string | number)[]): Promise<Record<string, unknown>> {
  const r = await run("python3", ["-c", script, ...args.map(String)], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, `python3 failed:\n${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as Record<string, unknown>;
}

/** The first delivered message that matches `pattern`, waiting for the delivery. */
function delivered(server: MailServer, pattern: RegExp): Promise<string> {
  return waitFor(
    () => server.messages().find((m) => pattern.test(m)),
    15_000,
    () => `no delivered message matches ${pattern}: ${JSON.stringify(server.messages())}`,
  );
}

const SMTPLIB = `
import json, smtplib, sys
port, rcpt = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10)
code, ehlo = s.ehlo()
out = {"ehlo_code": code, "ehlo": ehlo.decode(), "features": sorted(s.esmtp_features)}
out["refused"] = s.sendmail("sender@client.test", [rcpt], "Subject: via smtplib\\r\\n\\r\\nhello\\r\\n")
try:
    s.sendmail("sender@client.test", ["someone@elsewhere.test"], "Subject: relay\\r\\n\\r\\nx\\r\\n")
    out["relay"] = "accepted"
except smtplib.SMTPRecipientsRefused as e:
    out["relay"] = e.recipients["someone@elsewhere.test"][0]
s.quit()
print(json.dumps(out))
`;

test("exim4 -bs under tcpserver takes mail from smtplib and names the client in Received", async () => {
  await withServer(smtpServer, async (server, port) => {
    const out = await python(SMTPLIB, [port, server.address]);
    assert.equal(out["ehlo_code"], 250);
    assert.match(String(out["ehlo"]), /^mail\.test Hello client\.test \[127\.0\.0\.1\]/);
    const features = out["features"] as string[];
    assert.ok(features.includes("pipelining"), `features: ${features.join(" ")}`);
    assert.ok(!features.includes("starttls"), "exim must not offer STARTTLS");
    assert.deepEqual(out["refused"], {});
    assert.equal(out["relay"], 550);
    const message = await delivered(server, /^Subject: via smtplib$/m);
    assert.match(
      message,
      /^Received: from \[127\.0\.0\.1\] \(helo=client\.test\)\n\tby mail\.test with esmtp /m,
    );
    assert.match(message, /^Return-path: <sender@client\.test>$/m);
    assert.match(message, /^Envelope-to: test@example\.org$/m);
  });
});

test("exim4 -bs under tcpserver takes mail from swaks and from msmtp", async () => {
  await withServer(smtpServer, async (server, port) => {
    const swaks = await run("swaks", [
      ...["--server", "127.0.0.1", "--port", String(port), "--helo", "swaks.test"],
      ...["--from", "sender@swaks.test", "--to", server.address],
      ...["--header", "Subject: via swaks", "--body", "hello from swaks"],
    ]);
    assert.equal(swaks.code, 0, swaks.stdout + swaks.stderr);
    assert.match(swaks.stdout, /^<- {2}220 mail\.test ESMTP Exim /m);
    assert.doesNotMatch(swaks.stdout, /STARTTLS/);
    assert.match(swaks.stdout, /^<- {2}250 OK id=/m);
    const viaSwaks = await delivered(server, /^Subject: via swaks$/m);
    assert.match(viaSwaks, /^Received: from \[127\.0\.0\.1\] \(helo=swaks\.test\)$/m);

    const msmtp = await run(
      "msmtp",
      [
        ...["--file=/dev/null", "--host=127.0.0.1", `--port=${port}`, "--tls=off", "--auth=off"],
        ...["--domain=msmtp.test", "--from=sender@msmtp.test", server.address],
      ],
      { input: "Subject: via msmtp\n\nhello from msmtp\n" },
    );
    assert.equal(msmtp.code, 0, msmtp.stdout + msmtp.stderr);
    const viaMsmtp = await delivered(server, /^Subject: via msmtp$/m);
    assert.match(viaMsmtp, /^Received: from \[127\.0\.0\.1\] \(helo=msmtp\.test\)$/m);
  });
});

const DIALOGUE =
  "EHLO client.test\r\nMAIL FROM:<sender@client.test>\r\nRCPT TO:<test@example.org>\r\n" +
  "DATA\r\nSubject: over a pipe\r\n\r\nhello\r\n.\r\nQUIT\r\n";

test("exim4 -bs on a pipe: a local session, unless -oMa passes TCPREMOTEIP on", async () => {
  const dir = scratchDir("mail");
  const env = { ...process.env, TCPREMOTEIP: "192.0.2.7", TCPREMOTEPORT: "4567" };
  const local = await smtpServer(dir);
  const plain = await run(local.argv[0] ?? "", local.argv.slice(1), { input: DIALOGUE, env });
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /^250 OK id=/m);
  const first = await delivered(local, /^Subject: over a pipe$/m);
  assert.match(
    first,
    /^Received: from root \(helo=client\.test\)\n\tby mail\.test with local-esmtp /m,
  );

  const fromEnv = await smtpServer(dir, { clientAddress: "env" });
  const viaEnv = await run(fromEnv.argv[0] ?? "", fromEnv.argv.slice(1), {
    input: DIALOGUE.replace("over a pipe", "with -oMa"),
    env,
  });
  assert.equal(viaEnv.code, 0, viaEnv.stderr);
  assert.match(viaEnv.stdout, /^250-mail\.test Hello client\.test \[192\.0\.2\.7\]/m);
  const second = await delivered(fromEnv, /^Subject: with -oMa$/m);
  assert.match(
    second,
    /^Received: from \[192\.0\.2\.7\] \(helo=client\.test\)\n\tby mail\.test with esmtp /m,
  );
});

const LMTPLIB = `
import json, smtplib, sys
port, rcpt = int(sys.argv[1]), sys.argv[2]
s = smtplib.LMTP("127.0.0.1", port, local_hostname="client.test", timeout=10)
code, lhlo = s.ehlo()
out = {"lhlo_code": code, "features": sorted(s.esmtp_features)}
out["refused"] = s.sendmail("sender@client.test", [rcpt], "Subject: via lmtp\\r\\n\\r\\nhello\\r\\n")
try:
    s.sendmail("sender@client.test", ["nobody@example.org"], "Subject: x\\r\\n\\r\\nx\\r\\n")
    out["unknown"] = "accepted"
except smtplib.SMTPRecipientsRefused as e:
    out["unknown"] = e.recipients["nobody@example.org"][0]
s.quit()
print(json.dumps(out))
`;

test("dovecot's lmtp under tcpserver delivers and names the client in Received", async () => {
  await withServer(lmtpServer, async (server, port) => {
    const out = await python(LMTPLIB, [port, server.address]);
    assert.equal(out["lhlo_code"], 250);
    const features = out["features"] as string[];
    assert.ok(features.includes("pipelining"), `features: ${features.join(" ")}`);
    assert.ok(!features.includes("starttls"), "lmtp must not offer STARTTLS");
    assert.deepEqual(out["refused"], {});
    assert.equal(out["unknown"], 550);
    const message = await delivered(server, /^Subject: via lmtp$/m);
    assert.match(
      message,
      /^Received: from client\.test \(\[127\.0\.0\.1\]\)\n\tby mail\.test with LMTP/m,
    );
    assert.match(message, /^Delivered-To: test@example\.org$/m);
  });
});

const IMAPLIB = `
import imaplib, json, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
out = {"welcome": m.welcome.decode(), "caps": sorted(m.capabilities), "state": m.state}
try:
    m.login(user, "wrong")
    out["wrong"] = "accepted"
except imaplib.IMAP4.error as e:
    out["wrong"] = str(e)
out["login"] = m.login(user, password)[0]
typ, data = m.select("INBOX")
out["select"] = typ
out["exists"] = int(data[0])
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
out["subject"] = data[0][1].decode().strip()
out["logout"] = m.logout()[0]
print(json.dumps(out))
`;

test("GNU imap4d under tcpserver: LOGIN in plaintext, SELECT, FETCH, LOGOUT with imaplib", async () => {
  await withServer(imapServer, async (server, port) => {
    server.deposit("From: someone@example.org\nSubject: waiting in the inbox\n\nhello\n");
    const out = await python(IMAPLIB, [port, server.user, server.password]);
    assert.match(String(out["welcome"]), /^\* OK /);
    assert.equal(out["state"], "NONAUTH", "not preauthenticated");
    const caps = out["caps"] as string[];
    assert.ok(caps.includes("IMAP4REV1"), caps.join(" "));
    assert.ok(!caps.includes("STARTTLS") && !caps.includes("LOGINDISABLED"), caps.join(" "));
    assert.match(String(out["wrong"]), /rejected/);
    assert.equal(out["login"], "OK");
    assert.equal(out["select"], "OK");
    assert.equal(out["exists"], 1);
    // imap4d answers HEADER.FIELDS with the field name as asked for ("SUBJECT").
    assert.match(String(out["subject"]), /^subject: waiting in the inbox$/i);
    assert.equal(out["logout"], "BYE");
  });
});

const POPLIB = `
import json, poplib, sys
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
p = poplib.POP3("127.0.0.1", port, timeout=10)
out = {"welcome": p.getwelcome().decode(), "capa": sorted(p.capa())}
p.user(user)
out["pass"] = p.pass_(password).decode()
out["stat"] = list(p.stat())
out["retr"] = [l.decode() for l in p.retr(1)[1]]
out["quit"] = p.quit().decode()
print(json.dumps(out))
`;

test("GNU pop3d under tcpserver: CAPA, USER/PASS in plaintext, STAT, RETR with poplib", async () => {
  await withServer(pop3Server, async (server, port) => {
    server.deposit("From: someone@example.org\nSubject: for pop\n\nhello\n");
    server.deposit("From: someone@example.org\nSubject: another\n\nhello again\n");
    const out = await python(POPLIB, [port, server.user, server.password]);
    assert.match(String(out["welcome"]), /^\+OK POP3 Ready <[^>]+>$/);
    const capa = out["capa"] as string[];
    assert.ok(capa.includes("USER") && capa.includes("PIPELINING"), capa.join(" "));
    assert.ok(!capa.includes("STLS"), capa.join(" "));
    assert.match(String(out["pass"]), /^\+OK/);
    const [count] = out["stat"] as number[];
    assert.equal(count, 2);
    assert.ok((out["retr"] as string[]).includes("Subject: for pop"));
    assert.match(String(out["quit"]), /^\+OK/);
  });
});
