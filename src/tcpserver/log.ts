// tcpserver's events, in djb's exact text lines (multilog and s6-log take them as they are)
// or as JSON objects (pino) for log collectors. One function per event, as s6 does.
import { shownIp } from "../net/ip.ts";

export interface Endpoints {
  localHost: string | undefined;
  localIp: string;
  localPort: number;
  remoteHost: string | undefined;
  remoteIp: string;
  remoteInfo: string | undefined;
  remotePort: number;
}

export interface ServerLog {
  status(active: number, limit: number): void;
  accepted(id: number, remoteIp: string): void;
  verdict(kind: "ok" | "deny", id: number, ends: Endpoints): void;
  end(id: number, wstatus: number): void;
  /** A connection over the per-IP limit (-C): closed at once. */
  reject(remoteIp: string, count: number, limit: number): void;
  warning(message: string): void;
  /** SIGHUP: cached files dropped (our extension: djb's tcpserver dies of it). */
  reload(): void;
  /** SIGTERM: no more accepting; `open` connections may go on `seconds` (with --drain, all of
   * them: "drain"; without, the ones served in this process: "stop"). */
  drain(kind: StopKind, open: number, seconds: number): void;
  /** SIGTERM's bound reached: the `open` connections left are ended. */
  drainTimeout(kind: StopKind, open: number, seconds: number): void;
}

/** How SIGTERM stops: --drain's graceful stop, or the default one. */
export type StopKind = "drain" | "stop";

/** Verbosity as djb's -q / -Q / -v give it. */
export type Verbosity = 0 | 1 | 2;

/** djb's field sanitising of names and ident answers: bytes outside 33..126, '%' and ':'
 * become '?', and a field is cut at 100 bytes plus "...". Addresses are printed as they are. */
export function safeField(text: string | undefined): string {
  if (text === undefined) return "";
  const bytes = Buffer.from(text, "latin1");
  let out = "";
  const n = Math.min(bytes.length, 100);
  for (let i = 0; i < n; i++) {
    const c = bytes[i] ?? 0;
    out += c < 33 || c > 126 || c === 37 || c === 58 ? "?" : String.fromCharCode(c);
  }
  return bytes.length > 100 ? `${out}...` : out;
}

/** djb's text lines, written through `write` (one whole line per call); `v6Form`: -6, an IPv4
 * client is named in the mapped form, as Debian's tcpserver -6 names it. */
export function textLog(
  verbosity: Verbosity,
  write: (line: string) => void,
  v6Form = false,
): ServerLog {
  const info = (line: string) => write(`tcpserver: ${line}\n`);
  const warning = (message: string) => {
    if (verbosity >= 1) write(`tcpserver: warning: ${message}\n`);
  };
  // The verdict line's addresses as accepted, or with -6 in the mapped form.
  const asGiven = (ip: string) => (v6Form ? shownIp(ip, true) : ip);
  // Quiet servers do not even format the lines they would not print.
  if (verbosity < 2) {
    const none = () => {};
    return {
      status: none,
      accepted: none,
      verdict: none,
      end: none,
      reject: none,
      warning,
      reload: none,
      drain: none,
      drainTimeout: none,
    };
  }
  return {
    status: (active, limit) => info(`status: ${active}/${limit}`),
    accepted: (id, remoteIp) => info(`pid ${id} from ${shownIp(remoteIp, v6Form)}`),
    verdict: (kind, id, e) =>
      info(
        `${kind} ${id} ${safeField(e.localHost)}:${asGiven(e.localIp)}:${e.localPort} ` +
          `${safeField(e.remoteHost)}:${asGiven(e.remoteIp)}:${safeField(e.remoteInfo)}:${e.remotePort}`,
      ),
    end: (id, wstatus) => info(`end ${id} status ${wstatus}`),
    reject: (remoteIp, count, limit) =>
      info(`reject ${shownIp(remoteIp, v6Form)} count ${count}/${limit}`),
    warning,
    reload: () => info("reload"),
    drain: (kind, open, seconds) =>
      info(
        `${kind}: ${connections(open)} ${kind === "stop" ? "served in this process" : "open"}, waiting ${seconds} s at most`,
      ),
    drainTimeout: (kind, open, seconds) =>
      info(
        `${kind}: ${connections(open)} still open after ${seconds} s, ending ${open === 1 ? "it" : "them"}`,
      ),
  };
}

/** The same events as JSON lines, one object per event, through pino. */
export async function jsonLog(verbosity: Verbosity, fd: number): Promise<ServerLog> {
  // pino is CommonJS: its function is the default export once bundled.
  const { default: pino } = await import("pino");
  const logger = pino(
    {
      base: { program: "tcpserver" },
      level: verbosity >= 2 ? "info" : verbosity ? "warn" : "silent",
    },
    pino.destination({ fd, sync: true }),
  );
  return {
    status: (active, limit) => logger.info({ event: "status", active, limit }),
    accepted: (id, remoteIp) => logger.info({ event: "accept", pid: id, remoteIp }),
    verdict: (kind, id, e) => logger.info({ event: kind, pid: id, ...e }),
    end: (id, wstatus) => {
      const fields =
        (wstatus & 0x7f) === 0 ? { exitCode: (wstatus >> 8) & 0xff } : { signal: wstatus & 0x7f };
      logger.info({ event: "end", pid: id, status: wstatus, ...fields });
    },
    reject: (remoteIp, count, limit) => logger.info({ event: "reject", remoteIp, count, limit }),
    warning: (message) => logger.warn({ event: "warning" }, message),
    reload: () => logger.info({ event: "reload" }),
    drain: (kind, open, seconds) => logger.info({ event: kind, open, seconds }),
    drainTimeout: (kind, open, seconds) => logger.info({ event: `${kind}-timeout`, open, seconds }),
  };
}

function connections(n: number): string {
  return `${n} connection${n === 1 ? "" : "s"}`;
}
