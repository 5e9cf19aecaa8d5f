// No Turbofan in a server: its compiler is about 5 MiB of Node's own code pages, which a warm
// server touches once and keeps resident for good (file pages: no collection gives them back).
// Maglev still optimizes, and a handshake costs the same CPU without it (measured: warm idle
// tcpserver + tlsd, the binary's resident text 25.7 MiB against 31.0; 1.39 ms of CPU a
// handshake against 1.40). Set when tcpserver's code is loaded, before any of it runs, rather
// than by the launcher, so that the single executable's tcpserver (the Debian package's) has it
// too: V8 reads the flag at each tier-up.
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--no-turbofan");
