// Handing a client over to the TLS service: a TCP connection to it, opened before the client
// is told to go ahead (a service that is down gets the protocol's "not now" instead), and the
// PROXY v2 header that carries the client's real addresses and the resume record, so that the
// service's tcpserver --proxy sets TCPREMOTEIP to the client and its tlsd swallows the
// greeting (DESIGN.md section 5).
import { connect } from "node:net";
import type { Socket } from "node:net";
import { envProxyHeader } from "../proxy/from-env.ts";
import { resumeTlv } from "../proxy/index.ts";
import type { ProxyHeader, ResumeRecord } from "../proxy/index.ts";
import type { Env } from "../ucspi/env.ts";
import { causeText } from "../ucspi/errors.ts";

/** Connects to host:port within `timeoutMs`; rejects with a one-line reason in djb's words, as
 * tcpforward and tcpclient say it ("connection refused"). */
export function connectService(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, allowHalfOpen: true, noDelay: true });
    const fail = (why: string) => {
      socket.destroy();
      reject(new Error(`unable to connect to ${host} port ${port}: ${why}`));
    };
    const timer = setTimeout(() => fail("timed out"), timeoutMs);
    socket.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // A name that does not resolve: said as tcpclient and tcpforward say it, never as the
      // runtime's "getaddrinfo ENOTFOUND name".
      const dns = dnsText(error.code, host);
      if (dns) {
        socket.destroy();
        reject(new Error(dns));
      } else fail(causeText(error));
    });
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
  });
}

const NOT_FOUND = new Set(["ENOTFOUND", "ENODATA", "EAI_NONAME", "EAI_NODATA"]);
const TEMPORARY = new Set(["EAI_AGAIN", "EAI_FAIL"]);

/** djb's words for a host name that cannot be looked up (undefined: not a lookup's error). */
function dnsText(code: string | undefined, host: string): string | undefined {
  if (code && NOT_FOUND.has(code)) return `unable to figure out IP address for ${host}`;
  if (code && TEMPORARY.has(code)) return `temporarily unable to figure out IP address for ${host}`;
  return undefined;
}

/** The header the TLS service gets first: the client's addresses (LOCAL when env has none)
 * and the resume record. */
export function handoverHeader(env: Readonly<Env>, record: ResumeRecord): Buffer {
  return envProxyHeader(env, [resumeTlv(record)]);
}

/** Local mode: the same record, as the header our own tlsd would have been given. */
export function localHeader(record: ResumeRecord): ProxyHeader {
  return { version: 2, command: "local", family: "unknown", tlvs: [resumeTlv(record)] };
}
