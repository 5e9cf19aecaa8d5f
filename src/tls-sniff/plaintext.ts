// Plaintext told apart by its first bytes, for tls-sniff's --ssh, --http and --prefix routes
// (sslh's probes, caddy-l4's matchers): SSH and HTTP on the port that also takes TLS, each to
// its own program. Only clients that speak first can be told this way; a silent one (SMTP,
// IMAP, POP3 wait for the server) goes to --plain.

/** What a plaintext route matches. */
export type PlainMatch =
  /** An SSH client's identification string (RFC 4253 4.2: `SSH-2.0-...`, sent first). */
  | { kind: "ssh" }
  /** An HTTP/1.x request line (RFC 9112 3: method, target, version), h2c's preface too. */
  | { kind: "http" }
  /** These bytes first, exactly. */
  | { kind: "prefix"; bytes: Buffer };

/** The longest HTTP request line looked at: a longer one is not taken for HTTP (servers refuse
 * request lines past 8 KiB too). */
export const MAX_REQUEST_LINE = 8192;

const SSH = Buffer.from("SSH-");

/**
 * Whether `bytes`, the client's first bytes so far, match: true, false (they never will), or
 * how many bytes in all would tell. With `final` (nothing more will come: the client stopped
 * or left), a match that needs more is false.
 */
export function plainMatches(m: PlainMatch, bytes: Uint8Array, final = false): boolean | number {
  const verdict =
    m.kind === "http" ? requestLine(bytes) : startsWith(bytes, m.kind === "ssh" ? SSH : m.bytes);
  return final && typeof verdict === "number" ? false : verdict;
}

function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean | number {
  const n = Math.min(bytes.length, prefix.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== prefix[i]) return false;
  return bytes.length >= prefix.length ? true : prefix.length;
}

// RFC 9110 5.6.2 tchar: the bytes of a method token.
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;
const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;
const VERSION = "HTTP/";

/** `METHOD SP target SP HTTP/d.d` then CRLF (or a bare LF), as far as `bytes` go. */
function requestLine(bytes: Uint8Array): boolean | number {
  let i = 0;
  const more = () => (i < MAX_REQUEST_LINE ? i + 1 : false);
  // The method: 1 to 32 token bytes (the longest registered one has 17), then a space.
  for (; i < bytes.length && TCHAR.test(String.fromCharCode(bytes[i] ?? 0)); i++)
    if (i >= 32) return false;
  if (i === bytes.length) return more();
  if (i === 0 || bytes[i] !== SP) return false;
  // The target: visible bytes (no control byte, no space), at least one.
  const target = ++i;
  for (; i < bytes.length && (bytes[i] ?? 0) > SP && bytes[i] !== 0x7f; i++)
    if (i >= MAX_REQUEST_LINE) return false;
  if (i === bytes.length) return more();
  if (i === target || bytes[i] !== SP) return false;
  // The version: HTTP/ DIGIT . DIGIT
  i++;
  for (let k = 0; k < VERSION.length + 3; k++, i++) {
    if (i === bytes.length) return more();
    const c = bytes[i] ?? 0;
    const ok =
      k < VERSION.length
        ? c === VERSION.charCodeAt(k)
        : k === VERSION.length + 1
          ? c === 0x2e
          : c >= 0x30 && c <= 0x39;
    if (!ok) return false;
  }
  // The line's end.
  if (i === bytes.length) return more();
  if (bytes[i] === LF) return true;
  if (bytes[i] !== CR) return false;
  i++;
  if (i === bytes.length) return more();
  return bytes[i] === LF;
}
