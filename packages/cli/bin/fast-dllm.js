#!/usr/bin/env node
// Thin shim: the CLI lives in dist/main.js (compiled from src/main.ts).
import { main } from '../dist/main.js';

process.exitCode = await main(process.argv.slice(2));
