// node validate.mjs FILE: exits 0 when FILE is a valid OpenAPI 3.1 document whose $refs all
// resolve; otherwise prints why and exits 1.
import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";

const doc = JSON.parse(readFileSync(process.argv[2], "utf8"));
const validator = new Validator();
const result = await validator.validate(doc);
if (!result.valid) {
  console.error(JSON.stringify(result.errors, null, 2));
  process.exit(1);
}
if (validator.version !== "3.1") {
  console.error(`expected an OpenAPI 3.1 document, got ${validator.version}`);
  process.exit(1);
}
try {
  validator.resolveRefs();
} catch (e) {
  console.error(`unresolved $ref: ${e.message}`);
  process.exit(1);
}
