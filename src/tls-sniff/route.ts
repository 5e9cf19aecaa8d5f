// Where a sniffed connection goes, and what the next program learns about it.
import { sniMatches } from "../tls/sni-pattern.ts";
import { unsetVar } from "../ucspi/env.ts";
import type { Env } from "../ucspi/env.ts";
import type { SniffOptions } from "./options.ts";
import type { Verdict } from "./peek.ts";

/** A route taken: its program, and its name as the command line gives it (`default`, `plain`,
 * `ssh`, `http`, `prefix:TEXT`, `sni:NAME`, `alpn:PROTOCOL`: what tcpserver --metrics counts
 * by, never the client's words). */
export interface Chosen {
  program: string[];
  name: string;
}

/** The route for a TLS or plaintext verdict; undefined when plaintext has no route. */
export function chooseRoute(
  o: SniffOptions,
  verdict: Extract<Verdict, { kind: "tls" | "plain" }>,
): Chosen | undefined {
  if (verdict.kind === "plain") {
    if (verdict.route) return { program: verdict.route.program, name: verdict.route.name };
    return o.plain && { program: o.plain, name: "plain" };
  }
  const { serverName, alpn } = verdict.hello;
  for (const route of o.routes) {
    const m = route.match;
    const matches =
      "sni" in m
        ? serverName !== undefined && sniMatches(m.sni, serverName)
        : (alpn ?? []).includes(m.alpn);
    if (matches)
      return { program: route.program, name: "sni" in m ? `sni:${m.sni}` : `alpn:${m.alpn}` };
  }
  return { program: o.program, name: "default" };
}

/** Whether an offered ALPN protocol name can be shown as it is, in TLS_SNIFF_ALPN and on a log
 * line: printable ASCII, no space and no comma (the list's separator). RFC 7301 names are
 * opaque bytes: GREASE values (RFC 8701: 0x0A 0x0A, 0x1A 0x1A, ...) hold newlines and control
 * bytes, and a client may send a NUL (which would cut an environment string short, so that
 * `h2\0x` read as `h2`), a newline (a forged log line) or a comma (`a,b` read as two names).
 * Such names are left out; registered protocol names are all of this kind. */
export function isShownAlpn(name: string): boolean {
  return /^[\x21-\x2b\x2d-\x7e]+$/.test(name);
}

/** The offered ALPN protocols that can be shown (isShownAlpn), in the client's order. */
export function shownAlpn(alpn: readonly string[] | undefined): string[] {
  return (alpn ?? []).filter(isShownAlpn);
}

/** The environment for the next program: TLS_SNIFF=tls|plain and, for TLS, the server name
 * and the offered ALPN protocols (those that can be shown); stale values from an outer stage are removed. `env` is the
 * stage's own copy (StageContext.env), changed in place and passed on: a copy of a whole
 * environment per connection costs more than everything else tls-sniff does with it. */
export function sniffEnv(env: Env, verdict: Extract<Verdict, { kind: "tls" | "plain" }>): Env {
  env["TLS_SNIFF"] = verdict.kind;
  unsetVar(env, "SSL_TLS_SNI_SERVERNAME");
  unsetVar(env, "TLS_SNIFF_ALPN");
  if (verdict.kind === "tls") {
    const { serverName, alpn } = verdict.hello;
    if (serverName !== undefined) env["SSL_TLS_SNI_SERVERNAME"] = serverName;
    const shown = shownAlpn(alpn);
    if (shown.length > 0) env["TLS_SNIFF_ALPN"] = shown.join(",");
  }
  return env;
}
