// What tlsd counts for tcpserver --metrics (a no-op anywhere else): each handshake, where the
// native engine took its steps, and when each certificate it serves expires.
import type { TLSSocket } from "node:tls";
import {
  certificateExpiry,
  handshakeSteps,
  handshakes,
  ocspNextUpdate,
} from "../metrics/catalog.ts";
import type { Sample } from "../metrics/family.ts";
import type { CertStore } from "../tls/cert-store.ts";
import {
  HandshakeError,
  groupLabel,
  keyExchangeGroup,
  versionLabel,
} from "../tls/handshake-result.ts";
import { native } from "../ucspi/native.ts";
import type { TlsFacts } from "../ucspi/native.ts";

/** A handshake that worked: its version, key exchange group, and whether it resumed. */
export function handshakeDone(tls: TLSSocket): void {
  if (!handshakes.enabled) return;
  handshakes.inc({
    result: "ok",
    version: versionLabel(tls),
    group: keyExchangeGroup(tls),
    resumed: String(tls.isSessionReused()),
  });
}

/** The same for a session of the native engine, from what its handshake told. */
export function engineHandshakeDone(facts: TlsFacts): void {
  if (!handshakes.enabled) return;
  const version = facts.version;
  handshakes.inc({
    result: "ok",
    version: version === "TLSv1.3" || version === "TLSv1.2" ? version : "other",
    group: groupLabel(facts.group),
    resumed: String(facts.resumed),
  });
}

/** A handshake that failed: a HandshakeError's reason, else the client certificate check's. */
export function handshakeFailed(error: unknown): void {
  const reason = error instanceof HandshakeError ? error.reason : "client_certificate";
  handshakes.inc({ result: "failed", reason });
}

/** Reads the engine's handshake steps at each scrape: on the loop, and on a handshake thread. */
export function observeHandshakeSteps(): void {
  handshakeSteps.observe(() => {
    const [loop, pool] = native().tlsHandshakeSteps();
    return [
      { labels: { on: "loop" }, value: loop },
      { labels: { on: "thread" }, value: pool },
    ];
  });
}

/** Reads the certificates of `stores` at each scrape (one series per certificate, however
 * many stores serve it). */
export function observeCertificates(stores: () => Iterable<CertStore>): void {
  ocspNextUpdate.observe(() => {
    const seen = new Map<string, Sample>();
    for (const store of stores())
      for (const { file, until } of store.staples())
        seen.set(file, { labels: { file }, value: until });
    return seen.values();
  });
  certificateExpiry.observe(() => {
    const seen = new Map<string, Sample>();
    for (const store of stores())
      for (const { name, file, notAfter } of store.expiries())
        seen.set(`${name}\0${file}`, { labels: { name, file }, value: notAfter });
    return seen.values();
  });
}
