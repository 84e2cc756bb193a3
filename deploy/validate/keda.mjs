// Validates KEDA ScaledObjects against the schema of KEDA's CRD, as generated into
// @kubernetes-models/keda: `node keda.mjs FILE...`. Exits non-zero on the first invalid one.
import fs from "node:fs";
import yaml from "js-yaml";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1";

for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (!doc || doc.kind !== "ScaledObject") continue;
    try {
      new ScaledObject(doc).validate();
    } catch (error) {
      console.error(`${file}: ScaledObject ${doc.metadata?.name}: ${error.message}`);
      process.exit(1);
    }
    console.log(`${file}: ScaledObject ${doc.metadata?.name} is valid`);
  }
}
