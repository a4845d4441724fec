// Validate a .glb / .gltf with the Khronos glTF validator and print its JSON report on stdout.
//   node tools/validate_gltf.js FILE.glb
// The validator comes from tools/package.json (bash tools/setup.sh --dev runs `npm install --prefix tools`).
"use strict";
const fs = require("fs");
const validator = require("gltf-validator");

const path = process.argv[2];
validator
  .validateBytes(new Uint8Array(fs.readFileSync(path)), { maxIssues: 100 })
  .then((report) => console.log(JSON.stringify(report)))
  .catch((error) => {
    console.error(`validator failed: ${error}`);
    process.exit(1);
  });
