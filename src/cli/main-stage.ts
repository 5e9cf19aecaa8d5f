// What the cli.ts of every stage program shares (tlsd, tlsc, ucspi-demo): run the stage on
// fds 0/1 or 6/7 as a process of its own, and end as the chain's last program ended.
import { startEnv } from "../ucspi/env.ts";
import { helpAsked } from "./help.ts";
import { dropOwnPrivileges } from "../ucspi/privileges.ts";
import {
  endOnUncaught,
  fdsNotOpen,
  passOnStatus,
  programArgs,
  reportError,
  stopOnTerm,
  writeStderr,
} from "./main.ts";
import type { Connection, Side, Stage } from "../ucspi/stage.ts";

export interface StageProgram {
  name: string;
  side: Side;
  usage?: string;
  /** Loaded once the command line has passed `check`: a usage error loads no TLS or streams. */
  stage: () => Promise<Stage>;
  /** Checks the command line; runs before the connection's fds are touched. */
  check?: (args: readonly string[]) => void;
  /** The connection's fds, when not the side's usual pair (tlsc -6/-7). */
  fds?: (args: readonly string[]) => [number, number];
}

/** Runs a stage as a program of its own (under a foreign tcpserver or tcpclient): its
 * connection is fds 0/1 or 6/7, and the process ends as the chain's last program ended. */
export function runStageProgram(p: StageProgram): void {
  const args = programArgs();
  endOnUncaught(p.name);
  stopOnTerm();
  let connection: Connection | undefined;
  const main = async (): Promise<number> => {
    if (helpAsked(p.name, args, p.usage)) return 0;
    p.check?.(args);
    const [{ runChain }, { stdioConnection }, stage] = await Promise.all([
      import("../ucspi/chain.ts"),
      import("../ucspi/stdio-connection.ts"),
      p.stage(),
    ]);
    connection = stdioConnection(p.side, p.fds?.(args), fdsNotOpen);
    return stage.run({
      argv: [process.argv[1] ?? "", ...args],
      env: startEnv(process.env),
      connection,
      side: p.side,
      log: writeStderr,
      dropPrivileges: dropOwnPrivileges,
      next: (argv, env, connection, hooks) =>
        runChain(argv, env, connection, {
          side: p.side,
          log: writeStderr,
          closeOthers: false,
          dropPrivileges: dropOwnPrivileges,
          stop: hooks?.stop,
          onSpawn: hooks?.onSpawn,
          onPeerGone: hooks?.onPeerGone,
        }),
    });
  };
  new Promise<number>((resolve) => resolve(main())).then(
    (status) => {
      process.exitCode = passOnStatus(status);
    },
    (error: unknown) => {
      process.exitCode = reportError(p.name, error, writeStderr, p.usage);
      // A connection on two fds (a pipe in, say) is two handles that would keep this process
      // alive, and the peer waiting, after a fatal error.
      connection?.stream?.destroy();
    },
  );
}
