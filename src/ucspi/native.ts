// The native addon (src/native/ucspi_native.c), typed. Built by scripts/build.mjs into build/.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface Acceptor {
  pause(): void;
  resume(): void;
  close(): void;
}

/** fd, local ip, local port, remote ip, remote port, and the interface of a link-local peer
 * ("" for any other); or a negative errno alone. */
export type OnConnection = (
  fd: number,
  localIp?: string,
  localPort?: number,
  remoteIp?: string,
  remotePort?: number,
  interfaceName?: string,
) => void;

export interface Native {
  spawn(
    file: string,
    argv: readonly string[],
    envp: readonly string[],
    fdPairs: readonly number[],
    closeFrom: number,
    onExit: (wstatus: number) => void,
  ): number;
  /** As spawn, with posix_spawn run in libuv's threadpool (the event loop is not suspended while
   * the child copies and closes our fd table). onSpawned gets the pid, or posix_spawn's error;
   * the fds of fdPairs must stay open until it is called. */
  spawnAsync(
    file: string,
    argv: readonly string[],
    envp: readonly string[],
    fdPairs: readonly number[],
    closeFrom: number,
    onSpawned: (error: Error | null, pid: number | undefined) => void,
    onExit: (wstatus: number) => void,
  ): void;
  /** Makes sure `count` build/ucspi-spawner processes run (src/native/spawner.c), starting
   * those missing; throws when none can. onLost is called when one goes away (every program
   * it still ran is then reported as exit 111). */
  startSpawner(helperPath: string, count: number, onLost: () => void): void;
  /** As spawnAsync with the spawn done by the least busy spawner; the child gets fds 0-2 and
   * the pairs' targets only. false (and no callback ever) when it could not be handed over. */
  spawnerSpawn(
    file: string,
    argv: readonly string[],
    envp: readonly string[],
    fdPairs: readonly number[],
    onSpawned: (error: Error | null, pid: number | undefined) => void,
    onExit: (wstatus: number) => void,
  ): boolean;
  /** transparent: IP_TRANSPARENT, so that connections TPROXY diverts here are accepted. */
  listen(
    address: string,
    port: number,
    backlog: number,
    reusePort: boolean,
    transparent?: boolean,
  ): number;
  localAddress(fd: number): [string, number, 4 | 6];
  /** SO_DOMAIN (AF_*), SO_TYPE (SOCK_*) and SO_ACCEPTCONN (1 when listening) of a socket; throws
   * EBADF or ENOTSOCK for a closed fd or another file. */
  socketKind(fd: number): [number, number, number];
  accept(listenFd: number, flags: number, onConnection: OnConnection): Acceptor;
  close(fd: number): void;
  devNull(fd: number): void;
  /** malloc_trim(0): the C heap's free pages back to the kernel. */
  trimMemory(): void;
  shutdownWrite(fd: number): void;
  /** Sends a signal to a child whose exit has not been reported yet. */
  kill(pid: number, signo: number): void;
  /** Up to `max` bytes without blocking: undefined when none are there yet, null at EOF.
   * With `consume` false the bytes stay in the socket (MSG_PEEK). */
  recv(fd: number, max: number, consume: boolean): Buffer | undefined | null;
  /** SO_RCVLOWAT: the socket polls readable only once this many bytes are buffered (or at EOF). */
  rcvLowat(fd: number, bytes: number): void;
  /** Another (close-on-exec) fd for the same open file. */
  dup(fd: number): number;
  /** A connected AF_UNIX stream pair (close-on-exec). */
  socketPair(sndbuf?: number): [number, number];
  /** Calls back once when fd is readable: with 0 when bytes are there (as many as SO_RCVLOWAT
   * asks, or fewer once the receive buffer is full), with 1 when the peer has shut its writing
   * side or the connection failed (bytes may still be queued before that end); returns the
   * wait's number, for cancelWait. */
  whenReadable(fd: number, callback: (status: number) => void): number;
  /** A non-blocking TCP socket whose connect to ip:port has begun (see whenConnected). From
   * `sourceIp` ("" for the kernel's choice); `transparent` lets that be another host's address
   * (IP_TRANSPARENT); mark > 0 is its SO_MARK; sourcePort > 0 binds that port (SO_REUSEADDR),
   * else the kernel picks one at connect. Throws for what fails at once (EPERM, EINVAL, and
   * EADDRINUSE for a sourcePort in use). */
  connectTcp(
    ip: string,
    port: number,
    sourceIp: string,
    transparent: boolean,
    mark: number,
    sourcePort: number,
  ): number;
  /** A non-blocking stream socket connected to the UNIX socket at path (close-on-exec); a
   * full backlog throws EAGAIN. */
  connectUnix(path: string): number;
  /** Whether connectTcp's connect is over already: 0 connected, a negative errno for a
   * failure, 1 still under way (then whenConnected tells). */
  connectStatus(fd: number): number;
  /** Calls back once connectTcp's connect is over: 0, or a negative errno; returns the wait's
   * number, for cancelWait. */
  whenConnected(fd: number, callback: (status: number) => void): number;
  /** Ends a wait on fd that is not over yet; a finished wait's number names nothing. */
  cancelWait(fd: number, wait: number): void;
  /** The bytes of two sockets to each other in the kernel (splice), a half-close passed on,
   * until both directions have ended; then onDone(0, 0), or at the first failure onDone(errno,
   * side) with side 0 for `a`, 1 for `b`. The fds stay open. */
  relay(a: number, b: number, onDone: (errno: number, side: number) => void): void;
  /** SO_LINGER 0: closing fd then resets the connection instead of ending it. */
  abortOnClose(fd: number): void;
  /** An OpenSSL server context (src/native/tls-engine.c) from a PEM certificate chain and key:
   * TLS 1.2 and up, the server's preference, no renegotiation, tickets. Throws an Error in our
   * words for a bad PEM or a key that does not match. Both null: no certificate, a context to
   * begin a handshake with whose certificate onHello chooses by the client's name. */
  tlsContext(certPem: Buffer | null, keyPem: Buffer | null, opts: TlsContextOptions): TlsContext;
  /** The server side of a TLS session on a connected TCP socket, its handshake driven on this
   * loop; see TlsCallbacks. The fd stays open (the caller closes it after onEnd). */
  tlsServe(fd: number, context: TlsContext, callbacks: TlsCallbacks): TlsSession;
  /** After onHandshake: relays the session's plaintext to and from plainFd (one end of a
   * socketpair, left open), both ways, half-closes passed on, until both ends are done. With
   * writeFd (tlsd -n's two pairs), plainFd is only read and writeFd only written. `first`
   * (at most 64 KiB), bytes of the plaintext side read before, goes to the client first. */
  tlsRelay(session: TlsSession, plainFd: number, writeFd?: number, first?: Buffer): void;
  /** The relay's plaintext side moves from its socketpair end to `fd` (the next stage's own
   * socket: tcpforward's service); what the pair held for `staleFd`, its other end, goes first.
   * The caller closes both ends of the pair. `fd`'s failure is onEnd's `plainErrno`: what it
   * sent before still reaches the client, then the session ends with no close_notify. */
  tlsAdopt(session: TlsSession, fd: number, staleFd: number): void;
  /** Ends the session now (a handshake timeout): onEnd(cause), before it returns unless it is
   * called from one of the session's own callbacks. `afterPlain`: once the relay has sent on
   * what the plaintext side wrote before its EOF, and with no close_notify (a reset passed
   * on: the stage behind lost its peer). */
  tlsClose(session: TlsSession, cause?: string, afterPlain?: boolean): void;
  /** Whether the program's bytes are still on their way to the client (the relay's buffer,
   * the gathered records, the socket pair), waiting for it to read; false once the session is
   * over or our end has gone out. */
  tlsPending(session: TlsSession): boolean;
  /** The handshake that onClientHello held goes on (nothing for one ended, or not held). */
  tlsResume(session: TlsSession): void;
  /** Handshake steps the engine has taken since the process started: [on the loop thread, on
   * a handshake thread]. A step goes to a thread while other handshakes wait on the loop. */
  tlsHandshakeSteps(): [number, number];
  /** The handshake threads take this process's share of the cores: `processes` share them
   * (tcpserver --workers). Before the first handshake; none on a single core's share. */
  tlsShareCores(processes: number): void;
  /** A set of session ticket keys for tlsContext's ticketKeys (tls-engine-tickets.c): `keys`
   * is 48 bytes a key (a 16-byte name, an HMAC-SHA256 secret, an AES-128 key: node:tls's
   * layout), `encrypt` the index of the one that encrypts; every one decrypts. */
  tlsTicketKeys(keys: Buffer, encrypt: number): TlsTicketKeys;
  /** New keys for a set: every context made with it uses them from the next handshake on. */
  tlsSetTicketKeys(set: TlsTicketKeys, keys: Buffer, encrypt: number): void;
  /** An OCSP response (DER) read for a certificate chain (PEM, leaf first, its issuer after
   * it): successful, signed by the issuer or a responder it certified, valid now, with a
   * status for the leaf. That status and its times (seconds since the epoch), or an Error whose
   * message says why it is not such a response, in our words (src/native/tls-engine-ocsp.c). */
  ocspCheck(der: Buffer, chainPem: Buffer): OcspStatus;
  /** The OCSP request (DER) for a chain's leaf, and the responder URL the leaf names ("" for
   * none); an Error in our words for a chain without the leaf's issuer. */
  ocspRequest(chainPem: Buffer): { der: Buffer; url: string };
  /** Whether the chain's leaf (PEM, first) must be served with its OCSP response: its TLS
   * Feature extension (RFC 7633) asks for status_request. */
  ocspMustStaple(chainPem: Buffer): boolean;
  /** SIGUSR1 reaches the main thread again (Node's --disable-sigusr1 leaves it blocked). */
  unblockSigusr1(): void;
}

export interface OcspStatus {
  status: "good" | "revoked" | "unknown";
  thisUpdate: number;
  nextUpdate: number;
  revokedAt?: number;
}

declare const tlsContextBrand: unique symbol;
declare const tlsSessionBrand: unique symbol;
declare const tlsTicketKeysBrand: unique symbol;
/** An SSL_CTX, freed when the last session using it and this handle are gone. */
export type TlsContext = { readonly [tlsContextBrand]: true };
export type TlsSession = { readonly [tlsSessionBrand]: true };
export type TlsTicketKeys = { readonly [tlsTicketKeysBrand]: true };

export interface TlsContextOptions {
  /** TLS 1.2 suites (OpenSSL's list syntax); TLS 1.3's are OpenSSL's own. */
  ciphers?: string;
  /** Key exchange groups, the server's preference first. */
  groups?: string;
  /** The protocols offered, the server's preference first: no name in common with the
   * client's list is a no_application_protocol alert, as with node:tls. */
  alpn?: readonly string[];
  sessionIdContext?: string;
  /** Seconds a session (ticket) may be resumed. */
  sessionTimeout?: number;
  /** Trust anchors for client certificates (PEM, one or more each), the only ones: a session
   * that asks for a client certificate (TlsCallbacks.clientCert) verifies its chain in the
   * handshake (src/native/tls-verify.c). */
  ca?: readonly Buffer[];
  /** Revocation lists (PEM, one CRL each) for ca's chains: every CA of a chain needs one. */
  crl?: readonly string[];
  /** The keys of its tickets (tlsTicketKeys); else OpenSSL's, made for this context alone. */
  ticketKeys?: TlsTicketKeys;
  /** An OCSP response that ocspCheck accepted for this certificate, stapled for every client
   * that asks until ocspUntil (its nextUpdate, seconds since the epoch); none after. */
  ocsp?: Buffer;
  ocspUntil?: number;
}

/** What the handshake settled. */
export interface TlsFacts {
  version: string;
  cipher: string;
  servername?: string;
  alpn?: string;
  /** OpenSSL's name of the key exchange group ("X25519MLKEM768", "x25519", "secp256r1"). */
  group?: string;
  resumed: boolean;
  peerCertificateDer?: Buffer;
  /** A client certificate was asked for and sent, and did not verify: OpenSSL's words. */
  verifyError?: string;
  /** One that verified: the issuers its verification found, the trust anchor last (DER). */
  issuersDer?: Buffer[];
}

export interface TlsCallbacks {
  /** From the ClientHello, synchronously: a context to switch to, undefined for the default,
   * null to refuse the name (an unrecognized_name alert; a throw's message is the cause). */
  onHello?: (serverName: string | undefined) => TlsContext | null | undefined;
  /** From the ClientHello, before onHello: its server name and ALPN protocols; true holds the
   * handshake until tlsResume (or tlsClose), while the policy takes its time (an order of
   * certificates on demand). A throw is Node's uncaught exception, and the handshake goes on. */
  onClientHello?: (serverName: string | undefined, alpn: string[]) => boolean;
  onHandshake: (facts: TlsFacts) => void;
  /** Once: undefined when both directions ended cleanly, else what went wrong; `unsent`: the
   * program had written bytes that will never reach the client (in the relay's buffer, or
   * still in the socketpair). */
  onEnd: (cause: string | undefined, unsent: boolean, plainErrno: number) => void;
  /** The client's end has been read (`closeNotify`: it was a close_notify, not a bare FIN):
   * true ends the whole session, our close_notify then FIN, and what the program still
   * writes is dropped until it ends (or tlsClose); false passes it on as a half-close. It may
   * call tlsClose. Without it every end is a half-close. */
  onPeerEnd?: (closeNotify: boolean) => boolean;
  /** The plaintext side's end is a close_notify, then a FIN (-S, the default); false: a FIN. */
  closeNotify?: boolean;
  /** Ask for a client certificate (the context has `ca`): "optional" takes any chain, or none
   * (TlsFacts.verifyError says why one did not verify); "mandatory" ends the handshake with
   * OpenSSL's alert for none (certificate_required) or one that does not verify (unknown_ca,
   * certificate_revoked...), its cause "client certificate refused: REASON". */
  clientCert?: "optional" | "mandatory";
}

export const ACCEPT_NODELAY = 1;
export const ACCEPT_KILL_IP_OPTIONS = 2;
/** The local address of a connection REDIRECT (NAT) sent here is the one the client asked for. */
export const ACCEPT_ORIGINAL_DST = 4;

let loaded: Native | undefined;

/** The addon, loaded once; sources run from src/ucspi/, bundles from dist/. */
export function native(): Native {
  loaded ??= createRequire(import.meta.url)(builtFile("ucspi_native.node")) as Native;
  return loaded;
}

/** A file that npm run build makes in build/. */
export function builtFile(name: string): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [1, 2, 3].map((up) =>
    join(here, ...Array<string>(up).fill(".."), "build", name),
  );
  const path = candidates.find((p) => existsSync(p));
  if (!path) throw new Error(`${name} not built (run npm run build): ${candidates[0]}`);
  return path;
}
