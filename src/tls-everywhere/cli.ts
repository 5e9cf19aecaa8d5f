// tls-everywhere: TLS for every TCP service of this host in one command (jfe's promise). As
// root: installs the nftables TPROXY table and the policy routing that divert the chosen ports
// to one chain, runs that chain in the foreground (tcpserver --transparent: TLS when the
// client asks for it, plaintext as before when it does not, then on to the very address and
// port asked for, from the client's own address), and takes out exactly what it installed
// when it ends: SIGTERM, SIGINT, SIGHUP, or the chain's own end.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { helpAsked } from "../ucspi/help.ts";
import { reportError, writeStderr } from "../ucspi/main.ts";
import { ourLauncher } from "../ucspi/programs.ts";
import { checkNotInstalled, install, removeLeftovers } from "./host.ts";
import { USAGE, parseEverywhereArgs } from "./options.ts";
import type { EverywhereOptions } from "./options.ts";
import { dryRun } from "./rules.ts";

const NAME = "tls-everywhere";

/** Our bin/ directory: the programs of the chain, by their own paths. */
function binDir(): string {
  const launcher = ourLauncher();
  if (!launcher) throw new FatalError("unable to find the ucspi-tls programs (bin/)");
  return join(dirname(launcher), "..", "bin");
}

/** CERTFILE/KEYFILE as given, else a self-signed pair for this host, made once. */
async function certificates(o: EverywhereOptions, bin: string): Promise<Record<string, string>> {
  if (process.env["CERTFILE"] && process.env["KEYFILE"]) return {};
  if (process.env["CERTDIR"]) return {};
  mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
  const cert = join(o.stateDir, "cert.pem");
  const key = join(o.stateDir, "key.pem");
  const status = await new Promise<number | null>((resolve) => {
    const child = spawn(
      join(bin, "tls-keygen"),
      ["ensure", "-s", `${hostname()},localhost`, cert, key],
      { stdio: ["ignore", "inherit", "inherit"] },
    );
    child.on("error", () => resolve(null));
    child.on("exit", (code) => resolve(code));
  });
  if (status !== 0) throw new FatalError(`unable to make a certificate in ${o.stateDir}`);
  return { CERTFILE: cert, KEYFILE: key };
}

function chainArgs(o: EverywhereOptions, bin: string): string[] {
  const forward = [join(bin, "tcpforward"), "--transparent", "--mark", String(o.mark + 1)];
  return [
    "-vRHl0",
    "-c",
    "1000",
    "--transparent",
    o.ipv6 ? "::" : "0",
    String(o.listen),
    join(bin, "tls-sniff"),
    "-t",
    String(o.silenceMs),
    "--plain",
    "{",
    ...forward,
    "}",
    join(bin, "tlsd"),
    ...forward,
  ];
}

async function main(args: readonly string[]): Promise<number> {
  if (helpAsked(NAME, args, USAGE)) return 0;
  const o = parseEverywhereArgs(args);
  if (o.dryRun) {
    process.stdout.write(dryRun(o));
    return 0;
  }
  if (o.remove) {
    removeLeftovers(o);
    return 0;
  }
  const bin = binDir();
  checkNotInstalled(o);
  const certEnv = await certificates(o, bin);
  const installed = install(o);
  writeStderr(`${NAME}: info: diverting tcp ports ${o.ports.join(",")} to :${o.listen}\n`);
  let stopping = false;
  const chain = spawn(join(bin, "tcpserver"), chainArgs(o, bin), {
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, ...certEnv, PATH: `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}` },
  });
  const stop = () => {
    stopping = true;
    chain.kill("SIGTERM");
  };
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(signal, stop);
  const ended = await new Promise<{ code: number | null; signal: string | null; error?: Error }>(
    (resolve) => {
      chain.on("error", (error) => resolve({ code: null, signal: null, error }));
      chain.on("exit", (code, signal) => resolve({ code, signal }));
    },
  );
  const failures = installed.remove();
  for (const failure of failures) writeStderr(`${NAME}: warning: unable to remove: ${failure}\n`);
  writeStderr(`${NAME}: info: rules removed\n`);
  if (ended.error) throw new FatalError(`unable to run the chain: ${causeText(ended.error)}`);
  if (stopping) return failures.length > 0 ? 111 : 0;
  throw new FatalError(
    `the chain ended (${ended.signal ? `signal ${ended.signal}` : `status ${String(ended.code)}`})`,
  );
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = reportError(NAME, error, writeStderr, USAGE);
  },
);
