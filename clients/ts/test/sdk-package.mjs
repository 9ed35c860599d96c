// Marks the compiled SDK as CommonJS, as its own package.json does, since
// this package is ESM.
import { writeFileSync } from "node:fs";
writeFileSync(new URL("../build/haip-sdk-v1/package.json", import.meta.url), '{"type":"commonjs"}\n');
