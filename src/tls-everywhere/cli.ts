// tls-everywhere: TLS for every TCP service of this host in one command (jfe's promise). As
// root: installs the nftables TPROXY table and the policy routing that divert the chosen ports
// to one chain, runs that chain in the foreground (tcpserver --transparent: TLS when the
// client asks for it, plaintext as before when it does not, then on to the very address and
// port asked for, from the client's own address), and takes out exactly what it installed
// when it ends: SIGTERM, SIGINT, SIGHUP, or the chain's own end.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { hostname } from "node:os";
import { dirname, join, resolve } from "node:path";
import { FatalError, causeText } from "../ucspi/errors.ts";
import { helpAsked } from "../cli/help.ts";
import { programArgs, reportError, writeStderr } from "../cli/main.ts";
import { writeStdout } from "../cli/stdio.ts";
import { ourLauncher } from "../ucspi/programs.ts";
import { setVar, startEnv, toBytes } from "../ucspi/env.ts";
import type { Env } from "../ucspi/env.ts";
import { spawnWithBytes } from "../ucspi/spawn-bytes.ts";
import type { BytesChild } from "../ucspi/spawn-bytes.ts";
import {
  InstallFailed,
  checkLoopbackUp,
  checkNotInstalled,
  findLeftovers,
  install,
  removeLeftovers,
  takeOutLeftovers,
} from "./host.ts";
import type { Installed } from "./host.ts";
import { USAGE, chainMetrics, chainPort, parseEverywhereArgs } from "./options.ts";
import type { EverywhereOptions } from "./options.ts";
import { OWNER_VARIABLE } from "./mark.ts";
import {
  checkStateDir,
  createOwnerRecord,
  ownerMark,
  ownerRecordFile,
  removeOwnerRecord,
  tableComment,
  writeOwnerRecord,
} from "./owner.ts";
import { processId } from "../proc/process-id.ts";
import type { ProcessId } from "../proc/process-id.ts";
import { dryRun, removalScript } from "./rules.ts";
import { chainCommand, portChainText } from "./chain.ts";
import { acmeChallenge, acmeRoutes, validationPortWarning } from "./acme.ts";

const NAME = "tls-everywhere";

/** Our bin/ directory: the programs of the chain, by their own paths. */
function binDir(): string {
  const launcher = ourLauncher();
  if (!launcher) throw new FatalError("unable to find the ucspi-tls programs (bin/)");
  return join(dirname(launcher), "..", "bin");
}

/** One of CERTFILE and KEYFILE without the other is a mistake, as tlsd takes it: the
 * self-signed fallback would hide it until a client saw the wrong certificate. */
function checkCertificatePair(): void {
  const cert = process.env["CERTFILE"] !== undefined;
  const key = process.env["KEYFILE"] !== undefined;
  if (cert === key) return;
  const [set, unset] = cert ? ["CERTFILE", "KEYFILE"] : ["KEYFILE", "CERTFILE"];
  throw new FatalError(`${unset} not set (${set} is): set both, or neither`, 100);
}

/** CERTFILE/KEYFILE as given, else a self-signed pair for this host, made once. */
async function certificates(o: EverywhereOptions, bin: string): Promise<Record<string, string>> {
  if (process.env["CERTFILE"] !== undefined) return {};
  if (process.env["CERTDIR"]) return {};
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

/** tcpserver's arguments for chain `index` (-1: the main one) on `port`, each `tcpforward` to
 * where the client asked transparent and marked (chain.ts). */
function tcpserverArgs(
  o: EverywhereOptions,
  bin: string,
  index: number,
  port: number,
  chain: string[],
) {
  const metrics = chainMetrics(o, index);
  return [
    "-1vRHl0",
    "-c",
    String(o.limit),
    `--workers=${o.workers}`,
    ...(metrics ? ["--metrics", metrics] : []),
    "--transparent",
    o.ipv6 ? "::" : "0",
    String(port),
    ...chainCommand(chain, join(bin, "tcpforward"), o.mark + 1),
  ];
}

/** Binds `host` port `port` (0: any) a moment: the error that refuses it, or undefined. */
function bindError(host: string, port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", (error) => resolve(error));
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}

/** Why IPv6 cannot be diverted here, or undefined when it can: a kernel without it, IPv6
 * disabled on lo (the local route of the diverted connections goes there), or IPv6 sockets
 * refused (systemd's RestrictAddressFamilies=, say). */
async function ipv6Unavailable(): Promise<string | undefined> {
  if (!existsSync("/proc/sys/net/ipv6")) return "this kernel has no IPv6";
  try {
    if (readFileSync("/proc/sys/net/ipv6/conf/lo/disable_ipv6", "latin1").trim() === "1")
      return "it is disabled on lo: net.ipv6.conf.lo.disable_ipv6 = 1";
  } catch {
    return "this network namespace has no IPv6 on lo";
  }
  const error = await bindError("::", 0);
  if (error?.code === "EAFNOSUPPORT" || error?.code === "EADDRNOTAVAIL")
    return `IPv6 sockets are refused: ${causeText(error)}`;
  return undefined;
}

/** A host without IPv6 gets what --ipv4-only gives, said in one line; true when so. */
async function ipv4WithoutIpv6(o: EverywhereOptions): Promise<boolean> {
  const why = o.ipv6 ? await ipv6Unavailable() : undefined;
  if (why === undefined) return false;
  writeStderr(`${NAME}: warning: IPv6 is unavailable (${why}): diverting IPv4 only\n`);
  o.ipv6 = false;
  return true;
}

/** The chains' own ports must be free before a rule sends anything to them: a chain that
 * cannot bind would end the tool at once, after the rules went in and out for nothing. A port
 * refused for another cause (a port below 1024 without CAP_NET_BIND_SERVICE) is said as it is. */
async function checkPortsFree(o: EverywhereOptions): Promise<void> {
  const ports = [o.listen, ...o.overrides.map((_, i) => chainPort(o, i))];
  for (const port of ports) {
    const error = await bindError(o.ipv6 ? "::" : "0.0.0.0", port);
    if (!error) continue;
    const what = port === o.listen ? "--listen" : "a --port chain, after --listen";
    if (error.code === "EADDRINUSE")
      throw new FatalError(`port ${port} (${what}) is in use: give --listen a free range`);
    throw new FatalError(`unable to listen on port ${port} (${what}): ${causeText(error)}`);
  }
}

/** The main chain: TLS when the client asks for it, plaintext as before when it does not; a
 * TLS client of a service that speaks TLS itself goes to it as it is (its own certificate).
 * With ACME_*, the CA's validator goes to what answers it first (acme.ts). */
function mainChain(o: EverywhereOptions, bin: string): string[] {
  return tcpserverArgs(o, bin, -1, o.listen, [
    join(bin, "tls-sniff"),
    "-t",
    String(o.silenceMs),
    ...acmeRoutes(acmeChallenge(process.env), bin),
    "--plain",
    "{",
    "tcpforward",
    "}",
    "tcpforward",
    "--if-plain",
    "{",
    join(bin, "tlsd"),
    "tcpforward",
    "}",
  ]);
}

/** The chains' environment: ours as its bytes (a CERTFILE named with a byte that is not UTF-8
 * reaches tlsd as it is), with the certificate made for it, our mark and our bin/ first. */
function chainEnv(certEnv: Record<string, string>, owner: ProcessId, bin: string): Env {
  const env = startEnv(process.env);
  for (const [name, value] of Object.entries(certEnv)) setVar(env, name, toBytes(value));
  // Each chain names us: found by the next start or --remove even if we die before the record
  // names it.
  setVar(env, OWNER_VARIABLE, ownerMark(owner));
  setVar(env, "PATH", `${toBytes(bin)}:${env["PATH"] ?? "/usr/bin:/bin"}`);
  return env;
}

const LISTENING = "listening";
/** A chain's start is its configuration loaded and its port bound: seconds at most. */
const START_SECONDS = 60;

/** Resolves once the chain says it listens: tcpserver -1 prints its port when bound and ready,
 * as djb's does. A chain that ends first never resolves this; its ending is raced instead. */
function listening(chain: BytesChild): Promise<void> {
  return new Promise((resolve) => {
    let said = "";
    chain.stdout?.setEncoding("utf8");
    chain.stdout?.on("data", (text: string) => {
      said += text;
      if (said.includes("\n")) resolve();
    });
  });
}

/** After the rules were taken out: each step that failed is one warning line naming it, and
 * then the record stays, so that the next start or --remove takes out what is left. */
function takenOut(o: EverywhereOptions, owner: ProcessId, failures: readonly string[]): void {
  for (const failure of failures) writeStderr(`${NAME}: warning: unable to run ${failure}\n`);
  if (failures.length === 0) removeOwnerRecord(o.stateDir, owner);
}

async function main(args: readonly string[]): Promise<number> {
  if (helpAsked(NAME, args, USAGE)) return 0;
  const o = parseEverywhereArgs(args);
  const unvalidated = o.remove ? undefined : validationPortWarning(o, process.env);
  if (unvalidated) writeStderr(`${NAME}: warning: ${unvalidated}\n`);
  if (o.dryRun && !o.remove) {
    // As the run would: IPv4 only where IPv6 is unavailable.
    await ipv4WithoutIpv6(o);
    writeStdout(dryRun(o));
    return 0;
  }
  if (o.dryRun) {
    // --remove's own lookup: what a run left, as its record says, else this command line's.
    const left = findLeftovers(o);
    const pids = (ids: readonly ProcessId[]) => ids.map((id) => id.pid);
    const run = left && {
      owner: left.owner.pid,
      chains: pids(left.chains),
      strangers: pids(left.strangers),
      file: ownerRecordFile(resolve(o.stateDir)),
    };
    writeStdout(removalScript(left?.made ?? o, run));
    return 0;
  }
  if (o.remove) {
    // Without a record: every step of what this command line would install.
    const found = await takeOutLeftovers(o);
    if (found !== undefined) writeStderr(`${NAME}: info: ${found}\n`);
    else removeLeftovers(o);
    return 0;
  }
  checkCertificatePair();
  const bin = binDir();
  const found = await takeOutLeftovers(o);
  if (found !== undefined) writeStderr(`${NAME}: warning: ${found}\n`);
  checkLoopbackUp();
  // The record says --ipv4-only too when it was taken for IPv6 unavailable, for the removal
  // after a SIGKILL.
  const recorded = (await ipv4WithoutIpv6(o)) ? [...args, "--ipv4-only"] : [...args];
  checkNotInstalled(o);
  await checkPortsFree(o);
  try {
    mkdirSync(o.stateDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new FatalError(`unable to create ${o.stateDir}: ${causeText(error)}`);
  }
  // Again, now that it is there: one that another user made meanwhile (in a sticky /tmp, say)
  // is theirs.
  checkStateDir(o.stateDir);
  const certEnv = await certificates(o, bin);
  // Recorded before anything starts, so that no moment leaves chains or rules that a next start
  // would not know as ours.
  const owner = processId(process.pid);
  if (!owner) throw new FatalError("unable to read this process's own /proc entry");
  const record = (chains: ProcessId[]) =>
    writeOwnerRecord(o.stateDir, { owner, chains, args: recorded });
  createOwnerRecord(o.stateDir, { owner, chains: [], args: recorded });
  const env = chainEnv(certEnv, owner, bin);
  // The chains first, the rules once every chain listens: a rule that diverted a port to a
  // chain not yet listening would let its clients through to the service in plaintext.
  const chains = [
    mainChain(o, bin),
    ...o.overrides.map(({ chain }, i) => tcpserverArgs(o, bin, i, chainPort(o, i), chain)),
  ].map((args) => spawnWithBytes(join(bin, "tcpserver"), args, env));
  try {
    record(chains.flatMap((chain) => processId(chain.pid ?? 0) ?? []));
  } catch (error) {
    // Only a stop of the chain after a SIGKILL is lost.
    writeStderr(`${NAME}: warning: unable to record the chain's pids: ${causeText(error)}\n`);
  }
  let stopping = false;
  const stop = () => {
    stopping = true;
    for (const chain of chains) chain.kill("SIGTERM");
  };
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(signal, stop);
  const endings = chains.map((chain) => chain.ended);
  let slow = false;
  const startBound = setTimeout(() => {
    slow = true;
    stop();
  }, START_SECONDS * 1000);
  const ended = await Promise.race([
    Promise.all(chains.map(listening)).then((): typeof LISTENING => LISTENING),
    ...endings,
  ]);
  clearTimeout(startBound);
  let installed: Installed | undefined;
  if (ended === LISTENING && !stopping) {
    try {
      installed = install(o, tableComment(owner, o.stateDir));
    } catch (error) {
      stop();
      await Promise.all(endings);
      takenOut(o, owner, error instanceof InstallFailed ? error.undoFailures : []);
      throw error;
    }
    writeStderr(`${NAME}: info: diverting tcp ports ${o.ports.join(",")} to :${o.listen}\n`);
    for (const i of o.overrides.keys())
      writeStderr(`${NAME}: info: diverting ${portChainText(o, i)}\n`);
  }
  // The first chain to end (or the signal) ends them all.
  const first = ended === LISTENING ? await Promise.race(endings) : ended;
  if (!stopping) for (const chain of chains) chain.kill("SIGTERM");
  await Promise.all(endings);
  const failures = installed?.remove() ?? [];
  takenOut(o, owner, failures);
  // Only when every step worked: a rule someone took out meanwhile, or one that stays, is news.
  if (installed && failures.length === 0) writeStderr(`${NAME}: info: rules removed\n`);
  if (first.error) throw new FatalError(`unable to run the chain: ${causeText(first.error)}`);
  if (slow) throw new FatalError(`the chain did not listen within ${START_SECONDS} s`);
  if (stopping) return failures.length > 0 ? 111 : 0;
  const how = first.signal ? `signal ${first.signal}` : `status ${String(first.code)}`;
  throw new FatalError(
    installed ? `the chain ended (${how})` : `the chain ended before it listened (${how})`,
  );
}

main(programArgs()).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = reportError(NAME, error, writeStderr, USAGE);
  },
);
