// The server greeting of each protocol that has one, as the TLS side of a STARTTLS hand-over
// must treat it: the client saw the plaintext server's greeting already, so the greeting of the
// program started behind tlsd is swallowed (reference/starttls-protocols.md, "what to swallow").
// A greeting that is not the one the client expects (a refusal, a BYE) is passed on, so that
// the client sees why; one that would put the client in another state (IMAP PREAUTH) fails.

export type GreetingVerdict =
  /** Not complete yet: more bytes are needed. */
  | { kind: "more" }
  /** The greeting, `length` bytes at the start: drop them, pass what follows. */
  | { kind: "swallow"; length: number }
  /** Not a greeting to swallow: pass everything on as it is. */
  | { kind: "forward" }
  /** The session cannot go on (`reason` says why). */
  | { kind: "fail"; reason: string };

/** The most a greeting may take; longer is a server gone wrong. */
export const MAX_GREETING = 16 * 1024;

type Grammar = (bytes: Buffer) => GreetingVerdict;

/** The complete lines at the start of `bytes` (each with its LF), and whether one is cut. */
function lines(bytes: Buffer): { lines: string[]; ends: number[] } {
  const out: string[] = [];
  const ends: number[] = [];
  let start = 0;
  for (let lf = bytes.indexOf(10); lf >= 0; lf = bytes.indexOf(10, start)) {
    out.push(bytes.toString("latin1", start, lf).replace(/\r$/, ""));
    start = lf + 1;
    ends.push(start);
  }
  return { lines: out, ends };
}

/** SMTP, LMTP, FTP: "220-" lines continue, "220 " (or a bare "220") ends; another code is a
 * refusal (554, 421) that the client must see. */
function multiline(code: string): Grammar {
  return (bytes) => {
    const { lines: got, ends } = lines(bytes);
    for (const [i, line] of got.entries()) {
      if (!line.startsWith(code)) return { kind: "forward" };
      const sep = line.charAt(3);
      if (sep === "-") continue;
      if (sep === " " || line.length === 3) return { kind: "swallow", length: ends[i] ?? 0 };
      return { kind: "forward" };
    }
    return { kind: "more" };
  };
}

/** One line, swallowed when it starts with one of `ok`, failing on one of `fail`. */
function oneLine(ok: RegExp, fail?: { match: RegExp; reason: string }): Grammar {
  return (bytes) => {
    const { lines: got, ends } = lines(bytes);
    const line = got[0];
    if (line === undefined) return { kind: "more" };
    if (fail && fail.match.test(line)) return { kind: "fail", reason: fail.reason };
    return ok.test(line) ? { kind: "swallow", length: ends[0] ?? 0 } : { kind: "forward" };
  };
}

const GRAMMARS: Readonly<Record<string, Grammar>> = {
  smtp: multiline("220"),
  submission: multiline("220"),
  lmtp: multiline("220"),
  ftp: multiline("220"),
  imap: oneLine(/^\* OK\b/i, {
    match: /^\* PREAUTH\b/i,
    reason: "the server greeted with PREAUTH: the client would skip authentication",
  }),
  pop3: oneLine(/^\+OK\b/),
  nntp: oneLine(/^20[01]\b/),
};

/** The protocols whose greeting can be swallowed. */
export const GREETING_PROTOCOLS = Object.keys(GRAMMARS);

/**
 * What to do with the first bytes a server sent, `bytes` (all of them so far), for
 * `protocol`. Throws when the protocol has no greeting grammar.
 */
export function greetingVerdict(protocol: string, bytes: Buffer): GreetingVerdict {
  const grammar = GRAMMARS[protocol];
  if (!grammar) throw new Error(`no greeting grammar for protocol ${protocol}`);
  const verdict = grammar(bytes);
  if (verdict.kind === "more" && bytes.length >= MAX_GREETING)
    return { kind: "fail", reason: `greeting longer than ${MAX_GREETING} bytes` };
  return verdict;
}
