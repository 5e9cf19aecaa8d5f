// Tries each address in turn, as djb's tcpclient does: a first pass with a short timeout per
// address, then a second pass with the long one over the addresses that timed out. An address
// that times out in the first pass is said once, after the second one (djb's warns only then).
import { Socket } from "node:net";
import { unknownZone } from "../ucspi/address.ts";
import { FatalError, causeText } from "../ucspi/errors.ts";

export interface ConnectPlan {
  addresses: readonly string[];
  port: number;
  localIp?: string | undefined;
  localPort?: number | undefined;
  timeoutsMs: readonly [number, number];
  noDelay: boolean;
}

/** Connected, and paused: no byte is read here, the program reads the socket itself. */
export async function connectInTurn(
  plan: ConnectPlan,
  warn: (message: string) => void,
): Promise<Socket | undefined> {
  const timedOut: string[] = [];
  for (const [pass, timeoutMs] of plan.timeoutsMs.entries()) {
    const candidates = pass === 0 ? plan.addresses : timedOut.splice(0);
    if (timeoutMs === 0 && pass > 0) break;
    for (const ip of candidates) {
      try {
        return await connectOne(ip, plan, timeoutMs);
      } catch (error) {
        // -i / -p that cannot be bound: djb's gives up at once, in these words.
        if ((error as { syscall?: string }).syscall === "bind")
          throw new FatalError(`unable to bind socket: ${causeText(error)}`, 111, { cause: error });
        const code = (error as { code?: string }).code;
        if (code === "ETIMEDOUT" && pass === 0 && plan.timeoutsMs[1] > 0) {
          timedOut.push(ip);
          continue;
        }
        warn(`unable to connect to ${ip} port ${plan.port}: ${causeText(error)}`);
      }
    }
  }
  return undefined;
}

function connectOne(ip: string, plan: ConnectPlan, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Node would wait out the limit on a zone that names no interface, then say "timed out".
    const zone = unknownZone(ip);
    if (zone !== undefined) return reject(new Error(`no network interface ${zone}`));
    // Half-open, as a socket of its own would be under djb's tcpclient: the server's FIN ends
    // only what the chain reads (a TLS session made on it inherits this), and the program's
    // answer after it still goes out.
    const socket = new Socket({ allowHalfOpen: true });
    // Paused before it connects, so that Node never starts reading the program's bytes.
    socket.pause();
    const timedOut = () => {
      socket.destroy();
      reject(Object.assign(new Error("timed out"), { code: "ETIMEDOUT" }));
    };
    // A limit of 0 is djb's one look (his iopause with the deadline now): connected by this
    // turn's poll (a loopback connection is), else timed out at once; never no limit.
    const timer = timeoutMs > 0 ? setTimeout(timedOut, timeoutMs) : undefined;
    const look = timer === undefined ? setImmediate(timedOut) : undefined;
    const stopTimer = () => {
      clearTimeout(timer);
      clearImmediate(look);
    };
    socket.once("error", (error) => {
      stopTimer();
      socket.destroy();
      reject(error);
    });
    socket.once("connect", () => {
      stopTimer();
      if (plan.noDelay) socket.setNoDelay(true);
      resolve(socket);
    });
    socket.connect({
      host: ip,
      port: plan.port,
      ...(plan.localIp !== undefined ? { localAddress: plan.localIp } : {}),
      ...(plan.localPort !== undefined ? { localPort: plan.localPort } : {}),
    });
  });
}

/** The fd under a connected socket. Node keeps it on the private handle: there is no public
 * accessor, and UCSPI needs the fd itself to hand it to the program as fds 6/7. */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: number } })._handle;
  const fd = handle?.fd;
  if (typeof fd !== "number" || fd < 0) throw new Error("connected socket has no fd");
  return fd;
}
