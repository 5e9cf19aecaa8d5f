// Typed errors that stages throw; only a cli.ts turns them into one stderr line and an exit code.

/** Misuse: a bad option, a missing argument. Exit 100 with the usage line. */
export class UsageError extends Error {
  readonly exitCode = 100;
  override name = "UsageError";
  /** The program's usage line, when the error is reported away from its cli.ts. */
  readonly usage: string | undefined;
  constructor(message: string, usage?: string) {
    super(message);
    this.usage = usage;
  }
}

/** Parses a stage's arguments; a UsageError gets the program's usage line, which the error
 * report prints after it (a stage in-process has no cli.ts to do that). */
export function parseOrUsage<T>(usage: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(error.message, usage);
    throw error;
  }
}

/** A failure that ends the program: one `prog: fatal: message` line, then `exitCode`. */
export class FatalError extends Error {
  readonly exitCode: number;
  override name = "FatalError";
  constructor(message: string, exitCode = 111, options?: { cause?: unknown }) {
    super(message, options);
    this.exitCode = exitCode;
  }
}

// djb's error_str texts, so that our messages read byte for byte like ucspi-tcp's.
const DJB_TEXT: Record<string, string> = {
  EINTR: "interrupted system call",
  ENOMEM: "out of memory",
  ENOENT: "file does not exist",
  ETXTBSY: "text busy",
  EIO: "input/output error",
  EEXIST: "file already exists",
  ETIMEDOUT: "timed out",
  EINPROGRESS: "operation in progress",
  EAGAIN: "temporary failure",
  EPIPE: "broken pipe",
  EPERM: "permission denied",
  EACCES: "access denied",
  ENXIO: "device not configured",
  EPROTO: "protocol error",
  EISDIR: "is a directory",
  ESRCH: "no such process",
  E2BIG: "argument list too long",
  ENOEXEC: "exec format error",
  EBADF: "file descriptor not open",
  ECHILD: "no child processes",
  EBUSY: "device busy",
  EXDEV: "cross-device link",
  ENOTDIR: "not a directory",
  EINVAL: "invalid argument",
  ENFILE: "system cannot open more files",
  EMFILE: "process cannot open more files",
  ENOTTY: "not a tty",
  EFBIG: "file too big",
  ENOSPC: "out of disk space",
  EROFS: "read-only file system",
  ELOOP: "symbolic link loop",
  ENAMETOOLONG: "file name too long",
  ENOTSOCK: "not a socket",
  EMSGSIZE: "message too long",
  EOPNOTSUPP: "operation not supported",
  EAFNOSUPPORT: "address family not supported",
  EADDRINUSE: "address already used",
  EADDRNOTAVAIL: "address not available",
  ENETDOWN: "network down",
  ENETUNREACH: "network unreachable",
  ECONNABORTED: "connection aborted",
  ECONNRESET: "connection reset",
  ENOBUFS: "out of buffer space",
  EISCONN: "already connected",
  ENOTCONN: "not connected",
  ECONNREFUSED: "connection refused",
  EHOSTDOWN: "host down",
  EHOSTUNREACH: "host unreachable",
  ENOTEMPTY: "directory not empty",
};

/** The cause of a system error in djb's words ("file does not exist"), else its message. */
export function causeText(error: unknown): string {
  if (error && typeof error === "object") {
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string" && DJB_TEXT[code]) return DJB_TEXT[code];
    if (error instanceof Error) return error.message;
  }
  return String(error);
}
