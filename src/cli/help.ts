// --help for every program of ours: what it does, its usage line and where its page is. djb's
// programs know no --help (to them it is an unknown option, exit 100); an admin trying ours
// gets this on stdout and exit 0, and every other unknown option is still djb's exit 100.
import { writeStdout } from "./stdio.ts";

const WHAT: Readonly<Record<string, string>> = {
  tcpserver: "accepts TCP connections and runs a program for each, the connection on fds 0/1",
  tcpclient: "connects to a TCP server and runs a program with the connection on fds 6/7",
  tcprules: "compiles tcpserver's rules into a cdb, atomically",
  tcprulescheck: "shows which rule of a cdb matches a client",
  tlsd: "TLS on the connection (fds 0/1), the program behind it in plaintext",
  tlsc: "TLS to the server (fds 6/7), the program in front of it in plaintext",
  "starttls-wrapper":
    "STARTTLS for a plaintext SMTP, LMTP, IMAP, POP3, NNTP, ManageSieve, PostgreSQL, MySQL, LDAP or XMPP server, unpatched",
  "tls-sniff": "TLS or plaintext on one port, routed by the first bytes, SNI and ALPN",
  "acme-challenge": "answers ACME http-01 challenges on port 80, the rest to the program",
  tcpforward: "connects the client to a TCP service (by default where it asked to go) and relays",
  "tls-everywhere":
    "TLS for every TCP service of this host: TPROXY rules and the chain, in one command",
  "tls-keygen":
    "keys, certificates, session ticket keys and OCSP responses, written atomically, keys mode 0600",
  "ucspi-demo": "a small demonstration program for the UCSPI tools",
};

/** What `name` does, in one line (--help's first, and the man page's NAME). */
export function whatItDoes(name: string): string {
  return WHAT[name] ?? "one of the ucspi-tls programs";
}

/** The help text of `name`; `extensions`: the options of ours beyond djb's usage line, which
 * stays djb's own (his usage errors print it). */
export function helpText(name: string, usage: string | undefined, extensions?: string): string {
  return [
    `${name}: ${whatItDoes(name)}`,
    ...(usage ? [`usage: ${usage}`] : []),
    ...(extensions ? [`beyond djb's: ${extensions}`] : []),
    `Every option, the environment and the exit codes: man ${name}, or docs/${name}.md in ucspi-tls.`,
    "",
  ].join("\n");
}

/** When `args` is just --help: prints the help on stdout and says so (the caller exits 0); a
 * FatalError when stdout cannot take it. */
export function helpAsked(
  name: string,
  args: readonly string[],
  usage?: string,
  extensions?: string,
): boolean {
  if (args.length !== 1 || args[0] !== "--help") return false;
  writeStdout(helpText(name, usage, extensions));
  return true;
}
