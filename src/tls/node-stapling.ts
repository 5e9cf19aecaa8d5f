// OCSP stapling on node:tls: a TLSSocket staples what its `server` answers to the OCSPRequest
// event, asked once the client's name has chosen the context (after the SNI callback) and only
// when the client sent status_request. The event names the chosen certificate (DER), which the
// store knows its response by. A TLSSocket made on its own has no server: this small emitter
// stands in for one, and only that event is listened to.
import { EventEmitter } from "node:events";
import type { CertStore } from "./cert-store.ts";

type Answer = (error: Error | null, response?: Buffer) => void;

const staplers = new WeakMap<CertStore, EventEmitter>();

/** The `server` option that makes a TLSSocket staple `store`'s responses. */
export function staplerOf(store: CertStore): EventEmitter {
  let stapler = staplers.get(store);
  if (!stapler) {
    stapler = new EventEmitter();
    stapler.on("OCSPRequest", (certificate: Buffer | null, _issuer: unknown, answer: Answer) =>
      answer(null, certificate ? store.stapleFor(certificate) : undefined),
    );
    staplers.set(store, stapler);
  }
  return stapler;
}
