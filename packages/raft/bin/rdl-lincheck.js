#!/usr/bin/env node
// Shim so the bin exists (and is executable) before the first build; the code lives in dist/.
import '../dist/src/testing/lincheck-cli.js';
