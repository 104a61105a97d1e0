#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=16777216 node --initial-old-space-size=128
// Shim so the bin exists (and is executable) before the first build; the code lives in dist/.
// The shebang sets the environment and passes the V8 flags of src/node-flags.ts (RDLD_ENVIRONMENT,
// RDLD_NODE_FLAGS; a unit test keeps them equal).
import '../dist/src/main.js';
