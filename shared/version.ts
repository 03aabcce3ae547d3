// The package version, read once from package.json so the CLI, the agent and the wire agree.
import { readFileSync } from 'node:fs';
import { findRepoRoot } from './paths.js';

export const VERSION: string = (
  JSON.parse(readFileSync(`${findRepoRoot()}/package.json`, 'utf8')) as { version: string }
).version;
