// SMTP, LMTP, POP3, NNTP and ManageSieve: line replies, and a capability list to find
// STARTTLS (or POP3's STLS) in before asking for it.
import { keyword } from "../dialogue/smtp.ts";
import { isSniName } from "../tls/sni-pattern.ts";
import { UpgradeError, quoted } from "./reader.ts";
import type { ClientUpgrade } from "./types.ts";

/** Whether `name` can be our EHLO/LHLO argument (RFC 5321 §4.1.1.1): a host name, or an
 * address literal in brackets; never a space or a line end, which would end our command and
 * start another. */
export function isHelloName(name: string): boolean {
  return isSniName(name) || /^\[[\x21-\x5a\x5e-\x7e]+\]$/.test(name);
}

/** An SMTP reply's last line: "ddd " or a bare "ddd" (anything else has "ddd-"). */
export const smtpEnds = (line: string) => !/^[0-9]{3}-/.test(line);

/** Whether an EHLO/LHLO reply (lines with their "ddd-"/"ddd ") offers STARTTLS: a keyword line
 * after the first (the domain line), in any case. */
export function ehloOffersStartTls(lines: readonly string[]): boolean {
  return lines.slice(1).some((line) => keyword(line) === "STARTTLS");
}

/** Whether a dot-terminated capability list (POP3 CAPA, NNTP CAPABILITIES; without its first
 * and last lines) has `name` as a line's first word, in any case. */
export function listOffers(lines: readonly string[], name: string): boolean {
  return lines.some((line) => line.trim().split(/\s+/)[0]?.toUpperCase() === name);
}

/** Whether a ManageSieve capability response offers STARTTLS: a line `"STARTTLS"`. */
export function sieveOffersStartTls(lines: readonly string[]): boolean {
  return lines.some((line) => /^"STARTTLS"\s*$/i.test(line.trim()));
}

/** Whether a status line starts with one of `statuses` as a word of its own: "+OK" and
 * "382" are, "+OKAY" and "3820" are not (a prefix match took them for a go-ahead). */
export function statusIs(line: string, ...statuses: string[]): boolean {
  return statuses.some(
    (status) => line.startsWith(status) && /^(?:[ \t]|\r?\n|$)/.test(line.slice(status.length)),
  );
}

function refused(what: string, line: string | undefined): UpgradeError {
  return new UpgradeError("refused", `server refused ${what}: ${quoted(line ?? "")}`);
}

const notOffered = () => new UpgradeError("not-offered", "server does not offer STARTTLS");

/**
 * A whole SMTP reply: every line has the same three-digit code (RFC 5321 4.2.1), and the
 * reply is that code's. A `220-ok` then `454 no` was taken for a go-ahead from its first line;
 * codes that differ are the server's error, reported as such.
 */
async function smtpReply(io: Parameters<ClientUpgrade>[0]): Promise<[string, string[]]> {
  const lines = await io.reply(smtpEnds);
  const code = REPLY_LINE.exec(lines[0] ?? "")?.[1];
  const odd = lines.find((line) => REPLY_LINE.exec(line)?.[1] !== code);
  if (code === undefined || odd !== undefined)
    throw new UpgradeError(
      "protocol",
      `server sent a malformed reply: ${quoted(odd ?? lines[0] ?? "")}`,
    );
  return [code, lines];
}

/** An SMTP reply line: its code, then a space, a hyphen or the line's end. */
const REPLY_LINE = /^([0-9]{3})(?:[ -]|\r?\n|$)/;

function smtpFamily(hello: "EHLO" | "LHLO"): ClientUpgrade {
  return async (io, names) => {
    const [greetingCode, greeting] = await smtpReply(io);
    if (greetingCode !== "220") throw refused("the session", greeting.at(-1));
    io.keep(greeting.join(""));
    io.send(`${hello} ${names.local}\r\n`);
    const [code, reply] = await smtpReply(io);
    if (code !== "250") throw refused(hello, reply.at(-1));
    if (!ehloOffersStartTls(reply)) throw notOffered();
    io.send("STARTTLS\r\n");
    const [answerCode, answer] = await smtpReply(io);
    if (answerCode !== "220") throw refused("STARTTLS", answer.at(-1));
  };
}

export const smtp = smtpFamily("EHLO");
export const lmtp = smtpFamily("LHLO");

/** A dot-terminated list after a status line that starts with `ok`; none when it does not. */
async function dotList(
  io: Parameters<ClientUpgrade>[0],
  ok: string,
): Promise<string[] | undefined> {
  const status = await io.line();
  if (!statusIs(status, ok)) return undefined;
  const lines = await io.reply((line) => /^\.\r?\n$/.test(line));
  return lines.slice(0, -1);
}

export const pop3: ClientUpgrade = async (io) => {
  const greeting = await io.line();
  if (!statusIs(greeting, "+OK")) throw refused("the session", greeting);
  io.keep(greeting);
  io.send("CAPA\r\n");
  const capabilities = await dotList(io, "+OK");
  if (!capabilities || !listOffers(capabilities, "STLS")) throw notOffered();
  io.send("STLS\r\n");
  const answer = await io.line();
  if (!statusIs(answer, "+OK")) throw refused("STLS", answer);
};

export const nntp: ClientUpgrade = async (io) => {
  const greeting = await io.line();
  if (!statusIs(greeting, "200", "201")) throw refused("the session", greeting);
  io.keep(greeting);
  io.send("CAPABILITIES\r\n");
  const capabilities = await dotList(io, "101");
  if (!capabilities || !listOffers(capabilities, "STARTTLS")) throw notOffered();
  io.send("STARTTLS\r\n");
  const answer = await io.line();
  if (!statusIs(answer, "382")) throw refused("STARTTLS", answer);
};

/** A ManageSieve response line: OK, NO or BYE, then anything. */
const sieveResponse = (line: string) => /^(OK|NO|BYE)\b/i.test(line);

export const sieve: ClientUpgrade = async (io) => {
  const capabilities = await io.reply(sieveResponse);
  const status = capabilities.pop() ?? "";
  if (!/^OK\b/i.test(status)) throw refused("the session", status);
  // In plaintext (--plaintext-fallback) the program reads them as its greeting; over TLS the
  // server sends them again (RFC 5804 §2.2), so nothing is kept once STARTTLS is answered.
  io.keep([...capabilities, status].join(""));
  if (!sieveOffersStartTls(capabilities)) throw notOffered();
  io.send("STARTTLS\r\n");
  const answer = await io.reply(sieveResponse);
  const last = answer[answer.length - 1] ?? "";
  if (answer.length !== 1 || !/^OK\b/i.test(last)) throw refused("STARTTLS", last);
  io.keep("");
};
