// SNI name patterns as tlsd's CERTFILE:name uses them: a name, or `*.parent` for exactly one
// more label (not parent itself, not two labels down). tls-sniff's --sni routes and tlsd's
// ACME_NAMES read them the same way.

/** Whether `name` (lowercase) matches `pattern` (lowercase). */
export function sniMatches(pattern: string, name: string): boolean {
  if (!pattern.startsWith("*.")) return pattern === name;
  const dot = name.indexOf(".");
  return dot > 0 && name.slice(dot + 1) === pattern.slice(2);
}

/** A lowercase host name (labels of letters, digits, `_`, `-`), or `*.` and one. */
export function isSniPattern(text: string): boolean {
  return /^(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(text);
}

/** Whether a client's SNI is a host name, as tls-sniff takes it: labels of letters, digits,
 * `_` and `-`, 1 to 63 bytes each, at most 253 in all, no trailing dot. Anything else (a
 * control character, a space, a `%`) is refused before it can reach a log or a variable. */
export function isSniName(name: string): boolean {
  return name.length <= 253 && /^[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*$/.test(name);
}

/** Why tlsd refuses a client's name that is not a host name (isSniName). */
export const BAD_SNI = "the client's server name (SNI) is not a host name";

/** Why a client without a name gets no certificate where there is no default pair (-k 2,
 * CERTDIR alone). */
export const NO_DEFAULT_CERTIFICATE =
  "the client sent no server name (SNI), and there is no default certificate (CERTFILE)";
