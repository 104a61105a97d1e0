#!/usr/bin/env -S node --initial-old-space-size=128
// Shim so the bin exists (and is executable) before the first build; the code lives in dist/.
// The shebang passes the V8 flags of src/node-flags.ts (AGENT_NODE_FLAGS; a unit test keeps them equal).
import '../dist/src/main.js';
