// Real plaintext mail servers from Debian 12's packages, each run per connection as a UCSPI
// program (the protocol on stdin/stdout, no TLS of its own), configured entirely from files in a
// directory the test owns:
//   SMTP  exim4 -bs            (exim4-daemon-light)
//   LMTP  dovecot's lmtp       (dovecot-lmtpd; needs dovecot's master for its userdb lookups)
//   IMAP  GNU imap4d --inetd   (mailutils-imap4d)
//   POP3  GNU pop3d --inetd    (mailutils-pop3d)
// Run one as `tcpserver 127.0.0.1 0 ...server.argv` with `server.env` added to the environment.
// Everything runs as root (as the tests do); each helper chmods `dir` to 0755 because the
// servers drop to their own users (Debian-exim, nobody) and must reach files under it.
import { execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { waitFor } from "./server.ts";

export const MAIL_DOMAIN = "example.org";
export const MAIL_USER = "test";
export const MAIL_PASSWORD = "secret";
/** The server's own name where its config sets one (exim's banner, dovecot's Received). */
export const MAIL_HOSTNAME = "mail.test";

export interface MailServer {
  /** The UCSPI program: `tcpserver HOST PORT ...argv`. */
  argv: string[];
  /** Variables to add to the environment the program is run with. */
  env: Record<string, string>;
  /** Where mail for `user` goes: the recipient for SMTP and LMTP. */
  address: string;
  /** Login name and password for IMAP and POP3 (the same values are set up everywhere). */
  user: string;
  password: string;
  /** The mailbox that deliveries land in (a maildir, or an mbox file for imap4d/pop3d). */
  mailbox: string;
  /** The delivered messages, whole, oldest first. */
  messages(): string[];
  /** Puts a message into the mailbox as a local delivery would (for IMAP and POP3 tests). */
  deposit(message: string): void;
  /** The server's own log so far (exim's mainlog; dovecot's master), "" where there is none. */
  log(): string;
  /** Stops what runs in the background (dovecot's master); idempotent. */
  close(): Promise<void>;
}

interface Account {
  uid: number;
  gid: number;
}

/** A system account by name, from /etc/passwd (the packages create theirs at install). */
export function account(name: string): Account {
  for (const line of readFileSync("/etc/passwd", "latin1").split("\n")) {
    const f = line.split(":");
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error(`no user ${name} in /etc/passwd: is its package installed?`);
}

function makeDir(path: string, owner?: Account, mode = 0o755): string {
  mkdirSync(path, { recursive: true, mode });
  chmodSync(path, mode);
  if (owner) chownSync(path, owner.uid, owner.gid);
  return path;
}

function readText(path: string): string {
  try {
    return readFileSync(path, "latin1");
  } catch {
    return "";
  }
}

/** The messages of a maildir (new/ and cur/), in delivery order. */
function maildirMessages(maildir: string): string[] {
  const files: string[] = [];
  for (const sub of ["new", "cur"]) {
    let names: string[] = [];
    try {
      names = readdirSync(join(maildir, sub));
    } catch {
      continue;
    }
    for (const name of names) files.push(join(maildir, sub, name));
  }
  // Maildir names start with the delivery time in seconds, then a per-host unique part.
  const key = (p: string) => Number(/\/(\d+)\.[^/]*$/.exec(p)?.[1] ?? 0);
  return files.sort((a, b) => key(a) - key(b) || a.localeCompare(b)).map(readText);
}

function maildirDeposit(maildir: string, message: string, owner: Account): void {
  for (const sub of ["", "new", "cur", "tmp"]) makeDir(join(maildir, sub), owner, 0o700);
  const name = `${Math.floor(Date.now() / 1000)}.P${process.pid}Q${Math.random().toString(36).slice(2)}.test`;
  const file = join(maildir, "new", name);
  writeFileSync(file, message.replace(/\r?\n/g, "\n"), { mode: 0o600 });
  chownSync(file, owner.uid, owner.gid);
}

/** Messages of an mbox file, split at its "From " lines (the separator line dropped). */
function mboxMessages(mbox: string): string[] {
  const text = readText(mbox);
  if (!text) return [];
  return text
    .split(/^From [^\n]*\n/m)
    .slice(1)
    .map((m) => m.replace(/\n$/, ""));
}

function mboxDeposit(mbox: string, message: string, owner: Account): void {
  const body = message
    .replace(/\r?\n/g, "\n")
    .replace(/\n?$/, "\n")
    .replace(/^(>*From )/gm, ">$1");
  appendFileSync(mbox, `From sender@${MAIL_DOMAIN} Mon Jan  1 00:00:00 2024\n${body}\n`, {
    mode: 0o600,
  });
  chownSync(mbox, owner.uid, owner.gid);
}

export interface SmtpOptions {
  /**
   * Where exim learns the client's address. "socket" (default): getpeername on stdin, which
   * works when stdin is the TCP socket (as under tcpserver); with a pipe or a socketpair on stdin
   * exim takes the session as local ("from root ... with local-esmtp"). "env": the program is
   * `sh -c 'exec exim4 ... -oMa "$TCPREMOTEIP.$TCPREMOTEPORT" -bs'`, for stdin that is not the
   * client's socket (exim ignores -oMa when stdin is an INET socket: getpeername wins).
   */
  clientAddress?: "socket" | "env";
  /** A certificate and key: exim then offers STARTTLS of its own (GnuTLS, on stdin/stdout). */
  tls?: { cert: string; key: string };
}

/**
 * exim4 -bs with its own config (-C): accepts mail for test@example.org and delivers it into a
 * maildir under `dir`; relays nothing; no STARTTLS unless `tls` is given, no DNS, no
 * ident lookups. exim gives up root for -C ("exim user lost privilege for using -C option"), so
 * spool, log and maildir belong to Debian-exim and the delivery runs as Debian-exim.
 */
export async function smtpServer(dir: string, options: SmtpOptions = {}): Promise<MailServer> {
  const exim = account("Debian-exim");
  chmodSync(dir, 0o755);
  const base = makeDir(join(dir, "exim"));
  const spool = makeDir(join(base, "spool"), exim, 0o750);
  const logDir = makeDir(join(base, "log"), exim, 0o750);
  const maildir = makeDir(join(base, "maildir"), exim, 0o700);
  const config = join(base, "exim.conf");
  const tls: string[] = ["tls_advertise_hosts ="];
  if (options.tls) {
    // exim reads them as Debian-exim (it gives up root for -C).
    const cert = join(base, "tls-cert.pem");
    const key = join(base, "tls-key.pem");
    writeFileSync(cert, readFileSync(options.tls.cert), { mode: 0o644 });
    writeFileSync(key, readFileSync(options.tls.key), { mode: 0o600 });
    chownSync(key, exim.uid, exim.gid);
    tls.splice(
      0,
      1,
      "tls_advertise_hosts = *",
      `tls_certificate = ${cert}`,
      `tls_privatekey = ${key}`,
    );
  }
  writeFileSync(
    config,
    [
      "keep_environment =",
      `primary_hostname = ${MAIL_HOSTNAME}`,
      `qualify_domain = ${MAIL_DOMAIN}`,
      `domainlist local_domains = ${MAIL_DOMAIN}`,
      `spool_directory = ${spool}`,
      `log_file_path = ${logDir}/%slog`,
      ...tls,
      "rfc1413_hosts =",
      "host_lookup =",
      "acl_smtp_rcpt = acl_check_rcpt",
      "begin acl",
      "acl_check_rcpt:",
      `  accept domains = +local_domains`,
      `         local_parts = ${MAIL_USER}`,
      "  deny   message = relay not permitted",
      "begin routers",
      "local_user:",
      "  driver = accept",
      "  domains = +local_domains",
      "  transport = local_delivery",
      "begin transports",
      "local_delivery:",
      "  driver = appendfile",
      `  directory = ${maildir}`,
      "  maildir_format",
      "  create_directory",
      "  user = Debian-exim",
      "  group = Debian-exim",
      "  return_path_add",
      "  envelope_to_add",
      "  delivery_date_add",
      "",
    ].join("\n"),
    { mode: 0o644 },
  );
  const argv =
    options.clientAddress === "env"
      ? [
          "/bin/sh",
          "-c",
          'exec /usr/sbin/exim4 -C "$0" -odi -oMa "$TCPREMOTEIP.$TCPREMOTEPORT" -oMt "" -bs',
          config,
        ]
      : ["/usr/sbin/exim4", "-C", config, "-odi", "-bs"];
  return {
    argv,
    env: {},
    address: `${MAIL_USER}@${MAIL_DOMAIN}`,
    user: MAIL_USER,
    password: MAIL_PASSWORD,
    mailbox: maildir,
    messages: () => maildirMessages(maildir),
    deposit: (message) => maildirDeposit(maildir, message, exim),
    log: () => readText(join(logDir, "mainlog")) + readText(join(logDir, "paniclog")),
    close: async () => {},
  };
}

/** A dovecot master in the foreground on `config`, its log (stderr) kept. */
/** Dovecot's users from a passwd-file (plaintext passwords), each with a maildir under `mail`. */
export function dovecotUsers(mail: string, passwd: string): string[] {
  return [
    `mail_location = maildir:${mail}/%n`,
    "passdb {",
    "  driver = passwd-file",
    `  args = scheme=PLAIN ${passwd}`,
    "}",
    "userdb {",
    "  driver = passwd-file",
    `  args = ${passwd}`,
    "}",
  ];
}

export function startDovecot(config: string): {
  master: ChildProcess;
  log: () => string;
  exited: Promise<void>;
} {
  const master = spawn("/usr/sbin/dovecot", ["-F", "-c", config], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  master.stderr?.setEncoding("latin1");
  master.stderr?.on("data", (s: string) => (log += s));
  const exited = new Promise<void>((resolve) => master.once("exit", () => resolve()));
  return { master, log: () => log, exited };
}

/**
 * dovecot's lmtp binary run standalone on stdin/stdout (it serves the connection it is given,
 * and names the client by getpeername). For RCPT it asks dovecot's auth process (userdb), so this
 * starts a dovecot master (`dovecot -F -c DIR/dovecot/dovecot.conf`) whose base_dir is under
 * `dir` and which listens on no TCP port; close() stops it. Mail for test@example.org goes into
 * a maildir under `dir`, owned by nobody.
 */
export async function lmtpServer(dir: string): Promise<MailServer> {
  const nobody = account("nobody");
  chmodSync(dir, 0o755);
  const base = makeDir(join(dir, "dovecot"));
  const run = makeDir(join(base, "run"));
  const mail = makeDir(join(base, "mail"), nobody);
  const maildir = join(mail, MAIL_USER);
  const passwd = join(base, "passwd");
  writeFileSync(
    passwd,
    `${MAIL_USER}:{PLAIN}${MAIL_PASSWORD}:${nobody.uid}:${nobody.gid}::${maildir}::\n`,
  );
  const config = join(base, "dovecot.conf");
  const noListener = (service: string, names: string[]) => [
    `service ${service} {`,
    ...names.flatMap((n) => [`  inet_listener ${n} {`, "    port = 0", "  }"]),
    "}",
  ];
  writeFileSync(
    config,
    [
      `base_dir = ${run}`,
      `state_dir = ${makeDir(join(base, "state"))}`,
      "log_path = /dev/stderr",
      `hostname = ${MAIL_HOSTNAME}`,
      "ssl = no",
      "protocols = lmtp",
      "mail_max_userip_connections = 0",
      "auth_username_format = %Ln",
      ...dovecotUsers(mail, passwd),
      // Nothing of this instance may listen on TCP; lmtp's own socket is unused too.
      "service lmtp {",
      "  unix_listener lmtp {",
      "    mode = 0600",
      "  }",
      "}",
      ...noListener("imap-login", ["imap", "imaps"]),
      ...noListener("pop3-login", ["pop3", "pop3s"]),
      "",
    ].join("\n"),
  );
  const { master, log: masterLog, exited } = startDovecot(config);
  const killOnExit = () => master.kill("SIGKILL");
  process.once("exit", killOnExit);
  const close = async () => {
    process.removeListener("exit", killOnExit);
    if (master.exitCode === null && master.signalCode === null) master.kill("SIGTERM");
    await exited;
  };
  try {
    await waitFor(
      () => (master.exitCode !== null || existsSync(join(run, "auth-userdb")) ? true : undefined),
      15_000,
      () => `dovecot's master did not start:\n${masterLog()}`,
    );
    if (master.exitCode !== null) throw new Error(`dovecot's master exited:\n${masterLog()}`);
  } catch (e) {
    await close();
    throw e;
  }
  return {
    argv: ["/usr/lib/dovecot/lmtp", "-c", config],
    env: {},
    address: `${MAIL_USER}@${MAIL_DOMAIN}`,
    user: MAIL_USER,
    password: MAIL_PASSWORD,
    mailbox: maildir,
    messages: () => maildirMessages(maildir),
    deposit: (message) => maildirDeposit(maildir, message, nobody),
    log: masterLog,
    close,
  };
}

/**
 * Writes the GNU mailutils config shared by imap4d and pop3d: one virtual-domain account
 * (`test@example.org`, password `secret`, a SHA-512 crypt made by openssl) whose mailbox is the
 * mbox file HOME/INBOX; no TLS (no tls-mode, no certificate: STARTTLS/STLS are not offered); no
 * GSASL (so only LOGIN/USER+PASS); logs to stderr instead of syslog.
 */
function mailutilsSetup(dir: string): { config: string; mbox: string; owner: Account } {
  const nobody = account("nobody");
  chmodSync(dir, 0o755);
  const base = makeDir(join(dir, "mailutils"));
  const passwdDir = makeDir(join(base, "passwd"));
  const home = makeDir(join(base, "home", MAIL_USER), nobody);
  const hash = execFileSync("openssl", ["passwd", "-6", "-salt", "ucspitls", MAIL_PASSWORD], {
    encoding: "latin1",
  }).trim();
  writeFileSync(
    join(passwdDir, MAIL_DOMAIN),
    `${MAIL_USER}:${hash}:${nobody.uid}:${nobody.gid}::${home}:/bin/false\n`,
  );
  const config = join(base, "mailutils.conf");
  writeFileSync(
    config,
    [
      "logging { syslog false; };",
      "gsasl { enable false; };",
      "auth {",
      "  authorization virtdomain;",
      "  authentication generic;",
      "};",
      `virtdomain { passwd-dir "${passwdDir}"; };`,
      "",
    ].join("\n"),
  );
  return { config, mbox: join(home, "INBOX"), owner: nobody };
}

function mailutilsServer(dir: string, program: "imap4d" | "pop3d"): MailServer {
  const { config, mbox, owner } = mailutilsSetup(dir);
  return {
    argv: [`/usr/sbin/${program}`, `--config-file=${config}`, "--inetd"],
    env: {},
    address: `${MAIL_USER}@${MAIL_DOMAIN}`,
    user: `${MAIL_USER}@${MAIL_DOMAIN}`,
    password: MAIL_PASSWORD,
    mailbox: mbox,
    messages: () => mboxMessages(mbox),
    deposit: (message) => mboxDeposit(mbox, message, owner),
    log: () => "",
    close: async () => {},
  };
}

/** GNU imap4d in inetd mode: LOGIN in plaintext (not preauth), mbox INBOX under `dir`. */
export async function imapServer(dir: string): Promise<MailServer> {
  return mailutilsServer(dir, "imap4d");
}

export interface Pop3Options {
  /**
   * Also accept APOP (the greeting always carries the timestamp `<pid.time@host>`, but without
   * a database every APOP is "-ERR [AUTH] Bad login"): the account's password goes into an APOP
   * database made with popauth (mailutils-pop3d), named by `apop-database-file`. curl logs in
   * with APOP whenever the greeting has a timestamp, so it needs this.
   */
  apop?: boolean;
}

/** GNU pop3d in inetd mode: USER/PASS in plaintext, answers CAPA; mbox INBOX under `dir`. */
export async function pop3Server(dir: string, options: Pop3Options = {}): Promise<MailServer> {
  const server = mailutilsServer(dir, "pop3d");
  if (options.apop) {
    const base = join(dir, "mailutils");
    const db = join(base, "apop.db");
    execFileSync(
      "popauth",
      ["-a", "-f", db, "-u", `${MAIL_USER}@${MAIL_DOMAIN}`, "-p", MAIL_PASSWORD],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    appendFileSync(join(base, "mailutils.conf"), `apop-database-file "${db}";\n`);
  }
  return server;
}
