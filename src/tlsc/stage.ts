// tlsc: TLS to the server on the connection (fds 6/7), plaintext to the program on its 6/7.
// The server's certificate is verified by default; a failure ends here, never in plaintext.
import { isIP } from "node:net";
import { hostname } from "node:os";
import type { Duplex } from "node:stream";
import type { Socket } from "node:net";
import { connect, getCACertificates } from "node:tls";
import {
  filePath,
  readPair,
  readTrustAnchors,
  revocationLists,
  trustAnchorsFrom,
} from "../tls/cert-store.ts";
import { closePolicy } from "../tls/close-policy.ts";
import { programEnv, tlsFacts } from "../tls/peer-env.ts";
import { protocolOptions } from "../tls/protocol.ts";
import {
  EXIT_TLS,
  fatalPrefix,
  handshakeOrStatus,
  runOverSession,
  timeLeft,
} from "../tls/session.ts";
import { UpgradeError, upgrade } from "../starttls-client/index.ts";
import type { UpgradeResult } from "../starttls-client/index.ts";
import type { UpgradeNames } from "../starttls-client/types.ts";
import { isHelloName } from "../starttls-client/text-replies.ts";
import { exitStatus } from "../ucspi/chain.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { tlsIds } from "../ucspi/privileges.ts";
import type { Stage, StageContext } from "../ucspi/stage.ts";
import { USAGE, parseTlscArgs } from "./options.ts";
import type { TlscOptions } from "./options.ts";
import { verifyServer, verifyStapled } from "./verify.ts";
import { stageOptions } from "../ucspi/stage-options.ts";

export const tlscStage: Stage = {
  async run(ctx) {
    const options = stageOptions(ctx.argv, USAGE, parseTlscArgs);
    const env = ctx.env;
    // The name to send and verify: -k, else the host the user gave our tcpclient, else the
    // address. Never TCPREMOTEHOST: a reverse name is chosen by whoever owns the address.
    const serverName = options.serverName ?? (env["TCPCLIENT_HOST"] || undefined);
    const address = env["TCPREMOTEIP"];
    const anchors = trustAnchorsFrom(env);
    let client: { cert: Buffer; key: Buffer } | undefined;
    if (options.sendClientCert) {
      const cert = env["CERTFILE"];
      const key = env["KEYFILE"];
      if (cert === undefined || key === undefined)
        throw new FatalError(`${cert === undefined ? "CERTFILE" : "KEYFILE"} not set`, 100);
      client = readPair({ cert: filePath(cert), key: filePath(key) });
    }
    const ca = anchors ? readTrustAnchors(anchors) : defaultAnchors();
    // Lists for the server's CAs: OpenSSL then checks every certificate of its chain.
    const crlFile = env["CRLFILE"];
    const crl = crlFile === undefined ? undefined : revocationLists(filePath(crlFile));
    ctx.dropPrivileges(tlsIds(env));
    const policy = closePolicy(ctx.connection, options);
    const fatal = fatalPrefix("tlsc");
    let replay: Buffer = Buffer.alloc(0);
    let between: ((stream: Duplex) => Duplex) | undefined;
    // -K bounds the STARTTLS dialogue and the handshake together: the program runs within it.
    const started = Date.now();
    if (options.starttls) {
      const names = {
        // A TCPLOCALHOST that is no host name (a line end in it) is not said to the server.
        local:
          options.localName ??
          [env["TCPLOCALHOST"] ?? "", hostname()].find(isHelloName) ??
          "localhost",
        server: serverName ?? address ?? "",
      };
      const upgraded = await upgradeOrStatus(ctx, fatal, policy.transport, options, names);
      if (typeof upgraded === "number") return upgraded;
      replay = upgraded.replay;
      if (upgraded.kind === "tls") between = upgraded.wrap;
      if (upgraded.kind === "plaintext") {
        // --plaintext-fallback: the server offers no upgrade, and the user allowed plaintext.
        if (options.verbosity >= 1)
          ctx.log(`tlsc: warning: server does not offer STARTTLS: going on in plaintext\n`);
        // No TLS, so no SSL* variable at all, --mod-ssl's address set neither.
        const next = programEnv(env, { keepEnv: options.keepEnv, modSsl: false });
        if (replay.length > 0) policy.transport.unshift(replay);
        return ctx.next(options.program, next, { stream: policy.transport });
      }
    }
    const tls = connect({
      socket: policy.transport as Socket,
      ...(serverName && !isIP(serverName) ? { servername: serverName } : {}),
      ...protocolOptions(env["CIPHERS"]),
      // Verified below, after the handshake, so that a refusal is said in our words; the
      // program never runs before it.
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
      ca,
      ...(crl ? { crl } : {}),
      ...(client ?? {}),
      ...(options.alpn ? { ALPNProtocols: options.alpn } : {}),
      // A verifying client asks for the server's OCSP response: a must-staple certificate
      // needs it, and a revocation it tells is not passed over (verifyStapled).
      ...(options.verify ? { requestOCSP: true } : {}),
    });
    // Said by Node during the handshake (null when the server sent none), checked with the rest.
    let stapled: Buffer | null | undefined;
    if (options.verify) tls.once("OCSPResponse", (response: Buffer | null) => (stapled = response));
    const verifiedName = serverName ?? address ?? "";
    const bound = { ...options, handshakeTimeoutMs: timeLeft(options.handshakeTimeoutMs, started) };
    const refused = await handshakeOrStatus(ctx, fatal, tls, "secureConnect", bound, () => {
      if (!options.verify) return;
      verifyServer(tls, verifiedName, anchors);
      verifyStapled(tls, stapled, options.certStatus);
    });
    if (refused !== undefined) return refused;
    const next = programEnv(env, options, tlsFacts(tls, options, "SERVER"));
    // After STARTTLS, the greeting the program would have read itself comes first.
    const greet = (stream: Duplex) => {
      const front = between ? between(stream) : stream;
      if (replay.length > 0) front.unshift(replay);
      return front;
    };
    return runOverSession(
      ctx,
      fatal,
      tls,
      policy,
      options.closeNotify,
      options.program,
      next,
      greet,
    );
  },
};

/** The STARTTLS dialogue of --starttls: its result, or the status to end with once the
 * failure is logged (98, as a failed handshake: no plaintext session unless allowed). */
async function upgradeOrStatus(
  ctx: StageContext,
  fatal: string,
  transport: Duplex,
  options: TlscOptions,
  names: UpgradeNames,
): Promise<UpgradeResult | number> {
  const protocol = options.starttls ?? "";
  try {
    return await upgrade(
      protocol,
      transport,
      names,
      options.handshakeTimeoutMs,
      options.plaintextFallback,
    );
  } catch (error) {
    transport.destroy();
    if (options.verbosity >= 1)
      ctx.log(`${fatal}STARTTLS (${protocol}) failed: ${upgradeErrorText(error as Error)}\n`);
    return exitStatus(EXIT_TLS);
  }
}

/** A transport error in our words (a reset, say), an UpgradeError as it is. */
function upgradeErrorText(error: Error): string {
  if (error instanceof UpgradeError) return error.message;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ECONNRESET") return "connection reset by the server";
  if (code === "EPIPE") return "server closed the connection";
  return causeText(error);
}

let systemAnchors: string[] | undefined;

/** Without CAFILE/CADIR: the system's CA store (Debian's ca-certificates), else Node's own. */
function defaultAnchors(): string[] {
  if (!systemAnchors) {
    const system = getCACertificates("system");
    systemAnchors = system.length > 0 ? system : getCACertificates("bundled");
  }
  return systemAnchors;
}
